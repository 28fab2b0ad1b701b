"""Thresholds chosen for a stated false-positive rate, not a fixed 0.5.

A detector's raw score means nothing across models; what a moderator can act on is "flag at
most 1% of real files". ``threshold_at_fpr`` picks that cut from the real items of a
calibration split, and ``verdict`` turns a score into synthetic / uncertain / real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


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

    def verdict(self, score: float) -> str:
        if not math.isfinite(score):
            return "error"
        if score > self.threshold:
            return "synthetic"
        if score > self.lower:
            return "uncertain"
        return "real"

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})
