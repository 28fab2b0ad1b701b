"""unmask's fast dwtDct / dwtDctSvd decoder against invisible-watermark's, side by side.

Same images, same payload lengths, both decoders: median wall time per decode, the ratio, and
whether every decoded bit agrees. Images are real photos (skimage, scikit-learn, opencv-doc)
resized to 1920x1080 and 512x512, each both unmarked and watermarked.

    python benchmarks/watermark_speed.py --out benchmarks/results/watermark_speed
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from benchmarks.results import write_results

SIZES = {"1920x1080": (1080, 1920), "512x512": (512, 512)}


def _images(n: int, hw: tuple[int, int], seed: int) -> list[tuple[str, np.ndarray]]:
    import cv2

    from generators.sources import photos

    rng = np.random.default_rng(seed)
    ph = photos("photos")
    pick = rng.choice(len(ph), size=min(n, len(ph)), replace=False)
    out = []
    for i in pick:
        p = ph[int(i)]
        img = cv2.resize(p.pixels, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        out.append((p.name, np.ascontiguousarray(img)))
    return out


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/watermark_speed")
    ap.add_argument("--images", type=int, default=6, help="photos per size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from tqdm.auto import tqdm

    from detect.evidence.watermark import image_codec as wi

    rows = []
    jobs = [(size, scheme, n_bits)
            for size in SIZES for scheme in ("dwtDct", "dwtDctSvd") for n_bits in (48, 136)]
    imgs = {size: _images(a.images, hw, a.seed) for size, hw in SIZES.items()}
    bar = tqdm(total=len(jobs) * a.images * 2, desc="decode", file=sys.stderr)
    for size, scheme, n_bits in jobs:
        ref_t, fast_t, agree, total = [], [], 0, 0
        rng = np.random.default_rng([a.seed, n_bits])
        for _name, img in imgs[size]:
            payload = tuple(int(b) for b in rng.integers(0, 2, n_bits))
            for marked in (False, True):
                x = wi.embed(img, payload, scheme) if marked else img
                tr, rb = _median_time(lambda x=x, n=n_bits, s=scheme: wi.decode(
                    x, n, s, decoder="reference"), a.repeats)
                tf, fb = _median_time(lambda x=x, n=n_bits, s=scheme: wi.decode(x, n, s),
                                      a.repeats)
                ref_t.append(tr)
                fast_t.append(tf)
                agree += int(np.array_equal(rb, fb))
                total += 1
                bar.update()
        r, f = statistics.median(ref_t), statistics.median(fast_t)
        rows.append({"size": size, "scheme": scheme, "n_bits": n_bits, "decodes": total,
                     "reference_ms": round(r * 1000, 2), "fast_ms": round(f * 1000, 2),
                     "speedup": round(r / f, 1), "bit_identical": f"{agree}/{total}"})
    bar.close()

    from importlib.metadata import version

    import cv2

    machine = (f"{platform.machine()} {platform.processor() or ''}".strip()
               + f", {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
               f"{np.__version__}, opencv {cv2.__version__}, "
               f"invisible-watermark {version('invisible-watermark')}")
    res = {"schema": "unmask.bench/1", "benchmark": "watermark_speed", "machine": machine,
           "images_per_size": a.images, "repeats": a.repeats, "rows": rows}
    lines = ["# Fast watermark decoder vs invisible-watermark", "",
             "Median time per decode over real photos, unmarked and watermarked "
             f"({a.images} photos per size, each decode repeated {a.repeats}x); "
             "`bit_identical` counts decodes whose bits all agree.", "",
             "| size | scheme | bits | reference ms | unmask fast ms | speed-up | bit-identical |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['scheme']} | {r['n_bits']} | {r['reference_ms']} | "
              f"{r['fast_ms']} | {r['speedup']}x | {r['bit_identical']} |" for r in rows]
    lines += ["", f"Machine: {machine}.", "",
              "Reproduce: `python benchmarks/watermark_speed.py --out "
              "benchmarks/results/watermark_speed`"]
    write_results(a.out, res, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
