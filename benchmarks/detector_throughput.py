"""Detector throughput at 256², 512² and 1024², next to the bare decode time.

Each detector scores a real photograph (scikit-image's astronaut, resized) loaded from PNG and
from JPEG; decode = ``detect.io.media.load`` alone (sniff, limits, sha256, Pillow decode). Median of
``--repeats`` runs after a warm-up, one image at a time as ``unmask scan`` does.

    python benchmarks/detector_throughput.py [--model DIR ...] [--repeats 5]

Default: every shipped image model (the default scan set and the named-only ones).
Writes benchmarks/results/detector_throughput/results.{json,md} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.results import write_results
from benchmarks.runner import machine
from detect.core.models import load_detectors, shipped_models
from detect.io.media import load

OUT = Path(__file__).parent / "results" / "detector_throughput"
SIZES = (256, 512, 1024)


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    import torch
    from skimage import data

    # every shipped image model, the named-only ones included, unless models are given
    dets = load_detectors([], a.model) if a.model else \
        [d for d in load_detectors(list(shipped_models())) if d.tags.modality == "image"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            img = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
            files = {"png": Path(tmp) / f"{size}.png", "jpeg": Path(tmp) / f"{size}.jpg"}
            img.save(files["png"])
            img.save(files["jpeg"], quality=90)
            decode = {k: timed(lambda p=p: load(p), a.repeats) for k, p in files.items()}
            item = load(files["png"])
            for det in dets:
                t = timed(lambda d=det, it=item: d.score([it]), a.repeats)
                n_tiles = len(det.score_tiles(item)[1])
                rows.append({"detector": det.name, "size": size, "tiles_scored": n_tiles,
                             "score_ms": round(t * 1000, 2),
                             "images_per_s": round(1 / t, 1),
                             "decode_png_ms": round(decode["png"] * 1000, 2),
                             "decode_jpeg_ms": round(decode["jpeg"] * 1000, 2)})
                print(json.dumps(rows[-1]), flush=True)
    res = {"schema": "unmask.bench.detector_throughput/1", "rows": rows,
           "machine": {**machine(), "torch_threads": torch.get_num_threads()},
           "command": "python benchmarks/detector_throughput.py " + " ".join(
               [f"--model {m}" for m in a.model] + [f"--repeats {a.repeats}"])}
    lines = ["# Detector throughput (one image at a time, CPU)", "",
             "| detector | size | tiles scored | score ms | images/s | decode PNG ms | "
             "decode JPEG ms |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['detector']} | {r['size']}² | {r['tiles_scored']} | {r['score_ms']} | "
              f"{r['images_per_s']} | {r['decode_png_ms']} | {r['decode_jpeg_ms']} |"
              for r in rows]
    m = res["machine"]
    lines += ["", "Detectors score at most `max_tiles` (64) native-resolution 32×32 tiles spread "
              "evenly over the image, so the work per image is the same at every size (the "
              "tiles scored column); decode grows with pixels. On a busy machine, times vary "
              "from row to row by more than that work does.",
              f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m.get('torch')} "
              f"({m['torch_threads']} threads). Command: `{res['command']}`.", ""]
    write_results(a.out, res, "\n".join(lines))



if __name__ == "__main__":
    main()
