"""``unmask inspect --html``: one self-contained HTML file a forensic analyst can read and attach
to a case. Every picture is a PNG embedded as a data URI, the style is inline, and nothing is
fetched from anywhere; the full JSON report is inside too, so the file is the whole record.

Evidence pictures:
- images: the picture with its faces boxed, the centred log-magnitude Fourier spectrum
  (generator upsampling leaves periodic peaks), error-level analysis (the difference to a
  JPEG re-save at quality 90, amplified: pasted or regenerated regions re-compress
  differently), and each detector's per-patch heat map;
- videos: the per-frame timeline and the sampled frames with their faces boxed;
- texts: every sentence highlighted by each sentence-level detector's score.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

REPORT_SCHEMA = "unmask.report-html/1"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _array_png(arr: np.ndarray, max_side: int = 640) -> str:
    from PIL import Image

    img = Image.fromarray(arr)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def spectrum(image: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """Centred log-magnitude spectrum of the grey image (mean removed, Hann-windowed so the
    borders do not draw a cross), at most ``max_side`` per side (centre crop)."""
    grey = image.astype(np.float64).mean(axis=2)
    h, w = grey.shape
    y0, x0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    grey = grey[y0:y0 + max_side, x0:x0 + max_side]
    grey = grey - grey.mean()
    win = np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1]))
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey * win))))


def error_levels(image: np.ndarray, quality: int = 90, gain: float = 12.0) -> np.ndarray:
    """Error-level analysis: |image - JPEG(image)| per pixel, amplified, as uint8 RGB."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    again = np.asarray(Image.open(buf).convert("RGB"), dtype=np.int16)
    diff = np.abs(image.astype(np.int16) - again).astype(np.float64) * gain
    return np.clip(diff, 0, 255).astype(np.uint8)


def _boxed(image: np.ndarray, faces: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(image)
    for f in faces:
        x0, y0, x1, y1 = f["box"]
        color = {"synthetic": "red", "uncertain": "orange"}.get(f.get("verdict"), "lime")
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2, color=color))
        ax.text(x0, y0 - 3, f"{f.get('verdict', '')} {f['score']:+.2f}", color=color,
                fontsize=8, va="bottom")
    ax.set_axis_off()
    return _png(fig)


def _image_figures(image: np.ndarray, report: dict[str, Any]) -> list[tuple[str, str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces = [f for r in report["detectors"].values() for f in (r.get("faces") or [])]
    out = [("picture", "The picture" + (" and the faces found in it" if faces else ""),
            _boxed(image, faces) if faces else _array_png(image))]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(spectrum(image), cmap="magma")
    ax.set_title("log |FFT| (centred)", fontsize=9)
    ax.set_axis_off()
    out.append(("spectrum", "Fourier spectrum: regular bright dots away from the centre are "
                "the periodic traces of upsampling layers", _png(fig)))
    out.append(("ela", "Error-level analysis (JPEG q90 re-save, x12): regions that re-compress "
                "unlike their surroundings were often edited or generated apart",
                _array_png(error_levels(image))))
    if any("tiles" in r for r in report["detectors"].values()):
        import tempfile

        from detect.app.inspect import heatmap_png

        with tempfile.TemporaryDirectory() as tmp:
            p = heatmap_png(image, report, Path(tmp) / "heat.png")
            data = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
        out.append(("heatmap", "Where each detector reacts: per-patch scores, red above its "
                    "threshold", data))
    return out


def _video_figures(item: Any, report: dict[str, Any]) -> list[tuple[str, str, str]]:
    import tempfile

    from detect.app.inspect import timeline_png

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        p = timeline_png(report, Path(tmp) / "timeline.png")
        out.append(("timeline", "Per-frame scores over time", "data:image/png;base64,"
                    + base64.b64encode(p.read_bytes()).decode()))
    video = getattr(item, "content", None)
    frames = getattr(video, "frames", None)
    if frames:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        timeline = next((r["frames"] for r in report["detectors"].values()
                         if r.get("frames")), None)
        n = min(len(frames), 8)
        pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
        fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.2), squeeze=False)
        for ax, i in zip(axes[0], pick, strict=True):
            ax.imshow(frames[i])
            if timeline is not None and i < len(timeline):
                e = timeline[i]
                for f in e.get("faces") or []:
                    x0, y0, x1, y1 = f["box"]
                    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                           color="red" if e.get("verdict") == "synthetic"
                                           else "lime"))
                ax.set_title(f"t={e['time']:.2f}s", fontsize=7)
            ax.set_axis_off()
        out.append(("frames", "Sampled frames (faces boxed; red = frame flagged)", _png(fig)))
    return out


def _sentences_html(text: str, name: str, r: dict[str, Any]) -> str:
    sents = r.get("sentences") or []
    if not sents:
        return ""
    thr = r.get("threshold")
    parts, pos = [], 0
    for s in sents:
        start, end = int(s["start"]), int(s["end"])
        parts.append(html.escape(text[pos:start]))
        score = s.get("score")
        if score is None or thr is None:
            color = "#eee"
        else:
            # red above the threshold, fading to white below it
            a = float(np.clip(0.15 + 0.5 * np.tanh(score - thr), 0.05, 0.65))
            color = f"rgba(220,40,40,{a:.2f})" if score > thr else f"rgba(40,120,220,{a / 3:.2f})"
        title = "no score" if score is None else f"{score:+.3f}"
        parts.append(f'<span class="sent" style="background:{color}" title="{title}">'
                     f"{html.escape(text[start:end])}</span>")
        pos = end
    parts.append(html.escape(text[pos:]))
    return (f'<h3>{html.escape(name)}: sentences</h3><p class="small">red: above the '
            f'threshold ({thr:+.3f}); hover for the score</p><div class="text">'
            + "".join(parts) + "</div>")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;
padding:.3em .6em;font-size:.9em;text-align:left}.verdict{font-weight:bold;padding:.2em .6em;
border-radius:4px}.synthetic{background:#f8d0d0}.real{background:#d4f0d4}.uncertain{background:
#fbecc4}.error{background:#ddd}figure{display:inline-block;margin:.5em;vertical-align:top}
figcaption{font-size:.8em;max-width:480px}img{max-width:100%}.small{font-size:.8em;color:#555}
.text{white-space:pre-wrap;border:1px solid #ddd;padding:.8em;line-height:1.6}pre{font-size:.75em;
overflow:auto;background:#f6f6f6;padding:.6em}"""


def html_report(report: dict[str, Any], item: Any, path: str | Path) -> Path:
    """Write the report of ``inspect_item`` (and the item it was made from) as HTML."""
    from detect.core.types import _finite

    v = report.get("verdict", "uncertain")
    rows = []
    for name, r in report["detectors"].items():
        if not r.get("applies"):
            rows.append(f"<tr><td>{html.escape(name)}</td><td colspan=5 class=small>does not "
                        f"apply ({html.escape(str(r.get('reason')))})</td></tr>")
            continue
        score = "–" if r.get("score") is None else f"{r['score']:+.4f}"
        thr = "–" if r.get("threshold") is None else f"{r['threshold']:+.4f}"
        cal = r.get("calibration") or {}
        extra = "; ".join(filter(None, [
            r.get("reason"),
            f"{cal.get('rule') or 'rule'} calibrated on {cal['n']} reals, supports FPR "
            f">= {cal['supports_fpr']:.2g}" if "n" in cal else None]))
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{score}</td><td>{thr}</td>"
                    f"<td>{r.get('target_fpr')}</td><td><span class='verdict {r['verdict']}'>"
                    f"{r['verdict']}</span></td><td class=small>{html.escape(str(extra))}</td>"
                    "</tr>")
    wm_rows = [f"<tr><td>{html.escape(str(w.get('scheme', w.get('kind', ''))))}</td>"
               f"<td>{html.escape(str(w.get('payload', w.get('key', ''))))}</td>"
               f"<td>{html.escape(str(w.get('status')))}</td>"
               f"<td>{w.get('p_value', w.get('statistic', {}).get('p_value', ''))}</td></tr>"
               for w in report.get("watermarks", [])]
    figures: list[tuple[str, str, str]] = []
    if item.modality == "image":
        figures = _image_figures(item.content, report)
    elif item.modality == "video":
        figures = _video_figures(item, report)
    text_html = ""
    if item.modality == "text" and report.get("text"):
        norm = report["text"]["normalized"]
        text_html = "".join(_sentences_html(norm, n, r) for n, r in report["detectors"].items()
                            if r.get("applies"))
    prov = report.get("provenance", {})
    body = [
        f"<h1>unmask report: {html.escape(Path(report['path']).name)}</h1>",
        f"<p>Verdict: <span class='verdict {v}'>{v}</span>"
        f"{' by ' + html.escape(report['decided_by']) if report.get('decided_by') else ''}"
        f"{' (' + html.escape(report['reason']) + ')' if report.get('reason') else ''}"
        f"{': ' + html.escape(report['error']) if report.get('error') else ''}"
        f" &middot; {report['modality']} ({html.escape(str(report.get('format')))}, "
        f"{report.get('size_bytes')} bytes)</p>",
        f"<p class=small>sha256 {report.get('sha256')} &middot; report schema "
        f"{report.get('schema')}</p>",
        "<section id='detectors'><h2>Detectors</h2><table><tr><th>detector</th><th>score</th>"
        "<th>threshold</th><th>target FPR</th><th>verdict</th><th>note</th></tr>"
        + "".join(rows) + "</table></section>",
        "<section id='watermarks'><h2>Watermarks</h2>"
        + ("<table><tr><th>scheme</th><th>payload / key</th><th>status</th><th>p-value</th>"
           "</tr>" + "".join(wm_rows) + "</table>" if wm_rows else "<p>none checked</p>")
        + "</section>",
        "<section id='provenance'><h2>Provenance</h2><pre>"
        + html.escape(json.dumps(_finite(prov), indent=1, ensure_ascii=False)[:20000])
        + "</pre></section>",
    ]
    if figures:
        body.append("<section id='evidence'><h2>Evidence</h2>" + "".join(
            f"<figure id='fig-{key}'><img alt='{key}' src='{src}'><figcaption>"
            f"{html.escape(cap)}</figcaption></figure>" for key, cap, src in figures)
            + "</section>")
    if text_html:
        body.append(f"<section id='text'><h2>Text</h2>{text_html}</section>")
    body.append("<section id='json'><h2>Full report</h2><details><summary>JSON</summary><pre>"
                + html.escape(json.dumps(_finite(report), indent=1, ensure_ascii=False))
                + "</pre></details></section>")
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=generator "
           f"content='{REPORT_SCHEMA}'><title>unmask: {html.escape(Path(report['path']).name)}"
           f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    out = Path(path)
    out.write_text(doc, encoding="utf-8")
    return out
