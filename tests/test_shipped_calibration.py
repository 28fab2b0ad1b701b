"""Every shipped default rule either holds its target FPR on the held-out samples that ship, or
says it cannot (its calibration is too small) and answers "uncertain" with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from detect.app.release import read_holdout
from detect.app.scan import ScanOptions, scan_item
from detect.core.models import MODELS_DIR, load_detectors
from detect.io.media import load

DATA = Path(__file__).parent / "data"


def holdout(name: str) -> tuple[list[Path], np.ndarray]:
    meta = read_holdout(DATA / name)
    names = sorted(meta["labels"])
    return [DATA / name / n for n in names], np.array([meta["labels"][n] for n in names])


def within_band(false_pos: int, n: int, target: float) -> bool:
    """The binomial 95% band of the count of flagged reals for a rule that holds ``target``."""
    return binom.ppf(0.025, n, target) <= false_pos <= binom.ppf(0.975, n, target)


def check_rule(name: str, cal, real_scores: np.ndarray) -> None:
    assert cal.n_real > 0, name
    assert 0 < cal.supports_fpr <= 1
    if cal.supported:
        k = int((real_scores > cal.threshold).sum())
        assert within_band(k, real_scores.size, cal.target_fpr), \
            (name, k, real_scores.size, cal.target_fpr)
    else:
        reason = cal.unsupported_reason()
        assert reason and str(cal.n_real) in reason, name
        assert cal.verdict(float(real_scores.max())) == "uncertain"


def _defaults() -> dict:
    return json.loads((MODELS_DIR / "defaults.json").read_text())


@pytest.fixture(scope="module")
def dets():
    return {d.name: d for d in load_detectors()}


def test_image_rules_hold_or_abstain(dets):
    paths, labels = holdout("shipped-holdout-wild")
    items = [load(p) for p in paths]
    for name in _defaults()["image"]:
        det = dets[name]
        check_rule(name, det.calibration_for(), det.score(items)[labels == 0])
    paths, labels = holdout("shipped-holdout")  # the 32-pixel line, shipped by name
    items = [load(p) for p in paths]
    for det in load_detectors(_defaults()["image_legacy"]):
        check_rule(det.name, det.calibration_for(), det.score(items)[labels == 0])


def test_text_rules_hold_or_abstain(dets):
    from detect.text.base import bucket_of, count_tokens

    paths, labels = holdout("shipped-holdout-text")
    items = [load(p) for p in paths]
    for name in _defaults().get("text", []):
        det = dets[name]
        scores = det.score(items)
        check_rule(name, det.calibration_for(), scores[labels == 0])  # the pooled rule
        # and the rule each real text of the sample gets: its length bucket's, where it has one
        n_tok = np.array([count_tokens(det.prepare(it)) for it in items])
        buckets = np.array([bucket_of(int(n)) for n in n_tok])
        for b in sorted(set(buckets[labels == 0].tolist())):
            sel = (labels == 0) & (buckets == b)
            cal = det.calibration_for(None, int(n_tok[sel][0]))
            check_rule(f"{name} bucket {b}", cal, scores[sel])


def test_face_rules_hold_or_abstain(dets):
    paths, labels = holdout("shipped-holdout-faces")
    crops = [p for p in paths if p.suffix == ".png"]
    lab = np.array([labels[i] for i, p in enumerate(paths) if p.suffix == ".png"])
    for name in _defaults().get("face", []):
        det = dets[name]
        scores = det.score_crops(np.stack([load(p).content for p in crops]))
        check_rule(name, det.calibration_for(), scores[lab == 0])


@pytest.mark.slow  # 30 clips through face finding: ~40 s on 2 cores
def test_video_rule_holds_its_fpr_on_held_out_real_clips(dets):
    """The shipped video rule rests on enough real clips to support its 1% target, and on the
    held-out real clips that ship its realised FPR is within the binomial band of 1%."""
    paths, labels = holdout("shipped-holdout-video")
    (name,) = _defaults()["face"]
    det = dets[name]
    vcal = det.video_calibration_for()
    assert vcal is not None and vcal.supported, vcal.describe()
    assert vcal.n_real >= 386  # detect.core.calibration.supported_fpr: 1% needs 386 reals
    recs = [scan_item(load(p), [det]) for p in paths]
    real = np.array([r.score for r, lab in zip(recs, labels, strict=True) if lab == 0],
                    dtype=float)
    real = real[np.isfinite(real)]  # a clip where no face was found has no video score
    assert real.size >= 20
    check_rule(name, vcal, real)
    for r in recs:
        res = r.detectors[name]
        assert r.calibration == res["calibration"]
        if np.isfinite(r.score or np.nan):
            assert res["calibration"]["rule"] == "video"
            assert res["calibration"]["n"] == vcal.n_real and res.get("decides", True)


@pytest.mark.slow
def test_every_record_says_what_its_calibration_supports(dets, tmp_path):
    """Image, face, text: whatever decides, the record names its calibration's size and the
    smallest FPR it supports; asked for less, it abstains and says why."""
    from PIL import Image
    from skimage import data

    img = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(img)
    text_paths, _ = holdout("shipped-holdout-text")
    for p in (img, text_paths[0]):
        f = scan_item(load(p), list(dets.values()))
        assert f.calibration and {"n", "supports_fpr"} <= set(f.calibration), f.to_dict()
        for res in f.detectors.values():
            assert {"n", "supports_fpr"} <= set(res["calibration"])
        tiny = scan_item(load(p), list(dets.values()), ScanOptions(target_fpr=1e-6))
        assert tiny.verdict == "uncertain" and "real samples" in tiny.reason, tiny.to_dict()
