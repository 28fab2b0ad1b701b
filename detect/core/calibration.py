"""Thresholds chosen for a stated false-positive rate, not a fixed 0.5.

A detector's raw score means nothing across models; what a moderator can act on is "flag at
most 1% of real files". ``threshold_at_fpr`` picks that cut from the real items of a
calibration split, and ``verdict`` turns a score into synthetic / uncertain / real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.types import DetectorResult


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate on the real items is <= ``target_fpr``.

    An item is flagged when ``score > threshold``. With ``n`` real items the achievable FPR
    moves in steps of ``1/n``; at ``target_fpr < 1/n`` this returns the largest real score,
    so no calibration real is flagged (the honest limit of a small calibration set).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if not 0.0 <= target_fpr < 1.0:
        raise ConfigError(f"target FPR must be in [0, 1), got {target_fpr}")
    real = np.sort(scores[labels == 0])
    if real.size == 0:
        raise ConfigError("calibration needs real (label 0) items; the split has none")
    if not np.all(np.isfinite(real)):
        raise ConfigError("calibration scores contain NaN or infinity")
    allowed = math.floor(target_fpr * real.size + 1e-9)  # real items that may score above
    return float(real[real.size - 1 - allowed])


# What "a rule holds its FPR" means here: with this confidence, the realised false-positive rate
# of the threshold on new real items stays below SUPPORT_SLACK x the target.
SUPPORT_CONFIDENCE = 0.95
SUPPORT_SLACK = 2.0


@lru_cache(maxsize=256)
def supported_fpr(n_real: int, confidence: float = SUPPORT_CONFIDENCE,
                  slack: float = SUPPORT_SLACK) -> float:
    """The smallest target FPR that a threshold chosen on ``n_real`` calibration reals holds.

    ``threshold_at_fpr`` at target ``a`` cuts at the real score with ``k = floor(a n)`` reals
    above it. Whatever the score distribution, the real mass above that order statistic (the
    realised FPR on new reals) follows Beta(k + 1, n - k). A target is supported when the
    ``confidence`` quantile of that law is at most ``slack * a``. It needs about 4 / a reals:
    1% wants 386, 0.1% about 3,900; 10 reals support nothing below ~20%. Returns 1.0 when no
    target below 1 is supported.
    """
    from scipy.stats import beta

    n = int(n_real)
    if n <= 0:
        return 1.0
    k = np.arange(n, dtype=np.float64)
    upper = beta.ppf(confidence, k + 1, n - k)      # realised-FPR bound of the k-th cut
    lo = np.maximum(k / n, upper / slack)           # smallest target with k allowed, supported
    ok = np.flatnonzero(lo < (k + 1) / n)            # ... that still has k allowed
    return float(lo[ok[0]]) if ok.size else 1.0


@dataclass(frozen=True)
class Calibration:
    """The decision rule saved with a model.

    ``threshold`` flags at ``target_fpr``; ``lower`` is the threshold at the looser
    ``uncertain_fpr``. Scores between the two are "uncertain": the file would be flagged by a
    laxer moderator, so the tool abstains instead of calling it real.
    """

    threshold: float
    target_fpr: float
    lower: float
    uncertain_fpr: float
    n_real: int
    n_fake: int

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, target_fpr: float,
            uncertain_fpr: float | None = None) -> Calibration:
        labels = np.asarray(labels)
        if uncertain_fpr is None:
            uncertain_fpr = min(0.5, max(10 * target_fpr, 0.05))
        uncertain_fpr = max(uncertain_fpr, target_fpr)
        thr = threshold_at_fpr(scores, labels, target_fpr)
        low = min(threshold_at_fpr(scores, labels, uncertain_fpr), thr)
        return cls(thr, float(target_fpr), low, float(uncertain_fpr),
                   int((labels == 0).sum()), int((labels == 1).sum()))

    @property
    def supports_fpr(self) -> float:
        """The smallest target FPR this rule's calibration reals support (``supported_fpr``)."""
        return supported_fpr(self.n_real)

    @property
    def supported(self) -> bool:
        # a hair of relative slack: a target re-derived at exactly the supported FPR counts
        return self.target_fpr >= self.supports_fpr * (1 - 1e-9)

    def unsupported_reason(self) -> str | None:
        """Why this rule may not give a verdict at its target FPR, or None when it may."""
        if self.supported:
            return None
        return (f"calibrated on {self.n_real} real samples, which support a false-positive "
                f"rate of {self.supports_fpr:.2g} or more, not the {self.target_fpr:g} asked "
                "for")

    def describe(self, rule: str | None = None) -> dict[str, Any]:
        """What a record says about the rule behind its verdict."""
        out: dict[str, Any] = {"n": self.n_real, "supports_fpr": round(self.supports_fpr, 6)}
        if rule:
            out["rule"] = rule
        return out

    def verdict(self, score: float) -> str:
        """synthetic / uncertain / real at this rule; "uncertain" whatever the score when the
        calibration is too small to hold the target FPR (see ``unsupported_reason``)."""
        if not math.isfinite(score):
            return "error"
        if not self.supported:
            return "uncertain"
        if score > self.threshold:
            return "synthetic"
        if score > self.lower:
            return "uncertain"
        return "real"

    def decision(self, score: float, rule: str | None = None) -> DetectorResult:
        """One detector's result for ``score`` under this rule (every detector family builds
        its result from this, so each says what calibration its verdict rests on)."""
        res = DetectorResult(score=score, verdict=self.verdict(score), threshold=self.threshold,
                             uncertain_above=self.lower, target_fpr=self.target_fpr,
                             calibration=self.describe(rule))
        why = self.unsupported_reason()
        if why and res.verdict == "uncertain":
            # a rule that cannot hold its FPR steps aside: the next detector whose calibration
            # supports the target decides (verdict.primary); when none can, this "uncertain"
            # stands
            res.reason, res.decides = why, False
        return res

    def to_dict(self) -> dict:
        """The saved rule; ``supports_fpr`` is derived from ``n_real`` and written for readers."""
        return {**self.__dict__, "supports_fpr": self.supports_fpr}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class CalibratedMixin:
    """The decision rule a fitted model carries, shared by every detector family.

    ``calibrate(scores, labels)`` keeps the calibration split's scores and labels
    (``calib_scores_`` / ``calib_labels_``, saved with the model as ``calib.scores`` /
    ``calib.labels``) and the rule at ``target_fpr`` (``calibration_``); ``calibration_for``
    re-derives the rule at another FPR from those scores. ``name`` names the model in errors.
    """

    name: str = "detector"
    target_fpr: float = 0.01

    def calibrate(self, scores: np.ndarray, labels: np.ndarray) -> CalibratedMixin:
        """Choose ``threshold_`` at ``target_fpr`` from held-out calibration scores."""
        self.calib_scores_ = np.asarray(scores, dtype=np.float64)
        self.calib_labels_ = np.asarray(labels).astype(np.int64)
        self.calibration_ = Calibration.fit(self.calib_scores_, self.calib_labels_,
                                            self.target_fpr)
        self.__dict__.pop("_calibration_cache", None)
        return self

    def calibration_for(self, target_fpr: float | None = None) -> Calibration:
        """The decision rule at the saved FPR, or re-derived from saved calibration scores."""
        self._check_fitted()
        return self._rule_at(self.calibration_, self.calib_scores_, self.calib_labels_,
                             target_fpr)

    def _rule_at(self, saved: Calibration, scores: np.ndarray, labels: np.ndarray,
                 target_fpr: float | None) -> Calibration:
        """``saved`` at its own FPR; another FPR's rule re-derived from the calibration scores
        it was fitted on, once per set of scores (a scan asks once per file)."""
        if target_fpr is None or math.isclose(target_fpr, saved.target_fpr):
            return saved
        key = (target_fpr, id(scores))
        cache = self.__dict__.setdefault("_calibration_cache", {})
        if key not in cache:
            cache[key] = Calibration.fit(scores, labels, target_fpr)
        return cache[key]

    @property
    def threshold_(self) -> float:
        self._check_fitted()
        return self.calibration_.threshold

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise ModelError(f"{self.name} is not fitted: call fit() or load a saved model")

    # -- persistence -------------------------------------------------------------------------
    def _calibration_tensors(self) -> dict[str, np.ndarray]:
        return {"calib.scores": self.calib_scores_, "calib.labels": self.calib_labels_}

    def _restore_calibration(self, tensors: dict[str, np.ndarray], rule: dict) -> None:
        """Take the saved calibration back (popping its tensors from ``tensors``)."""
        self.calib_scores_ = tensors.pop("calib.scores")
        self.calib_labels_ = tensors.pop("calib.labels")
        self.calibration_ = Calibration.from_dict(rule)
        self.__dict__.pop("_calibration_cache", None)
