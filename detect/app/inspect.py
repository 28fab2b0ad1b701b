"""Everything unmask can say about one file, as one JSON-able dict.

For images each detector also returns its per-patch scores laid out on the tile grid: where in
the picture the detector reacts (a heat map), not just whether.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detect.app.scan import _provenance_hints
from detect.app.verdict import primary
from detect.io.media import Limits, load

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


HEATMAP_TILES = 4096


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


def inspect_file(path: str | Path, detectors: list[Any], *, limits: Limits = Limits(),
                 target_fpr: float | None = None, **kw: Any) -> dict[str, Any]:
    return inspect_item(load(path, limits), detectors, target_fpr=target_fpr, **kw)


def inspect_item(item: Any, detectors: list[Any], *, target_fpr: float | None = None,
                 wm_target_fpr: float | None = None, payloads: list[Any] | None = None,
                 text_keys: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The report for an item already loaded (so a caller that also draws it decodes once).

    Watermarks: images against the public payload catalog plus any ``payloads`` given, text
    against ``text_keys``; full results with decoded bits and p-values."""
    report: dict[str, Any] = {
        "schema": INSPECT_SCHEMA, "path": item.path, "sha256": item.sha256,
        "modality": item.modality, "format": item.format, "size_bytes": item.size_bytes,
        "meta": item.meta, "provenance": _provenance_hints(item), "detectors": {},
        "watermarks": [],
    }
    if item.modality == "image" and Path(item.path).is_file():
        from detect.evidence.metadata import read_metadata

        # generator tags the file carries about itself (A1111, ComfyUI, EXIF, XMP), raw values
        report["provenance"]["metadata"] = read_metadata(item.path)
    if Path(item.path).is_file() and item.modality == "image":
        from detect.evidence.c2pa import read_c2pa

        report["provenance"]["c2pa"] = read_c2pa(item.path)
    if item.modality == "text":
        from detect.io.normalize import language_check, normalize

        norm = normalize(item.content)
        # what the text detectors saw: sentence spans below index the normalised text
        report["text"] = {"normalization": norm.to_dict(), "normalized": norm.text,
                          "language": language_check(norm.text)}
    from detect.evidence.watermark import DEFAULT_TARGET_FPR
    from detect.evidence.watermark.checks import check_item
    from detect.evidence.watermark.image import CATALOG

    if item.modality == "image" and payloads:
        payloads = list(CATALOG.values()) + list(payloads)
    report["watermarks"] = [r.to_dict() for r in check_item(
        item, target_fpr=wm_target_fpr or DEFAULT_TARGET_FPR, payloads=payloads,
        text_keys=text_keys)]
    for det in detectors:
        if not det.applies_to(item):
            report["detectors"][det.name] = {"applies": False,
                                             "reason": f"{det.tags.modality} detector"}
            continue
        score = float(det.score([item])[0])  # the same number scan reports
        res = {"applies": True, **det.decide(item, score, target_fpr),
               "trained_on": det.trained_on_}
        if item.modality == "image" and det.tags.modality == "image":
            tile_scores, pos = _all_tiles(det, item)
            res["tiles"] = tile_grid(tile_scores, pos, det.patch)
        elif hasattr(det, "sentence_scores"):
            res["sentences"] = det.sentence_scores(item)
        report["detectors"][det.name] = res
    # the rule scan uses, over the detectors that apply
    report["decided_by"], res = primary(
        {n: r for n, r in report["detectors"].items() if r.get("applies")})
    report["verdict"] = res["verdict"] if res else "uncertain"
    report["calibration"] = res.get("calibration") if res else None
    report["reason"] = (res.get("reason") if res else
                        f"no loaded detector handles {item.modality} input")
    return report


def heatmap_png(image: np.ndarray, report: dict[str, Any], path: str | Path) -> Path:
    """The image beside each detector's per-tile scores (red = above its threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    dets = [(n, r) for n, r in report["detectors"].items() if r.get("applies") and "tiles" in r]
    fig, axes = plt.subplots(1, 1 + len(dets), figsize=(4 * (1 + len(dets)), 4.2), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title(Path(report["path"]).name, fontsize=9)
    h, w = image.shape[:2]
    for ax, (name, r) in zip(axes[1:], dets, strict=True):
        t = r["tiles"]
        grid = np.array(t["scores"], dtype=float)
        over = np.full((h, w), np.nan)
        for i, y in enumerate(t["rows"]):
            for j, x in enumerate(t["cols"]):
                over[y:y + t["patch"], x:x + t["patch"]] = grid[i, j]
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        thr = r["threshold"]
        norm = TwoSlopeNorm(vcenter=thr, vmin=min(lo, thr - 1e-6), vmax=max(hi, thr + 1e-6))
        ax.imshow(image, alpha=0.45)
        im = ax.imshow(over, cmap="coolwarm", norm=norm, alpha=0.7)
        ax.set_title(f"{name}: {r['verdict']} ({r['score']:+.2f}, thr {thr:+.2f})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def timeline_png(report: dict[str, Any], path: str | Path) -> Path:
    """Per-frame face scores of a video against each face detector's thresholds: which
    stretch of the video looks forged. Frames without a face are marked at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = [(n, r) for n, r in report["detectors"].items() if r.get("frames") is not None]
    fig, axes = plt.subplots(len(dets) or 1, 1, figsize=(9, 2.8 * max(1, len(dets))),
                             squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], dets, strict=False):
        t = np.array([e["time"] for e in r["frames"]], dtype=float)
        sc = np.array([np.nan if e["score"] is None else e["score"] for e in r["frames"]])
        ok = np.isfinite(sc)
        ax.plot(t[ok], sc[ok], "o-", color="tab:blue", label="most suspicious face in frame")
        lo = np.nanmin(sc) if ok.any() else 0.0
        if (~ok).any():
            ax.plot(t[~ok], np.full((~ok).sum(), lo), "x", color="grey", label="no face")
        frame_thr = r.get("frame_threshold", r["threshold"])
        ax.axhline(frame_thr, color="tab:red", ls="--",
                   label=f"face threshold (FPR {r['target_fpr']:g}): red = frame flagged")
        for ti, e in zip(t, r["frames"], strict=True):
            if e.get("verdict") == "synthetic":
                ax.axvspan(ti - 0.5 * _step(t), ti + 0.5 * _step(t), color="tab:red", alpha=0.12)
        if r.get("stretch") and r["score"] is not None:
            idx = [e["index"] for e in r["frames"]]
            t0, t1 = (t[idx.index(i)] for i in r["stretch"])
            rule = (r.get("calibration") or {}).get("rule", "")[:5]
            ax.plot([t0, t1], [r["score"], r["score"]], color="tab:purple", lw=3,
                    label=f"most suspicious stretch: mean {r['score']:+.2f} vs video threshold "
                          f"{r['threshold']:+.2f} ({rule})")
        score = "none" if r["score"] is None else f"{r['score']:+.2f}"
        ax.set_title(f"{name}: {r['verdict']} (video score {score}, {r.get('aggregate')})",
                     fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("score")
        ax.legend(fontsize=7, loc="best")
    if not dets:
        axes[0, 0].text(0.5, 0.5, "no face detector ran on this video", ha="center")
        axes[0, 0].set_axis_off()
    fig.suptitle(Path(report["path"]).name, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _step(t: np.ndarray) -> float:
    return float(np.median(np.diff(t))) if len(t) > 1 else 1.0
