"""Everything unmask can say about one file, as one JSON-able dict.

For images each detector also returns its per-patch scores laid out on the tile grid: where in
the picture the detector reacts (a heat map), not just whether.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .media import Limits, load
from .scan import _provenance_hints

INSPECT_SCHEMA = "unmask.inspect/1"


def tile_grid(scores: np.ndarray, pos: list[tuple[int, int]], patch: int) -> dict[str, Any]:
    ys = sorted({y for y, _ in pos})
    xs = sorted({x for _, x in pos})
    grid = np.full((len(ys), len(xs)), np.nan)
    for s, (y, x) in zip(scores, pos, strict=True):
        grid[ys.index(y), xs.index(x)] = s
    return {"patch": patch, "rows": ys, "cols": xs,
            "scores": [[None if np.isnan(v) else round(float(v), 4) for v in row]
                       for row in grid]}


def inspect_file(path: str | Path, detectors: list[Any], *, limits: Limits = Limits(),
                 target_fpr: float | None = None) -> dict[str, Any]:
    item = load(path, limits)
    report: dict[str, Any] = {
        "schema": INSPECT_SCHEMA, "path": item.path, "sha256": item.sha256,
        "modality": item.modality, "format": item.format, "size_bytes": item.size_bytes,
        "meta": item.meta, "provenance": _provenance_hints(item), "detectors": {},
        "watermarks": [],
    }
    verdict = None
    for det in detectors:
        if det.tags.modality != item.modality:
            report["detectors"][det.name] = {"applies": False,
                                             "reason": f"{det.tags.modality} detector"}
            continue
        cal = det.calibration_for(target_fpr)
        tile_scores, pos = det.score_tiles(item)
        score = float(tile_scores.mean())
        res = {"applies": True, "score": score, "threshold": cal.threshold,
               "uncertain_above": cal.lower, "target_fpr": cal.target_fpr,
               "verdict": cal.verdict(score), "trained_on": det.trained_on_,
               "tiles": tile_grid(tile_scores, pos, det.patch)}
        report["detectors"][det.name] = res
        verdict = verdict or res
    report["verdict"] = verdict["verdict"] if verdict else "uncertain"
    report["decided_by"] = next((n for n, r in report["detectors"].items() if r.get("applies")),
                                None)
    return report
