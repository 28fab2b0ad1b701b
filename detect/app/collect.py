"""The evidence about one loaded item, gathered once for ``scan`` and ``inspect`` alike.

:func:`collect_evidence` runs the detectors (the verdict rule of :mod:`detect.app.verdict`),
the watermark checks and the provenance readers (file tags, C2PA). Its compact form is the scan
record; its full form (``full=True``) is what ``inspect`` reports: raw metadata, the whole C2PA
report, watermark bits and p-values, per-tile scores, per-sentence scores. Both forms carry the
same verdict, deciding detector, score and error, so scan and inspect never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.app.verdict import decide_by, judge
from detect.core.types import Finding
from detect.io.media import Limits


@dataclass(frozen=True)
class ScanOptions:
    """How a scan (or an inspect) treats each input. Frozen and picklable: it goes to worker
    processes and Ray actors as it is.

    ``text_keys``: text watermark key files (or keys already loaded) text is checked against;
    ``payloads``: image watermark payloads checked besides the public catalog. ``sampling``
    picks a video's frames (a :class:`detect.io.video.FrameSampling`; None = the default).
    ``timeout`` bounds each input's seconds. ``workers > 1`` scans in that many processes
    (``engine="local"``) or Ray actors (``engine="ray"``, on ``ray_address`` or a local
    instance), each loading its detectors once through ``load_detectors_fn`` (a picklable
    callable, e.g. ``functools.partial(load_detectors, names, dirs)``)."""

    limits: Limits = Limits()
    target_fpr: float | None = None
    watermarks: bool = True
    wm_target_fpr: float | None = None
    text_keys: tuple[Any, ...] = ()
    payloads: tuple[Any, ...] = ()
    sampling: Any = None
    timeout: float | None = None
    debug: bool = False
    include_hidden: bool = False
    progress: bool = True
    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None
    load_detectors_fn: Any = None

    def __post_init__(self) -> None:
        # lists given by a caller become tuples: the options stay immutable and hashable
        object.__setattr__(self, "text_keys", tuple(self.text_keys))
        object.__setattr__(self, "payloads", tuple(self.payloads))


def provenance_hints(item: Any) -> dict[str, Any]:
    """Metadata signals cheap enough for every scan: the generator-related keys the decoder
    saw in the file's info."""
    keys = item.meta.get("info_keys") or []
    hints: dict[str, Any] = {}
    for k in ("parameters", "prompt", "workflow", "Software", "c2pa", "XML:com.adobe.xmp"):
        if k in keys:
            hints.setdefault("metadata_keys", []).append(k)
    return hints


def c2pa_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The scan record's part of a C2PA report (the full form has all of it)."""
    out = {"status": report["status"]}
    if report.get("present"):
        out.update(claim_generator=report.get("claim_generator"),
                   ai_generated=report.get("ai_generated"),
                   digital_source_type=[d["name"] for d in report.get("digital_source_type")
                                        or []])
    if report.get("error"):
        out["error"] = report["error"]
    return out


def _provenance(item: Any, full: bool) -> dict[str, Any]:
    out = provenance_hints(item)
    if item.modality != "image" or not Path(item.path).is_file():
        return out
    from detect.evidence.c2pa import read_c2pa
    from detect.evidence.metadata import read_metadata

    md = read_metadata(item.path)  # header parsing only; the pixels are not decoded again
    if full:  # generator tags the file carries about itself (A1111, ComfyUI, EXIF, XMP), raw
        out["metadata"] = md
    elif md.get("tools") or md.get("ai_source_type"):
        out["generator_tags"] = {
            "tools": md["tools"], "ai_source_type": md["ai_source_type"],
            "sources": [s["source"] for s in md["signals"] if s.get("tool")
                        or s["source"] == "xmp:DigitalSourceType"]}
    c2pa = read_c2pa(item.path)
    out["c2pa"] = c2pa if full else c2pa_summary(c2pa)
    return out


def _watermarks(item: Any, options: ScanOptions, full: bool) -> list[dict[str, Any]]:
    from detect.evidence.watermark import DEFAULT_TARGET_FPR
    from detect.evidence.watermark.checks import check_item, compact
    from detect.evidence.watermark.image_payloads import CATALOG

    payloads = None  # None: the public catalog
    if item.modality == "image" and options.payloads:
        payloads = list(CATALOG.values()) + list(options.payloads)
    results = check_item(item, target_fpr=options.wm_target_fpr or DEFAULT_TARGET_FPR,
                         payloads=payloads, text_keys=options.text_keys)
    return [r.to_dict() for r in results] if full else compact(results)


HEATMAP_TILES = 4096


def tile_grid(scores: np.ndarray, pos: list[tuple[int, int]], patch: int) -> dict[str, Any]:
    """Per-patch scores laid out on the tile grid (rows and columns: the tiles' corners)."""
    ys = sorted({y for y, _ in pos})
    xs = sorted({x for _, x in pos})
    grid = np.full((len(ys), len(xs)), np.nan)
    for s, (y, x) in zip(scores, pos, strict=True):
        grid[ys.index(y), xs.index(x)] = s
    return {"patch": patch, "rows": ys, "cols": xs,
            "scores": [[None if np.isnan(v) else round(float(v), 4) for v in row]
                       for row in grid]}


def _all_tiles(det: Any, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-patch scores over the whole image for the heat map (scoring itself thins the
    tiles to ``max_tiles`` for speed; the map should not have holes)."""
    saved = det.max_tiles
    try:
        det.max_tiles = max(saved, HEATMAP_TILES)
    except AttributeError:  # e.g. fusion, whose tiling follows its members
        return det.score_tiles(item)
    try:
        return det.score_tiles(item)
    finally:
        det.max_tiles = saved


def _full_detectors(item: Any, detectors: list[Any], usable: list[Any],
                    results: dict[str, dict]) -> dict[str, dict]:
    """Every loaded detector: the applicable ones' results with where they react (per-tile
    scores of an image, per-sentence scores of a text), the others with why they did not run."""
    out: dict[str, dict] = {}
    ran = {id(d) for d in usable}
    for det, (key, res) in zip(usable, results.items(), strict=True):
        res = {"applies": True, **res, "trained_on": det.trained_on_}
        if item.modality == "image" and det.tags.modality == "image":
            tile_scores, pos = _all_tiles(det, item)
            res["tiles"] = tile_grid(tile_scores, pos, det.patch)
            if callable(getattr(det, "explain", None)):  # a fusion: what each member said
                got = [results.get(m.name, {}).get("score") for m in det.members()]
                got = [float(m.score([item])[0]) if v is None else v  # not loaded on its own
                       for m, v in zip(det.members(), got, strict=True)]
                res["members"] = det.explain(np.array(got, dtype=float))
        elif hasattr(det, "sentence_scores"):
            res["sentences"] = det.sentence_scores(item)
        out[key] = res
    for det in detectors:
        if id(det) not in ran and det.name not in out:
            out[det.name] = {"applies": False, "reason": f"{det.tags.modality} detector"}
    return out


def collect_evidence(item: Any, detectors: list[Any], options: ScanOptions = ScanOptions(),
                     *, full: bool = False) -> Finding:
    """One Finding for a loaded item: detector verdicts (the first applicable detector that
    can decide stands), watermark checks (images against the public payload catalog plus
    ``options.payloads``; text only against ``options.text_keys``) and provenance.

    With no applicable detector the Finding is an error naming the file and the detectors
    loaded. ``full``: the inspect form of the same evidence (see the module docstring); its
    ``detectors`` also list the loaded detectors that do not apply, with ``applies: False``.
    Watermarks are checked in the full form whatever ``options.watermarks`` says."""
    f = Finding(path=item.path, sha256=item.sha256, modality=item.modality)
    f.provenance = _provenance(item, full)
    if options.watermarks or full:
        f.watermarks = _watermarks(item, options, full)
    usable = [d for d in detectors if d.applies_to(item)]
    if not usable:
        f.error = (f"{item.path}: no loaded detector handles {item.modality} input (loaded: "
                   f"{', '.join(sorted({d.name for d in detectors}))})")
        if full:
            f.detectors = _full_detectors(item, detectors, [], {})
        return f
    f.detectors = judge(item, usable, options.target_fpr)
    decide_by(f)
    if f.verdict == "error":
        f.error = f"{item.path}: {f.decided_by} returned a non-finite score"
    if full:
        f.detectors = _full_detectors(item, detectors, usable, f.detectors)
    return f
