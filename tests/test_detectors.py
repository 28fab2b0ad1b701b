"""Conformance for every registered ``*-test`` detector, and a real learning check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import metrics
from detect.core.detector import load_detector, tile_positions, tiles
from detect.core.errors import ConfigError, InputError, ModelError
from detect.core.registry import detectors
from detect.io.corpus import Corpus

TEST_DETECTORS = detectors.names("*-test")
# the checks that fit, tile and score run on the image corpus; text detectors have their own
IMAGE_TEST_DETECTORS = [n for n in TEST_DETECTORS
                        if detectors.get_class(n).tags.modality == "image"]


def test_every_family_has_a_test_variant():
    families = {n.split("-")[0] for n in detectors.names()}
    have = {n.split("-")[0] for n in TEST_DETECTORS}
    assert families <= have, f"families without a *-test variant: {families - have}"


@pytest.mark.parametrize("name", TEST_DETECTORS)
def test_init_stores_only_hyperparameters(name):
    det = detectors.create(name)
    assert det.name == name
    params = det.get_params()
    assert params, "a detector must expose its hyperparameters"
    assert not [k for k in vars(det) if k.endswith("_")], "no fitted state before fit()"
    with pytest.raises(ModelError, match="not fitted"):
        det.predict([np.zeros((32, 32, 3), np.uint8)])


@pytest.mark.parametrize("name", IMAGE_TEST_DETECTORS)
def test_save_load_round_trip_gives_same_scores(name, trained_models, tiny_corpus, tmp_path):
    mdir = trained_models[name]
    cfg = json.loads((mdir / "config.json").read_text())
    assert cfg["schema"] == "unmask.detector/1" and cfg["name"] == name
    files = sorted(p.relative_to(mdir).as_posix() for p in mdir.rglob("*") if p.is_file())
    assert files[:2] == ["config.json", "weights.safetensors"] or \
        {"config.json", "weights.safetensors"} <= set(files)
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    a = load_detector(mdir)
    test = tiny_corpus.split("test")
    items = test.items
    s1 = a.score(items)
    b = load_detector(a.save(tmp_path / "again"))
    np.testing.assert_allclose(b.score(items), s1, rtol=1e-6, atol=1e-6)
    assert b.threshold_ == a.threshold_
    assert s1.shape == (len(items),) and np.all(np.isfinite(s1))
    # the same image alone or in a batch scores the same
    np.testing.assert_allclose(a.score(items[:1]), s1[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", IMAGE_TEST_DETECTORS)
def test_threshold_honours_target_fpr_on_calibration(name, trained_models, tiny_corpus):
    det = load_detector(trained_models[name])
    real = det.calib_scores_[det.calib_labels_ == 0]
    assert real.size > 0
    assert (real > det.threshold_).mean() <= det.target_fpr + 1e-9
    calib = tiny_corpus.split("calib")
    if len(det.calib_scores_) == len(calib):  # calibrated on the whole calib split
        np.testing.assert_allclose(det.score(calib.items), det.calib_scores_, rtol=1e-6,
                                   atol=1e-6)
    # a looser FPR re-derived from the saved calibration scores lowers the threshold
    loose = det.calibration_for(0.2)
    assert loose.threshold <= det.threshold_
    assert (real > loose.threshold).mean() <= 0.2 + 1e-9


@pytest.mark.parametrize("name", IMAGE_TEST_DETECTORS)
def test_learns_better_than_chance_on_held_out_items(name, trained_models, tiny_corpus):
    """Held-out photos and unseen GAN samples: the lower 95% bound of AUROC beats chance."""
    det = load_detector(trained_models[name])
    test = tiny_corpus.split("test")
    scores = det.score(test.items)
    lo, _ = metrics.bootstrap_ci(test.labels, scores, metrics.auroc, n=200)
    assert lo > 0.6, f"{name}: AUROC lower bound {lo:.3f}"


@pytest.mark.parametrize("name", IMAGE_TEST_DETECTORS)
def test_scores_large_and_tiny_images_by_tiling(name, trained_models):
    det = load_detector(trained_models[name])
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 517, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    s = det.score([big, small])
    assert s.shape == (2,) and np.all(np.isfinite(s))
    tile_scores, pos = det.score_tiles(big)
    assert len(tile_scores) == len(pos) <= det.max_tiles
    with pytest.raises(InputError, match="smaller than"):
        det.score([np.zeros((4, 4, 3), np.uint8)])


def test_fit_needs_both_classes(tiny_corpus):
    only_real = tiny_corpus.filter(lambda r: r.label == 0)
    with pytest.raises(ConfigError, match="both real and synthetic"):
        detectors.create("spectrum-test").fit(only_real)


def test_load_refuses_unknown_or_broken_models(trained_models, tmp_path):
    import shutil

    src = trained_models["spectrum-test"]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["name"] = "os.system"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unknown detector"):
        load_detector(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_detector(bad)
    (bad / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match="not a saved detector"):
        load_detector(bad)


def test_tiling_covers_native_resolution():
    pos = tile_positions(100, 70, 32, 1000)
    assert pos == [(y, x) for y in (0, 32, 64) for x in (0, 32)]
    assert len(tile_positions(4000, 3000, 32, 64)) == 64
    img = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    patches, _ = tiles(img, 32, 4)
    assert patches.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(patches[0, :20, :20], img)


def test_corpus_used_by_fit_is_recorded(trained_models, tiny_corpus):
    det = load_detector(trained_models["spectrum-test"])
    assert det.trained_on_["content_hash"] == tiny_corpus.content_hash
    assert isinstance(Corpus.open(tiny_corpus.root), Corpus)


def test_npr_residual_vanishes_on_nearest_upsampled_images():
    import torch

    from detect.image.npr import npr_residual

    small = torch.randn(2, 3, 8, 8)
    up = torch.nn.functional.interpolate(small, scale_factor=2, mode="nearest")
    assert npr_residual(up).abs().max() == 0
    assert npr_residual(torch.randn(2, 3, 16, 16)).abs().mean() > 0.1
    with pytest.raises(ConfigError, match="residual"):
        detectors.create("cnn-test", residual="dct")


@pytest.mark.parametrize("name", [n for n in detectors.names("cnn-*") + detectors.names("npr-*")
                                  if not n.endswith("-test")])
def test_every_registered_cnn_builds_and_scores_a_patch(name):
    """The full-size backbones are too slow to train in the tests; they must at least build
    from their registry entry and map a batch of patches to one logit each."""
    det = detectors.create(name)
    det.model_ = det._build().eval()
    s = det._score_patches(np.zeros((2, det.patch, det.patch, 3), np.uint8))
    assert s.shape == (2,) and np.all(np.isfinite(s))
