"""Image detector specifics: fitting errors, loading broken models, tiling, NPR residuals and the
full-size CNN backbones (the contract every ``*-test`` detector meets is test_conformance.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.core.detector import load_detector
from detect.core.errors import ConfigError, ModelError
from detect.core.registry import detectors
from detect.image.patch import tile_positions, tiles
from detect.io.corpus import Corpus


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
