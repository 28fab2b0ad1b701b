"""Fusion rules: logistic regression and the weight-free max-p rule."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import metrics
from detect.core.detector import load_detector
from detect.core.errors import ConfigError
from detect.core.registry import detectors


def test_max_p_is_the_strongest_member_evidence(trained_models, tiny_corpus, tmp_path):
    members = [str(trained_models["spectrum-test"]), str(trained_models["npr-test"])]
    fused = detectors.create("fusion-test", members=members, method="max-p").fit(tiny_corpus)
    items = tiny_corpus.split("test").items
    got = fused.score(items)
    # by hand: each member's p-value against its own real calibration scores
    logp = []
    for m in (load_detector(p) for p in members):
        real = m.calib_scores_[m.calib_labels_ == 0]
        s = m.score(items)
        logp.append(np.log10((1 + (real[None, :] >= s[:, None]).sum(1)) / (1 + real.size)))
    np.testing.assert_allclose(got, -np.min(np.stack(logp, 1), 1), rtol=1e-9)
    assert metrics.auroc(tiny_corpus.split("test").labels, got) > 0.6
    real_calib = fused.calib_scores_[fused.calib_labels_ == 0]
    assert (real_calib > fused.threshold_).mean() <= fused.target_fpr + 1e-9
    again = load_detector(fused.save(tmp_path / "maxp"))
    assert again.method == "max-p"
    np.testing.assert_allclose(again.score(items), got, rtol=1e-9)
    tile_scores, pos = again.score_tiles(items[0])
    assert len(tile_scores) == len(pos) and np.all(np.isfinite(tile_scores))
    # max-p fits nothing: the whole calib split calibrates it, as it did each member
    assert again.calibration_for().n_real == load_detector(members[0]).calibration_for().n_real
    # inspect says what each member said: its score and its p-value (the fused score is
    # -log10 of the smallest), whether or not the members are loaded on their own
    from detect.app.inspect import inspect_item

    for dets in ([again], [load_detector(members[0]), load_detector(members[1]), again]):
        rep = inspect_item(items[0], dets)["detectors"]["fusion-test"]
        ps = [e["p_value"] for e in rep["members"].values()]
        assert sorted(rep["members"]) == ["npr-test", "spectrum-test"]
        assert rep["score"] == pytest.approx(-np.log10(min(ps)), abs=1e-3)  # p rounded to 1e-6


def test_unknown_fusion_method_is_refused():
    with pytest.raises(ConfigError, match="max-p"):
        detectors.create("fusion", method="vote")


def test_scan_scores_shared_members_once(trained_models, tiny_corpus, tmp_path):
    """Loaded beside its own members (as the shipped defaults are), a fusion re-uses their
    scores in a scan instead of scoring every member a second time."""
    from detect.app.scan import scan_item
    from detect.core.models import load_detectors

    members = [str(trained_models["spectrum-test"]), str(trained_models["npr-test"])]
    fdir = detectors.create("fusion-test", members=members).fit(tiny_corpus) \
        .save(tmp_path / "fused")
    item = tiny_corpus.split("test").items[0]
    alone = float(load_detector(fdir).score([item])[0])
    dets = load_detectors([], [fdir / "members" / "0", fdir / "members" / "1", fdir])
    assert dets[2].members_[0] is dets[0] and dets[2].members_[1] is dets[1]
    calls = []
    for d in dets[:2]:
        d.score = lambda items, orig=d.score: calls.append(1) or orig(items)
    f = scan_item(item, dets)
    assert len(calls) == 2, "each member scored once; the fusion re-used their scores"
    assert f.detectors["fusion-test"]["score"] == pytest.approx(alone, rel=1e-6)
    assert f.verdict == f.detectors["spectrum-test"]["verdict"]  # the first listed decides


def test_fusion_refuses_a_shipped_member_whose_weights_changed(tiny_corpus, tmp_path,
                                                               monkeypatch):
    """Members stored by name carry their weights' sha256: a later retrain of the shipped
    model cannot silently pair new member scores with the old fusion weights."""
    import shutil

    from detect.core import models
    from detect.core.errors import ModelError

    fake_models = tmp_path / "models"
    shutil.copytree(models.MODELS_DIR, fake_models, ignore=shutil.ignore_patterns("fusion*"))
    monkeypatch.setattr(models, "MODELS_DIR", fake_models)
    fused = detectors.create("fusion", members=["cnn-resnet10t-slim", "spectrum-logreg"])
    d = fused.fit(tiny_corpus).save(tmp_path / "f")
    load_detector(d)  # unchanged members load
    w = fake_models / "spectrum-logreg" / "weights.safetensors"
    from safetensors.numpy import load_file, save_file

    t = load_file(str(w))
    t["coef"] = t["coef"] * 2
    save_file(t, str(w), metadata={"format": "np"})
    with pytest.raises(ModelError, match="'spectrum-logreg' is not the model"):
        load_detector(d)
