"""Tests for benchmarks.metrics against hand-computed and analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.metrics import (
    at_threshold,
    auroc,
    average_precision,
    bootstrap_ci,
    eer,
    roc,
    tpr_at_fpr,
)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pairwise_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a synthetic > score of a real), ties counting one half."""
    fake, real = scores[labels == 1], scores[labels == 0]
    diff = fake[:, None] - real[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _two_gaussians(d: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.zeros(n, int), np.ones(n, int)])
    scores = np.concatenate([rng.normal(0.0, 1.0, n), rng.normal(d, 1.0, n)])
    return labels, scores


# ----------------------------------------------------------------------------- known cases


def test_perfect_separation():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9])
    assert auroc(labels, scores) == 1.0
    assert average_precision(labels, scores) == 1.0
    assert eer(labels, scores) == 0.0
    assert tpr_at_fpr(labels, scores, 0.01) == 1.0


def test_reversed_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert auroc(labels, scores) == 0.0
    assert eer(labels, scores) == 1.0
    assert tpr_at_fpr(labels, scores, 0.01) == 0.0


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(42)
    labels = (rng.random(300) < 0.3).astype(int)
    scores = np.round(rng.normal(size=300) + 0.8 * labels, 1)  # rounding makes ties
    assert len(np.unique(scores)) < 300
    assert math.isclose(auroc(labels, scores), _pairwise_auroc(labels, scores), abs_tol=1e-12)


def test_auroc_small_hand_example():
    # pairs (fake, real): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert auroc(labels, scores) == 0.75
    # AP: ranks 0.8 (tp), 0.4 (fp), 0.35 (tp) -> (1/1 + 2/3) / 2
    assert math.isclose(average_precision(labels, scores), (1 + 2 / 3) / 2)


def test_auroc_is_invariant_to_monotone_rescaling():
    labels, scores = _two_gaussians(1.0, 500, seed=3)
    assert math.isclose(auroc(labels, scores), auroc(labels, np.exp(scores)), abs_tol=1e-12)


def test_roc_endpoints():
    labels, scores = _two_gaussians(1.0, 200, seed=4)
    fpr, tpr, thr = roc(labels, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(thr) == len(fpr)


# ----------------------------------------------------------------------------- analytic


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_eer_of_two_gaussians_matches_analytic(d):
    labels, scores = _two_gaussians(d, 20000, seed=int(d * 10))
    expected = _phi(-d / 2)
    assert abs(eer(labels, scores) - expected) < 0.01, (d, eer(labels, scores), expected)
    # and AUROC = Phi(d / sqrt 2) for unit-variance Gaussians
    assert abs(auroc(labels, scores) - _phi(d / math.sqrt(2))) < 0.01


def test_eer_is_where_fpr_meets_fnr():
    labels, scores = _two_gaussians(1.2, 5000, seed=9)
    e = eer(labels, scores)
    fpr, tpr, _ = roc(labels, scores)
    fnr = 1 - tpr
    k = int(np.argmin(np.abs(fnr - fpr)))
    assert abs(e - fpr[k]) < 2e-3 and abs(e - fnr[k]) < 2e-3


def test_eer_crossing_on_previous_segment():
    # thresholds 0.4, 0.3 -> FNR 2/3, 1/3 at FPR 0; threshold 0.2 -> FPR 1/2 at FNR 1/3.
    # FPR = FNR = 1/3 on the segment from 0.3 to 0.2.
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.0, 0.2, 0.1, 0.3, 0.4])
    assert math.isclose(eer(labels, scores), 1 / 3)


def test_tpr_at_fpr_hand_example():
    # 10 reals 0..9, 4 fakes 12, 9.5, 8.5, 4.5
    labels = np.array([0] * 10 + [1] * 4)
    scores = np.array(list(range(10)) + [9.5, 8.5, 4.5, 12.0])
    assert tpr_at_fpr(labels, scores, 0.0) == 0.5  # no real flagged: 12 and 9.5
    assert tpr_at_fpr(labels, scores, 0.05) == 0.5  # below one step of 1/10
    assert tpr_at_fpr(labels, scores, 0.1) == 0.75  # real 9 flagged, 8.5 joins
    assert tpr_at_fpr(labels, scores, 0.4) == 0.75  # 4.5 needs five reals flagged
    assert tpr_at_fpr(labels, scores, 0.5) == 1.0


# ----------------------------------------------------------------------------- fixed threshold


def test_at_threshold_rates():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.6, 0.2, 0.7, 0.5, 0.9, 0.3])
    r = at_threshold(labels, scores, 0.5)  # flagged: 0.6 (real), 0.7, 0.9 (fakes)
    assert r == {"accuracy": 5 / 8, "fpr": 1 / 4, "tpr": 2 / 4}
    assert at_threshold(labels, scores, 1.0) == {"accuracy": 0.5, "fpr": 0.0, "tpr": 0.0}
    assert at_threshold(labels, scores, 0.0) == {"accuracy": 0.5, "fpr": 1.0, "tpr": 1.0}


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_estimate_and_is_deterministic():
    labels, scores = _two_gaussians(1.0, 300, seed=11)
    point = auroc(labels, scores)
    lo, hi = bootstrap_ci(labels, scores, auroc, n=200, seed=0)
    assert lo < point < hi
    assert 0.0 < hi - lo < 0.2
    assert bootstrap_ci(labels, scores, auroc, n=200, seed=0) == (lo, hi)
    assert bootstrap_ci(labels, scores, auroc, n=200, seed=1) != (lo, hi)


def test_bootstrap_ci_narrows_with_more_data():
    small = bootstrap_ci(*_two_gaussians(1.0, 100, seed=5), eer, n=150, seed=0)
    large = bootstrap_ci(*_two_gaussians(1.0, 2000, seed=5), eer, n=150, seed=0)
    assert (large[1] - large[0]) < (small[1] - small[0])
    assert large[0] < _phi(-0.5) < large[1]


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "fn",
    [auroc, average_precision, eer, tpr_at_fpr,
     lambda y, s: at_threshold(y, s, 0.5), lambda y, s: bootstrap_ci(y, s, auroc, n=5)],
    ids=["auroc", "ap", "eer", "tpr_at_fpr", "at_threshold", "bootstrap_ci"],
)
@pytest.mark.parametrize("label", [0, 1])
def test_single_class_raises(fn, label):
    labels = np.full(5, label)
    with pytest.raises(ValueError, match="both real"):
        fn(labels, np.linspace(0, 1, 5))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        auroc(np.array([0, 1, 0]), np.array([0.1, 0.2]))
