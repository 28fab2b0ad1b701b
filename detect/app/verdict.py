"""Judging one item with loaded detectors: each applicable detector's result, members scored
before the fusions that combine them (each model scores an item once), and the rule that picks
the result whose verdict stands."""

from __future__ import annotations

from typing import Any

from detect.core.types import Finding


def _members(det: Any) -> list[Any]:
    """The member detectors of a fusion (``members()`` and ``combine``), else []."""
    if callable(getattr(det, "members", None)) and callable(getattr(det, "combine", None)):
        return det.members()
    return []


def _score_one(det: Any, item: Any, memo: dict[int, float]) -> float:
    members = _members(det)
    if members and all(id(m) in memo for m in members):
        import numpy as np

        return float(det.combine(np.array([[memo[id(m)] for m in members]]))[0])
    memo[id(det)] = float(det.score([item])[0])
    return memo[id(det)]


def judge(item: Any, usable: list[Any], target_fpr: float | None = None) -> dict[str, dict]:
    """Every usable detector's result record for ``item`` (``DetectorResult.to_dict``), keyed
    by name (``name@folder`` when two loaded models share a name)."""
    memo: dict[int, float] = {}
    # members before the fusions that combine them, so each model scores the item once
    order = sorted(usable, key=lambda d: bool(_members(d)))
    scores = {id(d): _score_one(d, item, memo) for d in order}
    out: dict[str, dict] = {}
    for det in usable:
        key = det.name if det.name not in out else f"{det.name}@{det.model_dir_}"
        out[key] = det.decide(item, scores[id(det)], target_fpr).to_dict()
    return out


def primary(results: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Any] | None]:
    """(name, result) of the detector whose verdict stands: the first that can decide. A face
    detector that found no face, or any detector whose calibration cannot support the target
    FPR, steps aside (``decides: False``) for the next; when nobody else can decide, the first
    one's "uncertain" (and its reason) stands, the first one that gave a score (a detector that
    judged the input and could not hold the target, say for a picture smaller than its tile,
    says more than a face detector that found no face): never an error, never "real".
    (None, None) when there is no result at all."""
    items = list(results.items())
    fallback = next(((n, r) for n, r in items if r.get("score") is not None),
                    items[0] if items else (None, None))
    return next(((n, r) for n, r in items if r.get("decides", True)), fallback)


def decide_by(f: Finding) -> None:
    """Set the Finding's verdict from its ``detectors`` by the rule of :func:`primary`."""
    f.decided_by, res = primary(f.detectors)
    f.verdict = res["verdict"]
    f.score, f.threshold, f.target_fpr = res["score"], res["threshold"], res["target_fpr"]
    f.calibration, f.reason = res.get("calibration"), res.get("reason")


