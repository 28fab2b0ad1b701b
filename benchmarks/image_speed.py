"""Speed target: the default image stack takes <= 0.2 s for a 1024x768 JPEG on 2 cores.

    python benchmarks/image_speed.py [--detector NAME ...] [--with-faces] [--threads 2]
                                     [--repeat 5] [--photos 4] [--sizes 512x512,1024x768,...]
                                     [--out benchmarks/results/image_speed]

Inputs are made here, seeded: crops of scikit-image's photos (astronaut, coffee, chelsea,
rocket, hubble_deep_field) resized to each size and saved as JPEG quality 90 in a temporary
folder (``--photos`` files per size, one for sizes above 2.1 MP). Detectors load as a scan
loads them (``load_detectors``: the defaults, or the ``--detector`` names); only image
detectors are timed, face detectors too with ``--with-faces``. After one warm-up scan (its
time and the load time are reported apart), every file is timed ``--repeat`` times per stage:
decode (``detect.io.media.load``), each detector's ``score([item])`` alone (a fusion's
includes its members; a scan scores each member once), ``scan_item`` without watermark checks,
and end to end as a user sees it: decode + ``scan_item``, without and with watermark checks.
The headline is the end-to-end median at 1024x768 without watermark checks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import write_results

OUT = Path(__file__).parent / "results" / "image_speed"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
SIZES = "512x512,1024x768,1920x1080,4000x3000"
TARGET_SIZE, TARGET_S = "1024x768", 0.2
BIG = 2_100_000  # pixels above which a size gets one file


def make_inputs(folder: Path, sizes: list[str], photos: int, seed: int) -> dict[str, list[Path]]:
    """``size -> JPEG paths`` (quality 90): seeded crops of real photos at the size's aspect."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        out[size] = []
        for i in range(photos if w * h <= BIG else 1):
            name = PHOTOS[i % len(PHOTOS)]
            img = getattr(data, name)()
            ih, iw = img.shape[:2]
            cw = min(iw, ih * w / h) * rng.uniform(0.6, 1.0)  # the largest crop of w:h, shrunk
            ch = cw * h / w
            x, y = rng.uniform(0, iw - cw), rng.uniform(0, ih - ch)
            crop = Image.fromarray(img).crop((round(x), round(y), round(x + cw), round(y + ch)))
            path = folder / f"{size}_{i}_{name}.jpg"
            crop.convert("RGB").resize((w, h), Image.Resampling.LANCZOS).save(path, quality=90)
            out[size].append(path)
    return out


def stats(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 5),
            "p90_s": round(float(np.percentile(times, 90)), 5), "n": len(times)}


def time_file(path: Path, dets: list[Any], repeat: int) -> dict[str, list[float]]:
    """Seconds per stage, ``repeat`` times each, for one file."""
    from detect.app.scan import ScanOptions, scan_item
    from detect.image.foundation import forget_shared
    from detect.io.media import load

    no_wm, wm = ScanOptions(watermarks=False, progress=False), ScanOptions(progress=False)
    t: dict[str, list[float]] = {}

    def add(stage: str, s: float) -> None:
        t.setdefault(stage, []).append(s)

    # before every timing the encoders forget what they computed for earlier timings of the
    # same file (a scan scores each file once: only its members share their first blocks)
    for _ in range(repeat):
        forget_shared()
        t0 = time.perf_counter()
        item = load(path)
        t1 = time.perf_counter()
        scan_item(item, dets, no_wm)
        t2 = time.perf_counter()
        add("decode", t1 - t0)
        add("scan_item", t2 - t1)
        add("end_to_end", t2 - t0)
        forget_shared()
        t0 = time.perf_counter()
        scan_item(load(path), dets, wm)
        add("end_to_end_watermarks", time.perf_counter() - t0)
        for det in dets:
            forget_shared()
            t0 = time.perf_counter()
            det.score([item])
            add(f"score:{det.name}", time.perf_counter() - t0)
    return t


def figure(rows: list[dict[str, Any]], stages: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    med = {(r["size"], r["stage"]): r["median_s"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sizes) * len(stages) / 4), 4.2))
    width = 0.8 / len(stages)
    for j, st in enumerate(stages):
        ax.bar([i + j * width for i in range(len(sizes))],
               [med.get((s, st), 0.0) for s in sizes], width, label=st.removeprefix("score:"))
    ax.axhline(TARGET_S, color="red", ls="--", lw=1, label=f"target {TARGET_S} s")
    ax.set_xticks([i + width * (len(stages) - 1) / 2 for i in range(len(sizes))], sizes)
    ax.set_ylabel("median seconds per file")
    ax.set_title("image stack time per stage (JPEG q90)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", action="append", default=[],
                    help="a shipped detector name (repeatable); default: the scan defaults")
    ap.add_argument("--with-faces", action="store_true", help="time face detectors as well")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--photos", type=int, default=4, help="files per size (one above 2.1 MP)")
    ap.add_argument("--sizes", default=SIZES, help=f"WxH,WxH,... (default {SIZES})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from detect.app.scan import ScanOptions, scan_item
    from detect.core.models import default_detector_names, load_detectors
    from detect.io.media import load

    torch.set_num_threads(a.threads)
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    names = a.detector or default_detector_names()
    t0 = time.perf_counter()
    loaded = load_detectors(names)
    load_s = time.perf_counter() - t0
    kinds = ("image", "face") if a.with_faces else ("image",)
    dets = [d for d in loaded if str(getattr(d.tags.modality, "value", d.tags.modality)) in kinds]
    left_out = [d.name for d in loaded if d not in dets]
    if not dets:
        print(f"image_speed: no {' or '.join(kinds)} detector among {names}; name some with "
              "--detector", file=sys.stderr)
        return 2
    print(f"timing {[d.name for d in dets]} (left out: {left_out or 'none'}); "
          f"{a.threads} torch threads", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_inputs(Path(tmp), sizes, a.photos, a.seed)
        first = files[TARGET_SIZE if TARGET_SIZE in files else sizes[0]][0]
        t0 = time.perf_counter()
        scan_item(load(first), dets, ScanOptions(progress=False))  # warm-up: first-call costs
        for det in dets:
            det.score([load(first)])
        warm_s = time.perf_counter() - t0
        load_avg = [round(v, 2) for v in os.getloadavg()]  # another job on the cores shows here
        per_size: dict[str, dict[str, list[float]]] = {}
        bar = tqdm(total=sum(map(len, files.values())), desc="image speed", unit="file",
                   file=sys.stderr)
        for size, paths in files.items():
            for p in paths:
                for stage, ts in time_file(p, dets, a.repeat).items():
                    per_size.setdefault(size, {}).setdefault(stage, []).extend(ts)
                bar.update(1)
        bar.close()
    stages = ["decode", *[f"score:{d.name}" for d in dets], "scan_item", "end_to_end",
              "end_to_end_watermarks"]
    rows = [{"size": s, "stage": st, "files": len(files[s]), **stats(per_size[s][st])}
            for s in files for st in stages]
    head = next((r for r in rows if r["size"] == TARGET_SIZE and r["stage"] == "end_to_end"),
                None)
    status = "not measured" if head is None else \
        ("met" if head["median_s"] <= TARGET_S else "missed")
    data = {"schema": "unmask.bench.image_speed/1",
            "target": {"size": TARGET_SIZE, "format": "JPEG q90", "seconds": TARGET_S,
                       "cores": 2, "stage": "end_to_end", "status": status,
                       "median_s": head and head["median_s"]},
            "detectors": [d.name for d in dets], "left_out": left_out,
            "requested": names, "torch_threads": torch.get_num_threads(),
            "load_detectors_s": round(load_s, 3), "warmup_s": round(warm_s, 3),
            "load_average_1_5_15min": load_avg, "repeat": a.repeat, "seed": a.seed,
            "rows": rows}
    verdict = (f"**{status}**: median {head['median_s']:.3f} s (p90 {head['p90_s']:.3f} s)"
               if head else f"**{status}** ({TARGET_SIZE} not among --sizes)")
    busy = ("above the core count: other work shared the cores"
            if load_avg[0] > (os.cpu_count() or 1) else "at most the core count")
    lines = ["# Image stack speed", "",
             f"Target: the default image stack takes <= {TARGET_S} s for a {TARGET_SIZE} JPEG "
             f"on 2 cores (decode + `scan_item`, no watermark checks). Measured: {verdict}.", "",
             f"Detectors timed: {', '.join(f'`{d.name}`' for d in dets)}"
             f" (left out: {', '.join(left_out) or 'none'}); {torch.get_num_threads()} torch "
             f"threads; load {load_s:.2f} s and warm-up {warm_s:.2f} s, not in the times below. "
             f"Inputs: crops of scikit-image photos saved as JPEG q90 (seed {a.seed}); each "
             f"file timed {a.repeat}x, median and p90 over all of a size's timings. Load average "
             f"when timing began: {load_avg[0]} (1 min; {busy}).", "",
             "| size | files | stage | median s | p90 s |", "|---|---:|---|---:|---:|"]
    lines += [f"| {r['size']} | {r['files']} | {r['stage']} | {r['median_s']:.4f} | "
              f"{r['p90_s']:.4f} |" for r in rows]
    lines += ["", "`score:NAME` is that detector alone on a decoded item (a fusion's includes "
              "its members, which a scan scores once); `end_to_end` = decode + `scan_item` "
              "without watermark checks, `end_to_end_watermarks` with them (the scan default).",
              ""]
    write_results(a.out, data, "\n".join(lines),
                  figure(rows, ["decode", *stages[1:-2], "end_to_end"]),
                  argv=None if argv is None else [__file__, *argv])
    print(f"{TARGET_SIZE} end to end: {verdict.replace('**', '')}; results in {a.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
