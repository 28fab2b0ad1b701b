"""Format-bias control: how much of a detector's score is the file format, not the generator?

Real photographs usually went through JPEG once; fakes written by a generator are lossless. A
detector can then learn "has 8x8 JPEG traces" = real, and look excellent on a corpus while
failing on a re-saved fake (the trap reported for DIRE-style detectors). The control re-encodes
both classes identically (default JPEG q90, 4:4:4, for train, calib and test) and retrains:

- ``as stored``: trained and tested on the corpus as written;
- ``as stored -> re-encoded``: the same model tested on re-encoded test items (how much it
  leaned on the format);
- ``control``: trained, calibrated and tested on re-encoded items (format cue removed).

The gap ``as stored - control`` is the part of the AUROC the format explained.

    python benchmarks/format_bias.py --corpus runs/qs3/corpus --out benchmarks/results/format_bias
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

from benchmarks.lofo import train_fold
from benchmarks.results import write_results
from benchmarks.runner import evaluate, machine, machine_line, parse_attack
from detect.core.detector import load_detector
from detect.io.corpus import Corpus


def origin_formats(corpus: Corpus) -> dict[str, dict[str, int]]:
    """Per class, the format the pixels came from (a real patch's source photo; a fake's file)."""
    out: dict[str, collections.Counter] = {"real": collections.Counter(),
                                           "synthetic": collections.Counter()}
    for r in corpus.records:
        src = str(r.provenance.get("source") or "")
        if r.label == 0 and "." in Path(src).name:
            fmt = Path(src).suffix.lower().lstrip(".").replace("jpeg", "jpg")
        elif r.label == 0:
            fmt = "png (package image)" if src.startswith("skimage:") else "unknown"
        else:
            fmt = Path(r.path).suffix.lower().lstrip(".")
        out["real" if r.label == 0 else "synthetic"][fmt] += 1
    return {k: dict(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", default="benchmarks/results/format_bias")
    ap.add_argument("--work", default="runs/format_bias")
    ap.add_argument("--control", default="jpeg:quality=90,subsampling=4:4:4",
                    help="the re-encoding applied to every item of both classes")
    ap.add_argument("--detectors", nargs="+",
                    default=["cnn-resnet10t-slim", "cnn-resnet10t-slim-aug",
                             "npr-resnet10t-slim", "spectrum-logreg", "recon-vae"])
    ap.add_argument("--retrain", action="store_true")
    a = ap.parse_args()
    corpus = Corpus.open(a.corpus)
    control = parse_attack(a.control)
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    plain = corpus.filter(lambda r: r.split != "test")
    recoded = plain.map(control)
    test = corpus.split("test")
    test_items = test.items
    labels = test.labels
    recoded_test = [control(it.content) for it in test_items]
    stored_dirs = train_fold(a.detectors, plain, work / "as-stored", a.retrain, corpus)
    control_dirs = train_fold(a.detectors, recoded, work / "control", a.retrain, corpus)
    rows: list[dict[str, Any]] = []
    for sd, cd in zip(stored_dirs, control_dirs, strict=True):
        runs = [("as stored", sd, [it.content for it in test_items]),
                ("as stored -> re-encoded", sd, recoded_test),
                ("control", cd, recoded_test)]
        for cond, mdir, batch in runs:
            det = load_detector(mdir)
            cal = det.calibration_for()
            row = {"detector": sd.name, "condition": cond,
                   **evaluate(labels, det.score(batch), cal.threshold, cal.target_fpr)}
            rows.append(row)
            print(f"format-bias: {sd.name:22s} {cond:24s} AUROC {row['auroc']:.3f}",
                  file=sys.stderr)
    res = {"schema": "unmask.bench.format_bias/1", "corpus": corpus.header.get("name"),
           "corpus_hash": corpus.content_hash, "control": control.describe(),
           "origin_formats": origin_formats(corpus), "rows": rows, "machine": machine(),
           "command": " ".join(["python", "benchmarks/format_bias.py", *sys.argv[1:]])}
    write_results(out, res, markdown(res))
    print(markdown(res))


def markdown(res: dict[str, Any]) -> str:
    by = {(r["detector"], r["condition"]): r for r in res["rows"]}
    dets = list(dict.fromkeys(r["detector"] for r in res["rows"]))
    fmt = "; ".join(f"{k}: " + ", ".join(f"{n} {f}" for f, n in sorted(v.items()))
                    for k, v in res["origin_formats"].items())
    lines = [f"# Format-bias control on `{res['corpus']}` ({res['corpus_hash'][:12]})", "",
             f"Where the pixels came from: {fmt}.", "",
             f"Control: every item of both classes re-encoded with `{res['control']}` for "
             "training, calibration and test. AUROC on the test split; FPR / TPR at the "
             "threshold each model calibrated (1% FPR) on its own calib split.", "",
             "| detector | as stored | as stored -> re-encoded | control | gap closed by the "
             "control | control FPR / TPR |", "|---|---|---|---|---|---|"]
    for d in dets:
        s, x, c = (by[(d, k)] for k in ("as stored", "as stored -> re-encoded", "control"))
        lines.append(f"| {d} | {s['auroc']:.3f} | {x['auroc']:.3f} | {c['auroc']:.3f} | "
                     f"{s['auroc'] - c['auroc']:+.3f} | {c['fpr_at_threshold']:.3f} / "
                     f"{c['tpr_at_threshold']:.3f} |")
    lines += ["", machine_line(res), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
