"""The detector contract, checked on every registered ``*-test`` detector of every modality.

The names come from the registry (``conftest.detector_params``), never from a list kept here:
each detector fits on the tiny corpus of its ``tags.modality`` (image: ``tiny_corpus``; text:
``tiny_text_corpus``; face: ``tiny_face_corpus``, slow fixtures, so those params are marked
slow) and must then score, decide, save, load and report its parameters the same way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SLOW_FIXTURES, corpus_fixture, detector_params

from benchmarks import metrics
from detect.core.detector import DetectorResult, load_detector
from detect.core.errors import ConfigError, InputError, ModelError
from detect.core.registry import detectors
from detect.core.types import RESULT_KEYS, Item, Modality

PARAMS = detector_params("*-test")
# what each detector modality judges: image detectors also take a video (its frames), face
# detectors photos and videos (the faces in them), text detectors text
APPLIES = {Modality.IMAGE: {"image", "video"}, Modality.FACE: {"image", "video"},
           Modality.TEXT: {"text"}}
# the probe items a detector is scored on: the test split's items of the modality it judges
# (a face detector scores the faces it finds in the corpus' clips; a clip without a face
# scores NaN). Face finding in clips is slow, so face detectors get two.
N_PROBE = {Modality.IMAGE: None, Modality.TEXT: 12, Modality.FACE: 2}


def _modality(name: str) -> Modality:
    return detectors.get_class(name).tags.modality


def _image_params() -> list:
    return [p for p in PARAMS if _modality(p.values[0]) == Modality.IMAGE]


@pytest.fixture
def corpus(name, request):
    return request.getfixturevalue(corpus_fixture(name))


@pytest.fixture
def model_dir(name, corpus, model_cache):
    return model_cache.get(name, corpus)


@pytest.fixture
def probe(name, corpus):
    modality = _modality(name)
    if modality == Modality.FACE:
        view = corpus.filter(lambda r: r.modality == Modality.VIDEO)
    else:
        view = corpus.split("test").filter(lambda r: r.modality == modality)
    items = list(view.iter_items())[:N_PROBE[modality]]
    assert items, f"{name}: no probe items in {corpus.root}"
    return items


# -- the registry side: every family has a test variant, and a new one is picked up ---------

def test_every_family_has_a_test_variant():
    families = {n.split("-")[0] for n in detectors.names()}
    have = {n.split("-")[0] for n in detectors.names("*-test")}
    assert families <= have, f"families without a *-test variant: {families - have}"


def test_every_modality_has_a_tiny_corpus():
    # fails (KeyError) when a *-test detector's modality has no corpus fixture to fit on
    assert {corpus_fixture(p.values[0]) for p in PARAMS} <= {"tiny_corpus", "tiny_text_corpus",
                                                               "tiny_face_corpus"}


@pytest.fixture
def throwaway_entries(monkeypatch):
    """Two extra ``*-test`` entries, an image and a text one, gone again after the test."""
    monkeypatch.setattr(detectors, "_entries", dict(detectors._entries))
    detectors.register("throwaway-spectrum-test", "detect.image.spectrum:SpectrumDetector",
                       "registered by a test", bins=8, patch=16)
    detectors.register("throwaway-tfidf-test", "detect.text.supervised:TfidfDetector",
                       "registered by a test")
    return ["throwaway-spectrum-test", "throwaway-tfidf-test"]


def test_a_new_test_detector_is_covered_without_a_list(throwaway_entries):
    params = {p.values[0]: p for p in detector_params("*-test")}
    assert set(throwaway_entries) <= set(params)
    slow = {n for n, p in params.items() if any(m.name == "slow" for m in p.marks)}
    assert "throwaway-spectrum-test" not in slow  # image: the fast tiny corpus
    assert "throwaway-tfidf-test" in slow  # text: the tiny text corpus trains an LM
    assert "throwaway-spectrum-test" not in {p.values[0] for p in PARAMS}  # collection's copy
    for p in params.values():
        assert ("slow" in {m.name for m in p.marks}) == (corpus_fixture(p.values[0])
                                                         in SLOW_FIXTURES)


# -- before fit: hyperparameters only --------------------------------------------------------

@pytest.mark.parametrize("name", detectors.names("*-test"))
def test_init_stores_only_hyperparameters(name):
    det = detectors.create(name)
    assert det.name == name
    params = det.get_params()
    assert params, "a detector must expose its hyperparameters"
    assert not [k for k in vars(det) if k.endswith("_")], "no fitted state before fit()"
    with pytest.raises(ModelError, match="not fitted"):
        det.predict([np.zeros((32, 32, 3), np.uint8)])


@pytest.mark.parametrize("name", detectors.names("*-test"))
def test_get_and_set_params(name, tmp_path):
    import inspect

    det = detectors.create(name)
    params = det.get_params()
    sig = inspect.signature(type(det).__init__).parameters
    assert set(params) == {k for k in sig if k != "self"}, "get_params = constructor arguments"
    json.dumps(params)  # what config.json stores
    again = detectors.create(name, **params)
    assert again.get_params() == params
    assert det.set_params(seed=params["seed"] + 1) is det
    assert det.get_params() == {**params, "seed": params["seed"] + 1}
    with pytest.raises(ConfigError, match="unknown parameter"):
        det.set_params(no_such_parameter=1)
    with pytest.raises(ModelError, match="not fitted"):
        det.save(tmp_path / "unfitted")
    assert not (tmp_path / "unfitted" / "config.json").exists()


@pytest.mark.parametrize("name", detectors.names("*-test"))
def test_applies_to_by_modality(name):
    det = detectors.create(name)
    want = APPLIES[det.tags.modality]
    for m in ("image", "video", "text"):
        item = Item(path=f"x.{m}", sha256="0" * 64, modality=Modality(m), format=m,
                    size_bytes=0)
        assert det.applies_to(item) == (m in want), (name, m)


# -- fitted: score, decide, save, load --------------------------------------------------------

@pytest.mark.parametrize("name", PARAMS)
def test_fitted_scores_decides_and_round_trips(name, model_dir, probe, tmp_path):
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["schema"] == "unmask.detector/1" and cfg["name"] == name
    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
                   if p.is_file())
    assert files[:2] == ["config.json", "weights.safetensors"] or \
        {"config.json", "weights.safetensors"} <= set(files)
    assert all(f.endswith((".json", ".safetensors")) for f in files), files

    a = load_detector(model_dir)
    assert a.get_params() == cfg["params"]
    s1 = a.score(probe)
    assert s1.shape == (len(probe),) and s1.dtype == np.float64
    if a.tags.modality == Modality.FACE:  # NaN exactly for a clip without any face
        found = np.array([a.analyse(it)["n_faces"] > 0 for it in probe])
        assert found.any(), "no face found in any probe clip"
        assert np.array_equal(np.isfinite(s1), found)
    else:
        assert np.all(np.isfinite(s1))
    # the same models on the same machine: the tolerance only absorbs float32 network
    # arithmetic run in other batch shapes (BLAS blocking), never a different model
    b = load_detector(a.save(tmp_path / "again"))
    np.testing.assert_allclose(b.score(probe), s1, rtol=1e-6, atol=1e-6)
    assert b.threshold_ == a.threshold_ and b.get_params() == a.get_params()
    # the same item alone or in a batch scores the same (tolerance: batch shape, as above)
    np.testing.assert_allclose(a.score(probe[:1]), s1[:1], rtol=1e-5, atol=1e-5)

    for item, score in zip(probe, s1, strict=True):
        res = a.decide(item, float(score))
        assert isinstance(res, DetectorResult)
        rec = res.to_dict()
        assert set(RESULT_KEYS) <= set(rec)
        assert rec["verdict"] in ("synthetic", "real", "uncertain", "error")
        assert rec["target_fpr"] == a.calibration_for().target_fpr
        assert DetectorResult.from_dict(rec) == res and dict(res) == rec
        json.dumps(rec)  # a scan record's detector entry is plain JSON
    assert a.predict(probe) == [a.calibration_for().verdict(s) for s in s1]
    assert all(a.applies_to(it) for it in probe)


@pytest.mark.parametrize("name", PARAMS)
def test_threshold_honours_target_fpr_on_calibration(name, model_dir, corpus):
    det = load_detector(model_dir)
    real = det.calib_scores_[det.calib_labels_ == 0]
    assert real.size > 0
    assert (real > det.threshold_).mean() <= det.target_fpr + 1e-9
    calib = corpus.split("calib")
    if det.tags.modality == Modality.IMAGE and len(det.calib_scores_) == len(calib):
        # calibrated on the whole calib split
        np.testing.assert_allclose(det.score(calib.items), det.calib_scores_, rtol=1e-6,
                                   atol=1e-6)
    # a looser FPR re-derived from the saved calibration scores lowers the threshold
    loose = det.calibration_for(0.2)
    assert loose.threshold <= det.threshold_
    assert (real > loose.threshold).mean() <= 0.2 + 1e-9


@pytest.mark.parametrize("name", _image_params())
def test_learns_better_than_chance_on_held_out_items(name, model_dir, corpus):
    """Held-out photos and unseen GAN samples: the lower 95% bound of AUROC beats chance."""
    det = load_detector(model_dir)
    test = corpus.split("test")
    scores = det.score(test.items)
    lo, _ = metrics.bootstrap_ci(test.labels, scores, metrics.auroc, n=200)
    assert lo > 0.6, f"{name}: AUROC lower bound {lo:.3f}"


@pytest.mark.parametrize("name", _image_params())
def test_scores_large_and_tiny_images_by_tiling(name, model_dir):
    det = load_detector(model_dir)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 517, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    s = det.score([big, small])
    assert s.shape == (2,) and np.all(np.isfinite(s))
    tile_scores, pos = det.score_tiles(big)
    assert len(tile_scores) == len(pos) <= det.max_tiles
    with pytest.raises(InputError, match="smaller than"):
        det.score([np.zeros((4, 4, 3), np.uint8)])
