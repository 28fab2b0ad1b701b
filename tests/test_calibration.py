"""Tests for detect.core.calibration: thresholds at a stated false-positive rate, and verdicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detect.core.calibration import Calibration, supported_fpr, threshold_at_fpr
from detect.core.errors import ConfigError

REAL_0_TO_99 = np.arange(100, dtype=np.float64)


# ----------------------------------------------------------------------------- threshold_at_fpr


def test_threshold_flags_exactly_five_of_hundred_reals():
    real, labels = REAL_0_TO_99, np.zeros(100, dtype=int)
    thr = threshold_at_fpr(real, labels, 0.05)
    assert int((real > thr).sum()) == 5
    assert thr == 94.0


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.07, 0.1, 0.29, 0.5, 0.57, 0.99])
def test_threshold_is_exact_and_smallest(target):
    rng = np.random.default_rng(0)
    real = rng.permutation(REAL_0_TO_99)
    fake = rng.uniform(-50, 150, size=37)  # synthetic scores must not move the threshold
    scores = np.concatenate([real, fake])
    labels = np.concatenate([np.zeros(100, int), np.ones(37, int)])
    order = rng.permutation(len(scores))
    thr = threshold_at_fpr(scores[order], labels[order], target)

    allowed = round(target * 100)  # exact for these targets despite float products (0.29*100)
    flagged = int((real > thr).sum())
    assert flagged == allowed
    assert flagged / 100 <= target
    # smallest: the next lower real score would flag one real too many
    below = np.sort(real)[np.sort(real) < thr]
    if below.size:
        assert (real > below.max()).sum() / 100 > target


def test_threshold_between_steps_rounds_down_fpr():
    real, labels = REAL_0_TO_99, np.zeros(100, dtype=int)
    # 4.9% cannot be met exactly: only 4 reals may score above
    thr = threshold_at_fpr(real, labels, 0.049)
    assert int((real > thr).sum()) == 4


def test_target_below_one_over_n_returns_max_real():
    scores = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0, 5.0, 6.0])
    labels = np.array([0] * 10 + [1, 1])
    thr = threshold_at_fpr(scores, labels, 0.05)  # 1/n = 0.1
    assert thr == 0.9
    assert int((scores[labels == 0] > thr).sum()) == 0


def test_ties_never_exceed_target():
    real = np.array([0.1] * 50 + [0.5] * 50)
    thr = threshold_at_fpr(real, np.zeros(100, int), 0.2)
    assert (real > thr).mean() <= 0.2


def test_no_reals_is_config_error():
    with pytest.raises(ConfigError, match="real"):
        threshold_at_fpr(np.array([0.2, 0.8]), np.array([1, 1]), 0.05)
    with pytest.raises(ConfigError):
        threshold_at_fpr(np.array([]), np.array([]), 0.05)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_real_scores_are_config_error(bad):
    scores = np.array([0.1, 0.2, bad, 0.4])
    with pytest.raises(ConfigError, match="NaN"):
        threshold_at_fpr(scores, np.zeros(4, int), 0.05)


@pytest.mark.parametrize("target", [-0.01, 1.0, 1.5])
def test_target_out_of_range_is_config_error(target):
    with pytest.raises(ConfigError, match="target FPR"):
        threshold_at_fpr(REAL_0_TO_99, np.zeros(100, int), target)


# ----------------------------------------------------------------------------- Calibration


def _fitted(target=0.05, uncertain=0.2) -> Calibration:
    scores = np.concatenate([REAL_0_TO_99, np.full(20, 1000.0)])
    labels = np.concatenate([np.zeros(100, int), np.ones(20, int)])
    return Calibration.fit(scores, labels, target, uncertain)


def test_fit_records_thresholds_and_counts():
    cal = _fitted()
    assert cal.threshold == 94.0
    assert cal.lower == 79.0  # 20 reals above
    assert cal.target_fpr == 0.05 and cal.uncertain_fpr == 0.2
    assert (cal.n_real, cal.n_fake) == (100, 20)
    assert isinstance(cal.threshold, float) and isinstance(cal.n_real, int)


def test_verdict_bands():
    cal = _fitted()
    assert cal.verdict(1000.0) == "synthetic"
    assert cal.verdict(94.5) == "synthetic"
    assert cal.verdict(94.0) == "uncertain"  # flagged only when strictly above
    assert cal.verdict(80.0) == "uncertain"
    assert cal.verdict(79.0) == "real"
    assert cal.verdict(-5.0) == "real"
    assert cal.verdict(float("nan")) == "error"


def test_verdicts_on_calibration_reals_match_the_rates():
    cal = _fitted()
    verdicts = [cal.verdict(s) for s in REAL_0_TO_99]
    assert verdicts.count("synthetic") == 5
    assert verdicts.count("synthetic") + verdicts.count("uncertain") == 20
    assert verdicts.count("real") == 80


@pytest.mark.parametrize(
    "target, uncertain, expected",
    [(0.01, None, 0.1), (0.001, None, 0.05), (0.1, None, 0.5), (0.2, None, 0.5),
     (0.1, 0.01, 0.1)],
)
def test_uncertain_fpr_default_and_floor(target, uncertain, expected):
    labels = np.zeros(100, int)
    cal = Calibration.fit(REAL_0_TO_99, labels, target, uncertain)
    assert math.isclose(cal.uncertain_fpr, expected)
    assert cal.lower <= cal.threshold


def test_equal_rates_collapse_the_uncertain_band():
    cal = Calibration.fit(REAL_0_TO_99, np.zeros(100, int), 0.1, 0.1)
    assert cal.lower == cal.threshold
    assert all(cal.verdict(s) != "uncertain" for s in np.linspace(-1, 101, 400))


def test_dict_round_trip_through_json():
    cal = _fitted()
    d = json.loads(json.dumps(cal.to_dict()))
    assert set(d) == {"threshold", "target_fpr", "lower", "uncertain_fpr", "n_real", "n_fake",
                      "supports_fpr"}
    back = Calibration.from_dict(d)  # supports_fpr is derived from n_real, not read back
    assert back == cal
    # extra keys in a saved config are ignored, missing ones are an error
    assert Calibration.from_dict({**d, "note": "x"}) == cal
    with pytest.raises(KeyError):
        Calibration.from_dict({k: v for k, v in d.items() if k != "lower"})


def test_realised_fpr_on_fresh_reals_matches_target():
    rng = np.random.default_rng(12345)
    # calibration split: 2k reals and 500 fakes, scores on a skewed scale
    calib_real = rng.gamma(2.0, 1.5, size=2000)
    calib_fake = rng.gamma(6.0, 1.5, size=500)
    scores = np.concatenate([calib_real, calib_fake])
    labels = np.concatenate([np.zeros(2000, int), np.ones(500, int)])
    fresh_real = rng.gamma(2.0, 1.5, size=20000)
    for target, lo, hi in [(0.05, 0.03, 0.07), (0.01, 0.004, 0.018)]:
        cal = Calibration.fit(scores, labels, target)
        realised = float((fresh_real > cal.threshold).mean())
        assert lo <= realised <= hi, (target, realised)
        # and on the calibration reals themselves the rate is never above target
        assert (calib_real > cal.threshold).mean() <= target


def test_finding_json_never_fails_on_non_finite_numbers():
    import json

    from detect.core.types import Finding

    f = Finding(path="x.png", verdict="error", score=float("nan"),
                detectors={"d": {"score": float("inf"), "tiles": [1.0, float("-inf")]}})
    d = json.loads(f.to_json())
    assert d["score"] is None and d["detectors"]["d"]["score"] is None
    assert d["detectors"]["d"]["tiles"] == [1.0, None]


# ----------------------------------------------------------------------------- supported FPR


def test_supported_fpr_shrinks_with_more_reals_and_needs_about_four_over_alpha():
    values = [supported_fpr(n) for n in (1, 10, 100, 1000, 10000)]
    assert values == sorted(values, reverse=True)
    assert supported_fpr(0) == 1.0
    assert supported_fpr(10) > 0.1  # ten real clips cannot hold 10%, let alone 1%
    # the rule of thumb in the docstring: 1% needs several hundred reals, not tens
    assert supported_fpr(300) > 0.01 > supported_fpr(450)


def test_supported_fpr_bound_holds_by_simulation():
    """Uniform real scores make the realised FPR of a threshold t exactly 1 - t, so the law
    the bound rests on can be checked by drawing calibration sets."""
    rng = np.random.default_rng(7)
    for n in (50, 400, 2000):
        alpha = supported_fpr(n)
        realised = np.array([1.0 - threshold_at_fpr(rng.random(n), np.zeros(n, int), alpha)
                             for _ in range(4000)])
        # by construction P(realised > 2 alpha) <= 5%; 4000 draws put the estimate of that
        # probability within +-1.1% (2 standard errors), hence the 6.1% ceiling
        assert (realised > 2 * alpha).mean() <= 0.061, (n, alpha)


def test_rule_below_its_supported_fpr_says_uncertain_and_why():
    small = Calibration.fit(REAL_0_TO_99, np.zeros(100, int), 0.01)  # 100 reals: ~4% at best
    assert not small.supported and small.supports_fpr > 0.01
    assert small.verdict(1e9) == "uncertain" and small.verdict(-1e9) == "uncertain"
    assert small.verdict(float("nan")) == "error"
    rec = small.decision(1e9, "pooled")
    assert rec["verdict"] == "uncertain" and "100 real samples" in rec["reason"]
    assert rec["decides"] is False  # steps aside for a detector that can hold the target
    assert rec["calibration"] == {"n": 100, "supports_fpr": round(small.supports_fpr, 6),
                                  "rule": "pooled"}
    big = Calibration.fit(np.arange(5000.0), np.zeros(5000, int), 0.01)
    assert big.supported and "reason" not in big.decision(1e9)
    assert big.decision(1e9)["verdict"] == "synthetic"
