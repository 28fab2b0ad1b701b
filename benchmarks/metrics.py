"""Detection metrics. Each takes labels (1 = synthetic) and scores (higher = more synthetic)."""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if len(set(labels.tolist())) != 2:
        raise ValueError("metrics need both real (0) and synthetic (1) items")
    return labels, scores


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(*_check(labels, scores)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(*_check(labels, scores)))


def roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    return roc_curve(*_check(labels, scores), drop_intermediate=False)


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false-positive and false-negative rates cross.

    Along the ROC curve ``fnr - fpr`` never increases; the crossing lies on the first segment
    where it goes from >= 0 to <= 0, and is interpolated linearly there.
    """
    fpr, tpr, _ = roc(labels, scores)
    d = (1 - tpr) - fpr
    k = int(np.flatnonzero(d <= 0)[0])  # d ends at -1 (fpr = 1, fnr = 0), so one exists
    if k == 0 or d[k] == 0:
        return float(fpr[k])
    t = d[k - 1] / (d[k - 1] - d[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float = 0.01) -> float:
    """Best true-positive rate with false-positive rate <= target (threshold set on this data)."""
    fpr, tpr, _ = roc(labels, scores)
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Rates at a fixed, pre-chosen threshold (flag when score > threshold)."""
    labels, scores = _check(labels, scores)
    pred = scores > threshold
    real, fake = labels == 0, labels == 1
    return {
        "accuracy": float((pred == (labels == 1)).mean()),
        "fpr": float(pred[real].mean()),
        "tpr": float(pred[fake].mean()),
    }


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, fn, n: int = 200,  # noqa: ANN001
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric, resampling each class separately."""
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    r_idx, f_idx = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    vals = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(r_idx, len(r_idx)), rng.choice(f_idx, len(f_idx))])
        vals.append(fn(labels[idx], scores[idx]))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> list[float]:
    """Exact binomial interval of a rate k / n."""
    from scipy.stats import beta

    a = (1 - conf) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return [round(lo, 4), round(hi, 4)]
