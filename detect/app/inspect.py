"""Everything unmask can say about one file, as one JSON-able dict.

For images each detector also returns its per-patch scores laid out on the tile grid: where in
the picture the detector reacts (a heat map), not just whether.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detect.app.collect import ScanOptions, collect_evidence
from detect.io.media import load

# 2: the top level carries the scan record's fields (score, threshold, target_fpr, error), and
# an input no loaded detector handles is an error, as in scan (it was "uncertain")
INSPECT_SCHEMA = "unmask.inspect/2"


def inspect_file(path: str | Path, detectors: list[Any],
                 options: ScanOptions = ScanOptions()) -> dict[str, Any]:
    item = load(path, options.limits)
    if item.modality == "video":
        from detect.io.video import decode_item

        item = decode_item(item, options.limits, options.sampling)
    return inspect_item(item, detectors, options)


def inspect_item(item: Any, detectors: list[Any],
                 options: ScanOptions = ScanOptions()) -> dict[str, Any]:
    """The report for an item already loaded (so a caller that also draws it decodes once):
    the scan record's evidence in full (:func:`collect_evidence` with ``full=True``: same
    verdict, deciding detector, score and error as scan) and what the item is.

    Watermarks: images against the public payload catalog plus ``options.payloads``, text
    against ``options.text_keys``; full results with decoded bits and p-values."""
    f = collect_evidence(item, detectors, options, full=True).to_dict()
    del f["schema"], f["elapsed_ms"]
    report: dict[str, Any] = {
        "schema": INSPECT_SCHEMA, "path": item.path, "sha256": item.sha256,
        "modality": item.modality, "format": item.format, "size_bytes": item.size_bytes,
        "meta": item.meta, **f}
    if item.modality == "text":
        from detect.io.normalize import language_check, normalize

        norm = normalize(item.content)
        # what the text detectors saw: sentence spans below index the normalised text
        report["text"] = {"normalization": norm.to_dict(), "normalized": norm.text,
                          "language": language_check(norm.text)}
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
