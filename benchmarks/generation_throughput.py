"""Generation throughput of every trainable image generator on this machine.

Speed does not depend on what the weights learned, so each generator is measured at its
registered defaults with freshly initialised weights (no training needed): images/s of
``sample_array`` in the batch size corpus builds use, median of a few timed runs after one
warm-up. Writes benchmarks/results/generation_throughput/results.{json,md} (``--out``).

    python benchmarks/generation_throughput.py [--images 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.results import write_results
from benchmarks.runner import machine
from detect.core.registry import generators

OUT = Path(__file__).parent / "results" / "generation_throughput"


def measure(name: str, n_images: int, repeats: int) -> dict:
    gen = generators.create(name).untrained()
    batch = min(gen.sample_batch_size(), n_images)
    gen.sample_array(list(range(batch)), seed=0)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for b in range(0, n_images, batch):
            gen.sample_array(list(range(b, min(b + batch, n_images))), seed=r + 1)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"generator": name, "family": gen.family, "size": gen.size,
            "params": gen.sampling_params(), "images": n_images, "batch": batch,
            "median_s": round(med, 3), "images_per_s": round(n_images / med, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    import torch

    rows = []
    for name in generators.names():
        cls = generators.get_class(name)
        if name.endswith("-test") or not getattr(cls, "trainable", True) or \
                getattr(cls, "modality", "image") != "image":
            continue
        rows.append(measure(name, a.images, a.repeats))
        print(json.dumps(rows[-1]), flush=True)
    res = {"schema": "unmask.bench.generation/1", "rows": rows,
           "machine": {**machine(), "torch_threads": torch.get_num_threads()},
           "command": "python benchmarks/generation_throughput.py "
                      f"--images {a.images} --repeats {a.repeats}"}
    lines = ["# Generation throughput (images/s, CPU)", "",
             "| generator | family | size | sampler | images/s |", "|---|---|---|---|---|"]
    for r in rows:
        p = r["params"]
        sampler = p.get("sampler", p.get("upsample", "-"))
        if "sample_steps" in p:
            sampler += f", {p['sample_steps']} steps"
        lines.append(f"| {r['generator']} | {r['family']} | {r['size']} | {sampler} | "
                     f"{r['images_per_s']} |")
    m = res["machine"]
    lines += ["", f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m.get('torch')} "
              f"({m['torch_threads']} threads). Command: `{res['command']}`.", ""]
    write_results(a.out, res, "\n".join(lines))


if __name__ == "__main__":
    main()
