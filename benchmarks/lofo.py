"""Leave-one-generator-family-out: train on every family but one, test on the one left out.

For each family F present in the corpus, detectors are trained (train split) and calibrated
(calib split) on real items plus the fakes of the other families only, then tested on the test
split's real items and F's fakes. A family the recipe already holds out (test split only) can
only be a test family. The fold holding out the recipe's held-out family is also attacked:
JPEG 95..30, resize 0.5..1.5, crop, blur and noise, applied to real and fake alike.

    python benchmarks/lofo.py --corpus runs/families --out benchmarks/results/lofo \\
        [--detectors cnn-resnet10t-slim recon-vae recon-vae@whitebox fusion-lofo ...]

Writes results.json, results.md (benchmarks/results.py), roc-<family>.png and
robustness-<family>.png; models go to --work (default runs/lofo).

Recon detectors train their reconstructor once on the corpus' real train images (it never sees
a fake) and share it across folds. ``recon-*@whitebox`` instead reconstructs through the very
generator that made the corpus' fakes of the recon family; it runs only in the fold holding
that family out, and is reported as the white-box bound, not as generalisation. ``fusion-lofo``
fuses the fold's own non-white-box members.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import metrics as M
from benchmarks.results import write_results
from benchmarks.runner import evaluate, machine, machine_line, parse_attack, plot_roc
from detect.core.detector import load_detector
from detect.core.registry import detectors
from detect.io.corpus import Corpus

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


def shared_reconstructor(name: str, corpus: Corpus, work: Path) -> Path:
    """Train a recon detector's reconstructor once on the corpus' real train images.

    Every fold has the same real train images (only fakes are left out), so each fold would
    train the same model; it never sees a fake, so sharing it leaks nothing about the held-out
    family. Different seed from the corpus' own generators: a model of the family, not the one
    that made the fakes."""
    import numpy as np

    from detect.image.patch import as_image

    d = work / "reconstructors" / name
    if (d / "config.json").exists():
        return d
    det = detectors.create(name)
    real = corpus.split("train").filter(lambda r: r.label == 0 and r.modality == "image")
    t0 = time.time()
    det._prepare_reconstructor([as_image(it) for it in real.iter_items()],
                               np.random.default_rng(det.seed))
    det.gen_.save(d)
    print(f"lofo: trained the {name} reconstructor in {time.time() - t0:.0f} s -> {d}",
          file=sys.stderr)
    return d


def corpus_generator(corpus: Corpus, family: str) -> Path | None:
    """The folder of the model that made the corpus' ``family`` fakes (white-box recon)."""
    for key, g in (corpus.header.get("generators") or {}).items():
        if g.get("family") == family and (corpus.root / "generators" / key / "model").is_dir():
            return corpus.root / "generators" / key / "model"
    return None


def stored_scores(d: Path, cond: str, test_hash: str, compute: Any) -> Any:
    """Test scores of model ``d`` under ``cond``, kept beside the model so an interrupted run
    resumes without rescoring (plain .npy, read without pickle)."""
    import numpy as np

    slug = "".join(c if c.isalnum() else "_" for c in cond)
    f = d / "lofo-scores" / f"{test_hash[:16]}-{slug}.npy"
    if f.is_file():
        return np.load(f, allow_pickle=False)
    scores = compute()
    f.parent.mkdir(exist_ok=True)
    tmp = f.with_name(f.stem + ".part.npy")
    np.save(tmp, scores)
    os.replace(tmp, f)
    return scores


def recon_family(name: str) -> str | None:
    """The generator family of a recon detector's registered reconstructor (else None)."""
    from detect.core.registry import generators

    base = name.removesuffix("@whitebox")
    if not base.startswith("recon-"):
        return None
    det = detectors.create(base)
    ref = det.reconstructor
    if not ref.startswith("train:"):
        return None
    return generators.create(ref.removeprefix("train:"), **det.reconstructor_params).family


def create(name: str, corpus: Corpus, work: Path, members: list[str]) -> Any:
    if name.startswith("fusion-lofo"):  # fuse this fold's own members, never the shipped ones
        return detectors.create("fusion", members=members,
                                method="max-p" if name.endswith("-maxp") else "logreg")
    if name.endswith("@whitebox"):  # recon through the very model that made the fakes
        base, family = name.removesuffix("@whitebox"), recon_family(name)
        gdir = corpus_generator(corpus, family)
        if gdir is None:
            raise SystemExit(f"lofo: {name}: the corpus has no {family} generator folder")
        return detectors.create(base, reconstructor=str(gdir))
    if name.startswith("recon-"):
        return detectors.create(name, reconstructor=str(shared_reconstructor(name, corpus,
                                                                             work.parent)))
    return detectors.create(name)


def train_fold(names: list[str], train: Corpus, work: Path, retrain: bool,
               corpus: Corpus) -> list[Path]:
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
        members = [str(work / n) for n in names
                   if not n.startswith("fusion-lofo") and not n.endswith("@whitebox")]
        det = create(name, corpus, work, members)
        det.fit(train).save(d)
        shutil.rmtree(d / "lofo-scores", ignore_errors=True)  # scores of the old model
        print(f"lofo: trained {name} in {time.time() - t0:.0f} s -> {d}", file=sys.stderr)
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", default="benchmarks/results/lofo")
    ap.add_argument("--work", default="runs/lofo")
    ap.add_argument("--detectors", nargs="+",
                    default=["cnn-resnet10t-slim", "cnn-resnet10t-slim-aug",
                             "npr-resnet10t-slim", "npr-resnet10t-slim-aug", "spectrum-logreg",
                             "recon-vae", "recon-diffusion", "recon-vae@whitebox",
                             "recon-diffusion@whitebox", "fusion-lofo", "fusion-lofo-maxp"])
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite results.md and the plots from --out/results.json, no scoring")
    a = ap.parse_args()
    if a.report_only:
        report(json.loads((Path(a.out) / "results.json").read_text()), Path(a.out))
        return
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
        # a white-box recon row only where its reconstructor's family is the held-out one
        names = [n for n in a.detectors if not n.endswith("@whitebox") or recon_family(n) == held]
        dirs = train_fold(names, train, work / f"without-{held}", a.retrain, corpus)
        items = test.items
        labels = test.labels
        conditions = [("clean", None)]
        if held in held_by_recipe:
            conditions += [(s, parse_attack(s)) for s in ROBUSTNESS]
        curves = {}
        cache: dict[tuple[str, str], Any] = {}  # (model folder name, condition) -> scores
        for d in dirs:
            det = load_detector(d)
            cal = det.calibration_for()
            # white-box rows are a bound on the clean data, not a product: no attack sweep
            for cond, atk in conditions[:1] if d.name.endswith("@whitebox") else conditions:
                # a fusion's members are copies of this fold's models, each in the folder named
                # after it: re-use the scores those models already gave
                for m in getattr(det, "members_", []):
                    hit = cache.get((m.name, cond))
                    if hit is not None:
                        m.score = lambda _items, hit=hit: hit
                    else:  # never a stale answer from another condition
                        m.__dict__.pop("score", None)
                def compute(det=det, atk=atk, items=items):  # noqa: ANN001, ANN202
                    return det.score([it.content if atk is None else atk(it.content)
                                      for it in items])

                scores = stored_scores(d, cond, test.content_hash, compute)
                cache[(d.name, cond)] = scores
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
    report(res, out)


def report(res: dict[str, Any], out: Path) -> None:
    """results.{json,md} and the robustness plot, from the results alone (``--report-only``
    redoes them, keeping the run block of the run that scored)."""
    for held in res["held_out_by_recipe"]:
        plot_robustness(res["rows"], held, out / f"robustness-{held}.png")
    write_results(out, res, markdown(res))
    print(markdown(res))


def plot_robustness(rows: list[dict[str, Any]], held: str, path: Path) -> None:
    """AUROC per attack for each detector on one fold: where each one breaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["held_out"] == held]
    conds = list(dict.fromkeys(r["condition"] for r in mine))
    labels = [lab for lab in dict.fromkeys(r["label"] for r in mine)
              if sum(r["label"] == lab for r in mine) > 1]
    if len(conds) < 2 or not labels:
        return
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for i, lab in enumerate(labels):
        by = {r["condition"]: r["auroc"] for r in mine if r["label"] == lab}
        ax.plot(range(len(conds)), [by.get(c, float("nan")) for c in conds], marker="o",
                lw=1.3, color=plt.cm.tab10(i % 10), ls="-" if i < 10 else "--", label=lab)
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.set_xticks(range(len(conds)), conds, rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="AUROC", ylim=(0, 1), title=f"{held} held out: AUROC after each attack "
           "(real and fake alike)")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(res: dict[str, Any]) -> str:
    rows = res["rows"]
    folds = list(dict.fromkeys(r["held_out"] for r in rows))
    trained = {r["held_out"]: "+".join(r["trained_on"]) for r in rows}
    labels = list(dict.fromkeys(r["label"] for r in rows))
    clean = {(r["label"], r["held_out"]): r for r in rows if r["condition"] == "clean"}
    lines = [f"# Leave-one-family-out on `{res['corpus']}` ({res['corpus_hash'][:12]})", "",
             "Trained on real + the other families' fakes; tested on held-out photos and the "
             "held-out family's fakes. acc / FPR / TPR at the threshold calibrated (1% FPR) on "
             "the fold's own calib split; TPR@1%FPR is the oracle cut on the test data. "
             "`@whitebox` rows reconstruct through the very model that made the held-out fakes: "
             "a bound, not generalisation.", "",
             "## Clean test data: AUROC / TPR@1%FPR", "",
             "| detector | " + " | ".join(f"{f} held out (trained on {trained[f]})"
                                         for f in folds) + " |",
             "|---|" + "---|" * len(folds)]
    for lab in labels:
        cells = [f"{clean[(lab, f)]['auroc']:.3f} / {clean[(lab, f)]['tpr_at_1pct_fpr']:.3f}"
                 if (lab, f) in clean else "" for f in folds]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    for held in res.get("held_out_by_recipe", []):
        mine = [r for r in rows if r["held_out"] == held]
        conds = list(dict.fromkeys(r["condition"] for r in mine))
        if len(conds) < 2:
            continue
        by = {(r["label"], r["condition"]): r["auroc"] for r in mine}
        lines += ["", f"## Robustness, {held} held out: AUROC after each attack", "",
                  f"![robustness](robustness-{held}.png)", "",
                  "| detector | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
        for lab in dict.fromkeys(r["label"] for r in mine):
            lines.append(f"| {lab} | " + " | ".join(
                f"{by[(lab, c)]:.3f}" if (lab, c) in by else "" for c in conds) + " |")
    lines += ["", "## Every row", "",
              "| held out | trained on | detector | condition | AUROC | AP | TPR@1%FPR | "
              "acc | FPR | TPR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['held_out']} | {'+'.join(r['trained_on'])} | {r['label']} | "
                     f"{r['condition']} | {r['auroc']:.3f} | {r['ap']:.3f} | "
                     f"{r['tpr_at_1pct_fpr']:.3f} | {r['accuracy_at_threshold']:.3f} | "
                     f"{r['fpr_at_threshold']:.3f} | {r['tpr_at_threshold']:.3f} |")
    lines += ["", machine_line(res), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
