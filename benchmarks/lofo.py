"""Leave-one-generator-family-out: train on every family but one, test on the one left out.

For each family F present in the corpus, detectors are trained (train split) and calibrated
(calib split) on real items plus the fakes of the other families only, then tested on the test
split's real items and F's fakes. A family the recipe already holds out (test split only) can
only be a test family. The fold holding out the recipe's held-out family is also attacked:
JPEG 95..30, resize 0.5..1.5, crop, blur and noise, applied to real and fake alike.

    python benchmarks/lofo.py --corpus runs/families --out benchmarks/results/lofo \\
        [--detectors cnn-resnet10t-slim npr-resnet10t-slim spectrum-logreg fusion-lofo]

Writes lofo.json, lofo.md and roc-<family>.png; models go to --work (default runs/lofo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import metrics as M
from benchmarks.runner import evaluate, machine, parse_attack, plot_roc
from detect.corpus import Corpus
from detect.detectors.base import load_detector
from detect.registry import detectors

ROBUSTNESS = ["jpeg:quality=95", "jpeg:quality=75", "jpeg:quality=50", "jpeg:quality=30",
              "resize:scale=0.5", "resize:scale=0.75", "resize:scale=1.5", "crop:fraction=0.75",
              "blur:sigma=0.5", "blur:sigma=1.0", "noise:sigma=3", "noise:sigma=8"]


def family_of(rec: Any) -> str | None:
    return rec.provenance.get("params", {}).get("family") if rec.label == 1 else None


def fold(corpus: Corpus, held: str) -> tuple[Corpus, Corpus]:
    """(training corpus without family ``held``, test view: real test items + ``held`` fakes)."""
    train = corpus.filter(lambda r: r.split != "test" and family_of(r) != held)
    test = corpus.split("test").filter(lambda r: r.label == 0 or family_of(r) == held)
    return train, test


def train_fold(names: list[str], train: Corpus, work: Path, retrain: bool) -> list[Path]:
    dirs = []
    for name in names:
        d = work / name
        dirs.append(d)
        if (d / "config.json").exists() and not retrain:
            done = json.loads((d / "config.json").read_text()).get("trained_on") or {}
            if done.get("content_hash") == train.content_hash:
                continue  # trained on exactly this fold before
            print(f"lofo: {d} was trained on other data; retraining", file=sys.stderr)
        t0 = time.time()
        if name == "fusion-lofo":  # fuse this fold's own members, never the shipped ones
            members = [str(work / n) for n in names if n != "fusion-lofo"]
            det = detectors.create("fusion", members=members)
        else:
            det = detectors.create(name)
        det.fit(train).save(d)
        print(f"lofo: trained {name} in {time.time() - t0:.0f} s -> {d}", file=sys.stderr)
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", default="benchmarks/results/lofo")
    ap.add_argument("--work", default="runs/lofo")
    ap.add_argument("--detectors", nargs="+",
                    default=["cnn-resnet10t-slim", "npr-resnet10t-slim", "spectrum-logreg",
                             "fusion-lofo"])
    ap.add_argument("--retrain", action="store_true")
    a = ap.parse_args()
    corpus = Corpus.open(a.corpus)
    held_by_recipe = set(corpus.header.get("held_out_families", []))
    families = sorted({f for r in corpus.records if (f := family_of(r))})
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for held in families:
        train, test = fold(corpus, held)
        trained_on = sorted({f for r in train.records if (f := family_of(r))})
        if not trained_on:
            continue
        dirs = train_fold(a.detectors, train, work / f"without-{held}", a.retrain)
        items = test.items
        labels = test.labels
        conditions = [("clean", None)]
        if held in held_by_recipe:
            conditions += [(s, parse_attack(s)) for s in ROBUSTNESS]
        curves = {}
        for d in dirs:
            det = load_detector(d)
            cal = det.calibration_for()
            for cond, atk in conditions:
                batch = [it.content if atk is None else atk(it.content) for it in items]
                scores = det.score(batch)
                row = {"held_out": held, "trained_on": trained_on, "detector": det.name,
                       "label": d.name, "condition": cond,
                       **evaluate(labels, scores, cal.threshold, cal.target_fpr)}
                rows.append(row)
                if cond == "clean":
                    fpr, tpr, _ = M.roc(labels, scores)
                    curves[(d.name, "clean")] = (fpr, tpr, row["auroc"])
                print(f"lofo: {held:10s} {d.name:22s} {cond:18s} AUROC {row['auroc']:.3f} "
                      f"TPR@1% {row['tpr_at_1pct_fpr']:.3f}", file=sys.stderr)
        plot_roc(curves, out / f"roc-{held}.png", title=f"{held} held out")
    res = {"schema": "unmask.bench.lofo/1", "corpus": corpus.header.get("name"),
           "corpus_hash": corpus.content_hash, "families": families,
           "held_out_by_recipe": sorted(held_by_recipe), "rows": rows, "machine": machine(),
           "command": " ".join(["python", "benchmarks/lofo.py", *sys.argv[1:]])}
    (out / "lofo.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "lofo.md").write_text(markdown(res))
    print(markdown(res))


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Leave-one-family-out on `{res['corpus']}` ({res['corpus_hash'][:12]})", "",
             "Trained on real + the other families' fakes; tested on held-out photos and the "
             "held-out family's fakes. acc / FPR / TPR at the threshold calibrated (1% FPR) on "
             "the fold's own calib split; TPR@1%FPR is the oracle cut on the test data.", "",
             "| held out | trained on | detector | condition | AUROC | AP | TPR@1%FPR | "
             "acc | FPR | TPR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['held_out']} | {'+'.join(r['trained_on'])} | {r['label']} | "
                     f"{r['condition']} | {r['auroc']:.3f} | {r['ap']:.3f} | "
                     f"{r['tpr_at_1pct_fpr']:.3f} | {r['accuracy_at_threshold']:.3f} | "
                     f"{r['fpr_at_threshold']:.3f} | {r['tpr_at_threshold']:.3f} |")
    m = res["machine"]
    lines += ["", f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m.get('torch')}. "
              f"Command: `{res['command']}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
