"""``unmask quickstart``: the whole chain from nothing (corpus, detectors, bench, the wild line,
a scan), and ``--update-defaults`` / ``--publish-results`` for a checkout.

Two lines of image detectors train. The 32-pixel one (CNN, spectrum, NPR and their fusion, on
the quickstart recipe's tiny generators) ships by name. The wild line (``effnet-probe``,
``effnet-tune`` and their ``fusion-wild``, on a ``wild`` recipe: camera photos against their
reconstructions by autoencoders trained here) is the image default; the quickstart trains it
on the small ``wild-quick`` recipe, and ``benchmarks/wild_release.py --release`` ships the one
trained on the full ``wild`` recipe."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from detect.cli._common import _log
from detect.core.errors import ConfigError
from detect.core.resources import checkout_root, recipe_path

# from a checkout: datasets/recipes/; from a wheel: the copy inside the package (detect/datasets)
DEFAULT_RECIPE = recipe_path("quickstart")
WILD_RECIPE = recipe_path("wild-quick")


# the shipped models, primary first: the fusion of the three detectors after it; recon-vae
# ships too but only runs when named (weak on the quickstart corpus, 0.6 s per image)
QUICKSTART_DETECTORS = ("fusion", "cnn-resnet10t-slim", "spectrum-logreg", "npr-resnet10t-slim",
                        "recon-vae")
NAMED_ONLY = frozenset({"recon-vae"})


def cmd_quickstart(a: argparse.Namespace) -> int:
    """The whole chain from nothing: corpus -> detectors and their fusion -> bench -> a scan."""
    import numpy as np
    from PIL import Image

    from benchmarks.runner import markdown, run
    from detect.app.scan import ScanOptions, exit_code, scan
    from detect.core.models import load_detectors
    from detect.core.registry import detectors as registry
    from detect.io.corpus import Corpus
    from generators.recipe import build

    out = Path(a.out)
    t_start = time.time()
    if (a.update_defaults or a.publish_results) and checkout_root() is None:
        _log("not run from a git checkout: --update-defaults / --publish-results will leave the "
             f"installed package alone; the trained models stay in {out / 'models'}")
    # stage times survive re-runs: a stage re-used from --out keeps the time it took then
    tpath = out / "timing.json"
    prev = json.loads(tpath.read_text()) if tpath.exists() else {}
    timing: dict[str, Any] = {"reused": []}

    def stage(key: str, t0: float, reused: bool) -> None:
        if reused and key in prev:
            timing[key] = prev[key]
            timing["reused"].append(key)
        else:
            timing[key] = round(time.time() - t0, 1)

    corpus_done = (out / "corpus" / "corpus.json").exists()
    _log(f"[1/5] building corpus from {a.recipe} -> {out / 'corpus'}")
    corpus = build(a.recipe, out / "corpus", progress=not a.quiet)
    stage("corpus_s", t_start, corpus_done)
    _log(f"      {len(corpus)} items, hash {corpus.content_hash[:16]}, {corpus.counts()}")
    t_train = time.time()
    trained_any = False

    def is_fusion(n: str) -> bool:
        return registry.entry(n).target.endswith(":FusionDetector")

    model_dirs = [out / "models" / name for name in a.detectors]
    # a fusion trains after the members it fuses, wherever it is listed
    for i, name in enumerate(sorted(a.detectors, key=is_fusion)):
        mdir = out / "models" / name
        if (mdir / "config.json").exists() and not a.retrain:
            _log(f"[2/5] {name}: already trained at {mdir}")
            continue
        _log(f"[2/5] training {name} ({i + 1}/{len(a.detectors)})")
        trained_any = True
        t0 = time.time()
        kwargs: dict[str, Any] = {"target_fpr": a.target_fpr}
        if is_fusion(name):  # fuse this run's own members (trained above), not the shipped ones
            kwargs["members"] = [str(out / "models" / n) for n in a.detectors
                                 if not is_fusion(n) and n not in NAMED_ONLY]
        det = registry.create(name, **kwargs).fit(Corpus.open(out / "corpus"))
        det.save(mdir)
        _log(f"      {name}: threshold {det.threshold_:.4g} at FPR {a.target_fpr:g}, "
             f"{time.time() - t0:.0f} s")
    stage("train_s", t_train, not trained_any)
    _log("[3/5] benchmarking on the held-out test split")
    t_bench = time.time()
    attacks = a.attack if a.attack is not None else \
        ["jpeg:quality=90", "jpeg:quality=75", "blur:sigma=1.0"]
    board = run(out / "corpus", model_dirs, out / "bench", progress=not a.quiet,
                attack_specs=attacks)
    stage("bench_s", t_bench, False)
    print(markdown(board))
    wild_dirs: list[Path] = []
    if a.wild_recipe != "none":
        t_wild = time.time()
        wild_dirs = _wild_line(a, out)
        stage("wild_s", t_wild, False)
    _log("[5/5] scanning a sample folder (test items, a full-size photo, broken files)")
    t_scan = time.time()
    sample = out / "sample-folder"
    if sample.exists():
        shutil.rmtree(sample)
    sample.mkdir(parents=True)
    test = corpus.split("test")
    rng = np.random.default_rng(0)
    for lab, tag in ((0, "real"), (1, "fake")):
        recs = [r for r in test.records if r.label == lab]
        for j in rng.choice(len(recs), min(5, len(recs)), replace=False):
            src = corpus.root / recs[j].path
            shutil.copy(src, sample / f"{tag}-{j}{src.suffix}")
    from skimage import data as skdata

    Image.fromarray(skdata.coffee()).save(sample / "coffee-photo.jpg", quality=92)
    (sample / "empty.png").write_bytes(b"")
    (sample / "truncated.jpg").write_bytes((sample / "coffee-photo.jpg").read_bytes()[:3000])
    (sample / "notes.txt").write_bytes(b"caf\xe9 au lait: Latin-1, not UTF-8\n")
    dets = load_detectors([], [*wild_dirs, *model_dirs])  # the wild line decides
    findings = list(scan([str(sample)], dets, ScanOptions(progress=False)))
    with open(out / "scan.jsonl", "w", encoding="utf-8") as fh:
        for f in findings:
            fh.write(f.to_json() + "\n")
    for f in findings:
        score = "" if f.score is None else f"score {f.score:+.3f}"
        print(f"  {Path(f.path).name:24s} {f.verdict:10s} {score}  {f.error or ''}")
    code = exit_code(findings)
    _log(f"scan exit code would be {code}; records in {out / 'scan.jsonl'}")
    stage("scan_s", t_scan, False)
    if a.update_defaults:
        if checkout_root() is None:  # a user command never writes into site-packages
            _log(f"defaults not updated (installed package, not a checkout): the trained models "
                 f"are in {out / 'models'}; scan with them: unmask scan --model "
                 f"{out / 'models' / a.detectors[0]} ...")
        else:
            _update_defaults(model_dirs, a.detectors, a.recipe, corpus)
    timing["total_s"] = round(sum(v for k, v in timing.items() if k.endswith("_s")), 1)
    from benchmarks.runner import machine

    tpath.write_text(json.dumps(
        {"schema": "unmask.timing/1", **timing, "machine": machine(),
         "command": f"unmask quickstart --out {a.out}",
         "note": "stages listed in 'reused' keep the time they took when first run"},
        indent=2) + "\n")
    if a.publish_results:
        if checkout_root() is None:
            _log(f"results not published (not a checkout): they are in {out}")
        else:
            _publish(out, t_start)
    _log(f"quickstart finished in {time.time() - t_start:.0f} s (stages: {timing['total_s']:.0f} s"
         f"{', some re-used' if timing['reused'] else ''}); outputs in {out}")
    return 0


def _wild_line(a: argparse.Namespace, out: Path) -> list[Path]:
    """[4/5] The wild line: its corpus, its three models, their bench (the primary first)."""
    from benchmarks.runner import markdown, run
    from benchmarks.wild_release import LINE, _overrides, train_line
    from generators.recipe import build

    wdir = out / "wild-corpus"
    _log(f"[4/5] the wild line: corpus from {a.wild_recipe} -> {wdir}")
    corpus = build(a.wild_recipe, wdir, progress=not a.quiet)
    _log(f"      {len(corpus)} items, hash {corpus.content_hash[:16]}, {corpus.counts()}")
    dirs = train_line(wdir, out / "wild-models", _overrides(a.wild_set), a.target_fpr,
                      log=lambda m: _log(f"      {m}"))
    board = run(wdir, [dirs[n] for n in LINE], out / "wild-bench", progress=not a.quiet)
    print(markdown(board))
    return [dirs[n] for n in LINE]


def _publish(out: Path, started: float | None = None) -> None:
    """Copy the run's evidence (leaderboard, ROC, GAN grid and quality, timing) into the repo."""
    root = checkout_root()
    if root is None:
        raise ConfigError("publishing results writes into a git checkout's benchmarks/results")
    dest = root / "benchmarks" / "results" / "quickstart"
    dest.mkdir(parents=True, exist_ok=True)
    gdir = out / "corpus" / "generators" / "0-dcgan"
    for src, name in ((gdir / "samples.png", "dcgan-samples.png"),
                      (out / "scan.jsonl", "sample-scan.jsonl")):
        if src.exists():
            shutil.copy(src, dest / name)
    # results.{json,md,png} with the run block, like every benchmark (benchmarks/results.py)
    from benchmarks.results import write_results

    data = {key: json.loads(p.read_text()) for key, p in (
        ("leaderboard", out / "bench" / "leaderboard.json"), ("timing", out / "timing.json"),
        ("dcgan_quality", gdir / "quality.json")) if p.exists()}
    board = out / "bench" / "leaderboard.md"
    roc = out / "bench" / "roc.png"
    write_results(dest, data, board.read_text() if board.exists() else "",
                  figure=roc if roc.exists() else None, argv=["unmask", *sys.argv[1:]],
                  started=started)
    _log(f"published results to {dest}")


def _update_defaults(model_dirs: list[Path], names: list[str], recipe: str, corpus: Any) -> None:
    """Ship the trained 32-pixel models (a fusion by its members' names), named in
    ``defaults.json`` as ``image_legacy`` (shipped, run when named; the image defaults are the
    wild line's, benchmarks/wild_release.py), with a held-out sample of the test split beside
    the tests (detect.app.release, checkout only)."""
    from detect.app.release import Holdout, release
    from detect.core.resources import data_label

    test = corpus.split("test")
    picked = []
    for lab in (0, 1):
        picked += sorted((r for r in test.records if r.label == lab), key=lambda r: r.id)[:24]
    # the image part of the defaults; the face and text lists (other benchmarks) are kept
    release({m.name: m for m in model_dirs},
            defaults={"image_legacy": [n for n in names if n not in NAMED_ONLY],
                      "recipe": data_label(recipe), "corpus_hash": corpus.content_hash},
            holdout=Holdout("shipped-holdout", corpus, picked))


def register(sub: Any) -> None:
    s = sub.add_parser("quickstart", help="the whole chain: corpus, training, bench, scan")
    s.add_argument("--out", default="runs/quickstart")
    s.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    s.add_argument("--detectors", nargs="+", default=list(QUICKSTART_DETECTORS),
                   help="detectors to train (a fusion fuses the others); the first decides "
                   "scan verdicts")
    s.add_argument("--target-fpr", type=float, default=0.01)
    s.add_argument("--attack", action="append", default=None,
                   help="bench conditions besides clean (default: jpeg q90, jpeg q75, blur 1.0)")
    s.add_argument("--wild-recipe", default=str(WILD_RECIPE),
                   help="the wild line's recipe (kind wild), or 'none' to skip the wild line")
    s.add_argument("--wild-set", action="append", default=[], metavar="NAME.key=value",
                   help="a wild-line detector parameter, e.g. effnet-tune.epochs=1")
    s.add_argument("--retrain", action="store_true", help="retrain models already in --out")
    s.add_argument("--update-defaults", action="store_true",
                   help="ship the trained 32-pixel models into the package (named; the image "
                   "defaults come from benchmarks/wild_release.py --release)")
    s.add_argument("--publish-results", action="store_true",
                   help="copy leaderboard, ROC, DCGAN grid and timing to benchmarks/results/")
    s.set_defaults(func=cmd_quickstart)
