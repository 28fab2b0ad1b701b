"""The ``unmask`` command line.

Results go to stdout (JSON Lines, JSON or Markdown), progress and logs to stderr. Each error is
one clean line (``--debug`` for a traceback). Sub-commands that need generators or benchmarks
import them inside, so ``unmask scan`` never loads what it does not use.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, UnmaskError
from .resources import checkout_root, recipe_path

# from a checkout: datasets/recipes/; from a wheel: the copy inside the package (detect/datasets)
DEFAULT_RECIPE = recipe_path("quickstart")


def _log(msg: str) -> None:
    print(f"unmask: {msg}", file=sys.stderr, flush=True)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise ConfigError(f"--set expects key=value, got {p!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# -- sub-commands ---------------------------------------------------------------------------------
def cmd_list(a: argparse.Namespace) -> int:
    from .registry import REGISTRIES
    from .scan import shipped_models

    if a.kind == "recipes":
        from .resources import shipped_recipes

        for name, path in shipped_recipes().items():
            print(f"{name}\t{path}")
        return 0
    if a.kind == "models":
        for name, path in shipped_models().items():
            cfg = json.loads((path / "config.json").read_text())
            cal = cfg["calibration"]
            print(f"{name}\tthreshold {cal['threshold']:.4g} @ FPR {cal['target_fpr']:g}\t{path}")
        return 0
    reg = REGISTRIES[a.kind]
    names = reg.names(a.pattern)
    for n in names:
        e = reg.entry(n)
        print(f"{n}\t{e.doc}")
    if not names:
        _log(f"no {a.kind} match {a.pattern!r}")
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from generators.recipe import build

    t0 = time.time()
    corpus = build(a.recipe, a.out, seed=a.seed, progress=not a.quiet)
    if a.evidence:
        from generators.recipe import publish_evidence

        _log(f"generator evidence in {publish_evidence(corpus, a.evidence)}")
    print(json.dumps({"corpus": str(a.out), "content_hash": corpus.content_hash,
                      "counts": corpus.counts(), "seconds": round(time.time() - t0, 1)}))
    return 0


def cmd_train_generator(a: argparse.Namespace) -> int:
    """Train one generator on patches of a real source (or load a pretrained pipeline)."""
    import numpy as np

    from generators.recipe import report_generator
    from generators.sources import photo_patches, photos

    from .registry import generators

    if getattr(generators.get_class(a.generator), "modality", "image") == "text":
        return _train_text_generator(a)
    a.source = a.source or "photos"
    params = {"size": a.size, **_parse_sets(a.set)}
    if a.seed is not None:
        params["seed"] = a.seed
    out = Path(a.out)
    gen = generators.create(a.generator, **params)
    t0 = time.time()
    plist = photos(a.source, limit=a.limit)
    pool = np.stack([s.content for _, s in photo_patches(plist, a.patches, gen.size or a.size,
                                                         a.scales, a.seed or 0)])
    if getattr(gen, "trainable", True):
        gen.fit(pool, workdir=out, progress=not a.quiet)
    else:
        gen.prepare()
    gen.save(out / "model")
    rep = report_generator(gen, pool, out, a.seed or 0)
    print(json.dumps({"generator": a.generator, "model": str(out / "model"),
                      "checkpoint_sha256": gen.checkpoint_sha256_, "quality": rep,
                      "samples": str(out / "samples.png"),
                      "seconds": round(time.time() - t0, 1)}))
    return 0


def _train_text_generator(a: argparse.Namespace) -> int:
    """Train a text LM on the train documents of text sources (``--source pydoc,docstrings``),
    split by origin 90/10; the held-out perplexity on the other tenth is saved with it."""
    from generators.text.sources import documents, split_documents

    from .registry import generators

    params = _parse_sets(a.set)
    if a.seed is not None:
        params["seed"] = a.seed
    seed = a.seed or 0
    out = Path(a.out)
    gen = generators.create(a.generator, **params)
    t0 = time.time()
    docs = []
    for src in (a.source or "pydoc").split(","):
        docs += documents(src.strip(), limit=a.limit)
    split = split_documents(docs, {"train": 0.9, "test": 0.1}, seed)
    train = [d for d in docs if split[d.id] == "train"]
    held = [d for d in docs if split[d.id] == "test"]
    if getattr(gen, "trainable", True):
        gen.fit(train, workdir=out, progress=not a.quiet)
    else:
        gen.prepare()
    ev = gen.evaluate(held, max_tokens=512)
    if hasattr(gen, "untrained"):
        ev["untrained_perplexity"] = gen.untrained().perplexity([d.text for d in held],
                                                                max_tokens=512)
    gen.save(out / "model")
    print(json.dumps({"generator": a.generator, "model": str(out / "model"),
                      "checkpoint_sha256": gen.checkpoint_sha256_,
                      "n_params": gen.n_params() if hasattr(gen, "n_params") else None,
                      "train_documents": len(train), "heldout": ev,
                      "seconds": round(time.time() - t0, 1)}))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .corpus import Corpus
    from .registry import detectors

    params = _parse_sets(a.set)
    if a.target_fpr is not None:
        params["target_fpr"] = a.target_fpr
    if a.seed is not None:
        params["seed"] = a.seed
    corpus = Corpus.open(a.corpus)
    det = detectors.create(a.detector, **params)
    t0 = time.time()
    det.fit(corpus)
    det.save(a.out)
    cal = det.calibration_
    print(json.dumps({"detector": a.detector, "model": str(a.out),
                      "threshold": cal.threshold, "target_fpr": cal.target_fpr,
                      "calib_real": cal.n_real, "calib_synthetic": cal.n_fake,
                      "seconds": round(time.time() - t0, 1)}))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from benchmarks.runner import run

    board = run(a.corpus, a.model, a.out, split=a.split, attack_specs=a.attack,
                progress=not a.quiet)
    from benchmarks.runner import markdown

    print(markdown(board))
    _log(f"wrote {a.out}/leaderboard.json, leaderboard.md, roc.png")
    return 0


def _video_args(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("video")
    g.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames sampled per video, spread evenly (default 16); with "
                   "--frame-every, the cap")
    g.add_argument("--frame-every", type=int, default=None, metavar="N",
                   help="sample every Nth frame from the start instead (at most --frames)")
    g.add_argument("--max-duration", type=float, default=3600.0, metavar="SECONDS",
                   help="refuse longer videos (default 3600)")
    g.add_argument("--max-frames", type=int, default=100_000, metavar="N",
                   help="refuse videos declaring more frames (default 100000)")


def _sampling(a: argparse.Namespace) -> Any:
    from .video import FrameSampling

    if a.frame_every:
        return FrameSampling(mode="every", n=a.frames, every=a.frame_every)
    return FrameSampling(n=a.frames)


def _limits(a: argparse.Namespace) -> Any:
    from .media import Limits

    kw = {"max_bytes": a.max_bytes, "max_pixels": a.max_pixels} if hasattr(a, "max_bytes") \
        else {}
    return Limits(text_errors=a.text_errors, max_duration_s=a.max_duration,
                  max_frames=a.max_frames, **kw)


def _load_for_scan(a: argparse.Namespace) -> list[Any]:
    """The detectors scan / inspect run: named, saved, or shipped; zero-shot text detectors
    re-pointed at ``--scorer`` (and re-calibrated) when one is given."""
    from .scan import load_detectors

    dets = load_detectors(a.detector, a.model)
    if a.performer and not a.scorer:
        raise ConfigError("--performer goes with --scorer")
    if a.scorer:
        from .text.zeroshot import with_scorer

        dets = with_scorer(dets, a.scorer, a.performer, log=_log)
    return dets


def cmd_scan(a: argparse.Namespace) -> int:
    from .scan import exit_code, scan
    from .watermark.checks import load_text_keys

    exit_code([], a.fail_on)  # a typo in --fail-on fails before any work
    text_keys = load_text_keys(a.wm_key)  # so does a bad key file
    detectors = _load_for_scan(a)
    limits = _limits(a)
    sampling = _sampling(a)
    from .output import FindingWriter, recorded

    paths = list(a.paths) + _from_list(a.from_list)
    if not paths:
        raise ConfigError("nothing to scan: give files, folders, - or --from-list FILE")
    earlier: list[Any] = []
    if a.resume:
        if not a.output:
            raise ConfigError("--resume needs --out FILE (the records to resume from)")
        earlier = recorded(Path(a.output), a.format)
        _log(f"resuming: {len(earlier)} record(s) already in {a.output}")
    done = {(f.path, f.sha256) for f in earlier}
    findings = []
    skipped: list[Path] = []
    with FindingWriter(a.output, a.format) as out:
        for f in scan(paths, detectors, limits=limits, target_fpr=a.target_fpr,
                      progress=not a.quiet, debug=a.debug, include_hidden=a.include_hidden,
                      skipped=skipped, watermarks=not a.no_watermarks,
                      wm_target_fpr=a.wm_target_fpr, text_keys=text_keys,
                      sampling=sampling, done=done, timeout=a.timeout, workers=a.workers,
                      load_detectors_fn=functools.partial(_load_for_scan, a),
                      engine=a.engine, ray_address=a.ray_address):
            out.write(f)
            findings.append(f)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    _log(f"scanned {len(findings)} input(s): " +
         ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if skipped:
        _log(f"left out {len(skipped)} hidden entr{'y' if len(skipped) == 1 else 'ies'} "
             f"(e.g. {skipped[0]}); --include-hidden scans them")
    for f in findings:
        if f.error and not a.quiet:
            _log(f"error: {f.error}")
    code = exit_code(earlier + findings, a.fail_on)  # a resumed run answers for all records
    return 0 if a.exit_zero else code


def cmd_serve(a: argparse.Namespace) -> int:
    from .serve import serve

    detectors = _load_for_scan(a)
    _log(f"serving {len(detectors)} detector(s) on http://{a.host}:{a.port} (POST /scan)")
    serve(detectors, a.host, a.port, limits=_limits(a), target_fpr=a.target_fpr,
          sampling=_sampling(a), watermarks=not a.no_watermarks)
    return 0


def _from_list(path: str | None) -> list[str]:
    """Paths from ``--from-list`` (one per line; '-' reads them from standard input)."""
    if path is None:
        return []
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--from-list {path}: cannot read ({e})") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def cmd_inspect(a: argparse.Namespace) -> int:
    from .inspect import inspect_item
    from .media import load

    detectors = _load_for_scan(a)
    limits = _limits(a)
    item = load(a.file, limits)
    if item.modality == "video":
        from .video import decode_item

        item = decode_item(item, limits, _sampling(a))
    report = inspect_item(item, detectors, target_fpr=a.target_fpr,
                          wm_target_fpr=a.wm_target_fpr, text_keys=a.wm_key)
    if a.timeline:
        from .inspect import timeline_png

        if item.modality == "video":
            report["timeline"] = str(timeline_png(report, a.timeline))
        else:
            _log(f"no timeline for {item.modality} input")
    if a.heatmap:
        from .inspect import heatmap_png

        if item.modality == "image":
            report["heatmap"] = str(heatmap_png(item.content, report, a.heatmap))
        else:
            _log(f"no heat map for {item.modality} input")
    if a.html:
        from .report import html_report

        report["html"] = str(html_report(report, item, a.html))
    from .types import _finite

    text = json.dumps(_finite(report), indent=2, allow_nan=False)
    if a.output:
        Path(a.output).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    """The whole chain from nothing: corpus -> detectors and their fusion -> bench -> a scan."""
    import numpy as np
    from PIL import Image

    from benchmarks.runner import markdown, run
    from generators.recipe import build

    from .corpus import Corpus
    from .registry import detectors as registry
    from .scan import exit_code, load_detectors, scan

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
    _log(f"[1/4] building corpus from {a.recipe} -> {out / 'corpus'}")
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
            _log(f"[2/4] {name}: already trained at {mdir}")
            continue
        _log(f"[2/4] training {name} ({i + 1}/{len(a.detectors)})")
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
    _log("[3/4] benchmarking on the held-out test split")
    t_bench = time.time()
    attacks = a.attack if a.attack is not None else \
        ["jpeg:quality=90", "jpeg:quality=75", "blur:sigma=1.0"]
    board = run(out / "corpus", model_dirs, out / "bench", progress=not a.quiet,
                attack_specs=attacks)
    stage("bench_s", t_bench, False)
    print(markdown(board))
    _log("[4/4] scanning a sample folder (test items, a full-size photo, broken files)")
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
    dets = load_detectors([], model_dirs)
    findings = list(scan([str(sample)], dets, progress=False))
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
            _publish(out)
    _log(f"quickstart finished in {time.time() - t_start:.0f} s (stages: {timing['total_s']:.0f} s"
         f"{', some re-used' if timing['reused'] else ''}); outputs in {out}")
    return 0


def _publish(out: Path) -> None:
    """Copy the run's evidence (leaderboard, ROC, GAN grid and quality, timing) into the repo."""
    root = checkout_root()
    if root is None:
        raise ConfigError("publishing results writes into a git checkout's benchmarks/results")
    dest = root / "benchmarks" / "results" / "quickstart"
    dest.mkdir(parents=True, exist_ok=True)
    gdir = out / "corpus" / "generators" / "0-dcgan"
    for src, name in ((out / "bench" / "leaderboard.md", "leaderboard.md"),
                      (out / "bench" / "leaderboard.json", "leaderboard.json"),
                      (out / "bench" / "roc.png", "roc.png"),
                      (gdir / "samples.png", "dcgan-samples.png"),
                      (gdir / "quality.json", "dcgan-quality.json"),
                      (out / "timing.json", "timing.json"),
                      (out / "scan.jsonl", "sample-scan.jsonl")):
        if src.exists():
            shutil.copy(src, dest / name)
    _log(f"published results to {dest}")


def _update_defaults(model_dirs: list[Path], names: list[str], recipe: str, corpus: Any) -> None:
    """Ship the trained models (a fusion by its members' names) as the image defaults, with a
    held-out sample of the test split beside the tests (detect.release, checkout only)."""
    from .release import Holdout, release
    from .resources import data_label

    test = corpus.split("test")
    picked = []
    for lab in (0, 1):
        picked += sorted((r for r in test.records if r.label == lab), key=lambda r: r.id)[:24]
    # the image part of the defaults; the face and text lists (other benchmarks) are kept
    release({m.name: m for m in model_dirs},
            defaults={"image": [n for n in names if n not in NAMED_ONLY],
                      "recipe": data_label(recipe), "corpus_hash": corpus.content_hash},
            holdout=Holdout("shipped-holdout", corpus, picked))


# the shipped models, primary first: the fusion of the three detectors after it; recon-vae
# ships too but only runs when named (weak on the quickstart corpus, 0.6 s per image)
QUICKSTART_DETECTORS = ("fusion", "cnn-resnet10t-slim", "spectrum-logreg", "npr-resnet10t-slim",
                        "recon-vae")
NAMED_ONLY = frozenset({"recon-vae"})


# -- parser ---------------------------------------------------------------------------------------
def _watermark_fpr_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--wm-target-fpr", type=float, default=None, metavar="FPR",
                   help="false-positive rate for watermark decisions, per file over all "
                   "payloads tried (default 1e-6)")
    s.add_argument("--wm-key", action="append", default=[], metavar="KEY.json",
                   help="text watermark key file to check text inputs against (repeat)")


def _user_payload(a: argparse.Namespace) -> tuple[int, ...] | None:
    from .watermark.image import parse_payload

    if a.bits is None and a.bytes is None and a.hex is None:
        return None
    return parse_payload(bits=a.bits, data=a.bytes, hex_=a.hex)


def cmd_watermark_embed(a: argparse.Namespace) -> int:
    from PIL import Image

    from .media import Limits, load
    from .watermark.image import CATALOG, catalog_payloads, embed

    item = load(a.input, Limits())
    if item.modality != "image":
        raise ConfigError(f"{a.input}: is {item.modality}, not an image (text watermarks are "
                          "embedded during generation: see `unmask watermark keygen`)")
    bits = _user_payload(a)
    scheme, order, pixels = a.scheme, a.channel_order, a.pixels
    if a.catalog:
        if bits is not None:
            raise ConfigError("give either --catalog or a payload (--bits/--bytes/--hex)")
        pl = catalog_payloads([a.catalog])[0]
        bits, scheme, order, pixels = pl.bits, pl.scheme, pl.channel_order, pl.pixels
    if bits is None:
        raise ConfigError(f"no payload: give --bits, --bytes, --hex or --catalog "
                          f"({', '.join(CATALOG)})")
    out = Path(a.output)
    if out.suffix.lower() in (".jpg", ".jpeg") and not a.allow_lossy:
        raise ConfigError(f"{out}: JPEG would damage the mark before anyone reads it; write "
                          "PNG (or pass --allow-lossy to measure exactly that)")
    marked = embed(item.content, bits, scheme, channel_order=order, pixels=pixels)
    Image.fromarray(marked).save(out)
    rec = {"schema": "unmask.watermark-embed/1", "input": item.path, "output": str(out),
           "scheme": scheme, "n_bits": len(bits), "bits": "".join(map(str, bits)),
           "channel_order": order, "pixels": pixels, "psnr_db": _psnr(item.content, marked)}
    print(json.dumps(rec))
    return 0


def _psnr(a: Any, b: Any) -> float | None:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else round(10 * np.log10(255.0 ** 2 / mse), 2)


def cmd_watermark_verify(a: argparse.Namespace) -> int:
    from .media import Limits, iter_paths, load
    from .types import _finite
    from .watermark import DEFAULT_TARGET_FPR
    from .watermark.checks import check_item, load_text_keys
    from .watermark.image import catalog_payloads, summarize, user_payloads

    text_keys = load_text_keys(a.wm_key)
    bits = _user_payload(a)
    payloads = user_payloads(bits, a.scheme or None, tuple(a.channel_order or ["bgr"]),
                             tuple(a.pixels or ["uint8"])) if bits is not None else None
    if a.catalog or payloads is None:
        payloads = catalog_payloads(a.catalog) + (payloads or [])
    fpr = a.target_fpr or DEFAULT_TARGET_FPR
    found = errors = 0
    for p in iter_paths(a.paths):
        rec: dict[str, Any] = {"schema": "unmask.watermark-verify/1", "path": str(p)}
        try:
            item = load(p, Limits())
            rec.update(sha256=item.sha256, modality=item.modality)
            if item.modality == "text" and not a.wm_key:
                raise ConfigError(f"{p}: text can only be checked against its key: pass "
                                  "--wm-key KEY.json")
            if item.modality not in ("image", "text"):
                raise ConfigError(f"{p}: no watermark check for {item.modality} input")
            results = check_item(item, target_fpr=fpr, payloads=payloads,
                                 text_keys=text_keys, decoder=a.decoder)
            summary = summarize(results)
            rec.update(status=summary["status"], found=summary["found"],
                       min_p_value=summary["min_p_value"], target_fpr=fpr,
                       results=[r.to_dict() for r in results], error=None)
            found += bool(summary["found"])
        except UnmaskError as e:
            rec.update(status="error", error=str(e))
            errors += 1
        print(json.dumps(_finite(rec), allow_nan=False), flush=True)
        if rec["status"] == "error" and not a.quiet:
            _log(f"error: {rec['error']}")
    return 1 if found else (2 if errors else 0)


def cmd_watermark_catalog(a: argparse.Namespace) -> int:
    from .watermark.image import CATALOG

    for pl in CATALOG.values():
        print(json.dumps(pl.describe()))
    return 0


def cmd_watermark_keygen(a: argparse.Namespace) -> int:
    """Write a text watermark key: a fresh secret, or a transformers config wrapped with its
    tokenizer. The key itself never goes to stdout; its fingerprint does."""
    from .watermark.text import TextWatermarkKey

    out = Path(a.out)
    if out.exists() and not a.force:
        raise ConfigError(f"{out}: exists; a key is a secret that text was marked with, so it is "
                          "never overwritten silently (--force)")
    params: dict[str, Any] = {}
    if a.from_transformers:
        src = Path(a.from_transformers)
        try:
            cfg = json.loads(src.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{src}: cannot read a JSON config ({e})") from e
        if isinstance(cfg, dict) and isinstance(cfg.get("watermarking_config"), dict):
            cfg = cfg["watermarking_config"]  # a generation_config.json
        if not isinstance(cfg, dict) or not ({"greenlist_ratio", "keys"} & set(cfg)):
            raise ConfigError(f"{src}: no KGW (greenlist_ratio) or SynthID (keys) watermarking "
                              "settings found")
        if a.scheme and a.scheme != ("kgw" if "greenlist_ratio" in cfg else "synthid"):
            raise ConfigError(f"{src}: holds a {'kgw' if 'greenlist_ratio' in cfg else 'synthid'}"
                              f" config, not {a.scheme}")
        key = TextWatermarkKey.from_transformers(cfg, a.tokenizer, vocab_size=a.vocab_size,
                                                 device=a.device, name=out.name)
    else:
        scheme = a.scheme or "kgw"
        if scheme == "kgw":
            for name, val in (("greenlist_ratio", a.gamma), ("bias", a.delta),
                              ("seeding_scheme", a.seeding_scheme),
                              ("context_width", a.context_width)):
                if val is not None:
                    params[name] = val
        elif a.ngram_len is not None:
            params["ngram_len"] = a.ngram_len
        key = TextWatermarkKey.new(scheme, a.tokenizer, vocab_size=a.vocab_size,
                                   depth=a.depth, seed=a.seed, name=out.name, device=a.device,
                                   **params)
    key.save(out)
    with contextlib.suppress(OSError):
        out.chmod(0o600)
    desc = {k: v for k, v in key.to_dict().items() if k not in ("hashing_key", "keys", "schema")}
    print(json.dumps({"schema": "unmask.watermark-keygen/1", "out": str(out),
                      "fingerprint": key.fingerprint, **desc}))
    if key.tokenizer is None:
        _log("note: no --tokenizer: verify will need one (the key records none)")
    return 0


def _payload_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--bits", help="payload as a 0/1 string")
    s.add_argument("--bytes", help="payload as UTF-8 text (e.g. StableDiffusionV1)")
    s.add_argument("--hex", help="payload as hex bytes")


def _watermark_parser(sub: Any) -> None:
    from .watermark.image import CATALOG, DECODERS, DEFAULT_DECODER, PIXELS, SCHEMES

    w = sub.add_parser("watermark", help="embed or verify invisible watermarks")
    wsub = w.add_subparsers(dest="wm_command", required=True, metavar="ACTION")

    s = wsub.add_parser("verify", help="check images (catalog or your payload) and texts "
                        "(with --wm-key); one JSON line per file; exit 1 if any is detected")
    s.add_argument("paths", nargs="+", help="files or folders")
    _payload_args(s)
    s.add_argument("--scheme", action="append", choices=SCHEMES,
                   help="scheme(s) your payload may use (default: dwtDct, dwtDctSvd, and "
                   "rivaGan for 32 bits)")
    s.add_argument("--channel-order", action="append", choices=["bgr", "rgb"],
                   help="also try an embedder that passed RGB as BGR (repeat; default bgr)")
    s.add_argument("--pixels", action="append", choices=PIXELS,
                   help="pixels your embedder handed invisible-watermark: uint8, or float "
                   "(0..255 floats, as diffusers' SDXL does) (repeat; default uint8)")
    s.add_argument("--catalog", action="append", choices=list(CATALOG),
                   help="check these public payloads (default: all, unless a payload is given)")
    s.add_argument("--decoder", choices=[*DECODERS, "fast"], default=DEFAULT_DECODER,
                   help="soft (default: each block weighted by its distance from the "
                   "quantiser boundary; the hard bits are reported beside it), hard "
                   "(bit-identical to invisible-watermark; 'fast' is its old name), or "
                   "reference (invisible-watermark itself)")
    s.add_argument("--target-fpr", type=float, default=None,
                   help="false-positive rate per file over all payloads tried (default 1e-6)")
    s.add_argument("--wm-key", action="append", default=[], metavar="KEY.json",
                   help="text watermark key file (repeat)")
    s.set_defaults(func=cmd_watermark_verify)

    s = wsub.add_parser("embed", help="embed a payload into an image (writes PNG)")
    s.add_argument("input")
    s.add_argument("output")
    _payload_args(s)
    s.add_argument("--catalog", choices=list(CATALOG),
                   help="embed a public payload the way its generator does")
    s.add_argument("--scheme", choices=SCHEMES, default="dwtDct")
    s.add_argument("--channel-order", choices=["bgr", "rgb"], default="bgr")
    s.add_argument("--pixels", choices=PIXELS, default="uint8",
                   help="hand invisible-watermark 8-bit or float pixels (--catalog sets it)")
    s.add_argument("--allow-lossy", action="store_true", help="allow a JPEG output")
    s.set_defaults(func=cmd_watermark_embed)

    s = wsub.add_parser("catalog", help="list the public payloads verify checks by default")
    s.set_defaults(func=cmd_watermark_catalog)

    s = wsub.add_parser("keygen", help="write a text watermark key file (KGW or SynthID-Text) "
                        "for transformers' generate and for verify --wm-key")
    s.add_argument("--out", required=True, metavar="KEY.json")
    s.add_argument("--scheme", choices=["kgw", "synthid"], help="default kgw")
    s.add_argument("--tokenizer", metavar="PATH_OR_ID",
                   help="the generating model's tokenizer (recorded with its fingerprint)")
    s.add_argument("--vocab-size", type=int, help="the model's config.vocab_size "
                   "(default: the tokenizer's length)")
    s.add_argument("--from-transformers", metavar="CONFIG.json",
                   help="wrap an existing WatermarkingConfig / SynthIDTextWatermarkingConfig "
                   "dict or a generation_config.json instead of drawing a new secret")
    s.add_argument("--gamma", type=float, help="KGW green-list fraction (default 0.25)")
    s.add_argument("--delta", type=float, help="KGW logit bias (default 2.0)")
    s.add_argument("--seeding-scheme", choices=["lefthash", "selfhash"])
    s.add_argument("--context-width", type=int)
    s.add_argument("--depth", type=int, default=30, help="SynthID layers (keys)")
    s.add_argument("--ngram-len", type=int, help="SynthID n-gram length (default 5)")
    s.add_argument("--device", default="cpu", help="device generate runs on (KGW green lists "
                   "differ between CPU and CUDA)")
    s.add_argument("--seed", type=int, help="reproducible key (tests only: a key must be secret)")
    s.add_argument("--force", action="store_true", help="overwrite an existing key file")
    s.set_defaults(func=cmd_watermark_keygen)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unmask", description="Detect generated media; verify "
                                "watermarks and provenance. Results on stdout, logs on stderr.")
    p.add_argument("--version", action="version", version=f"unmask {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list registered detectors, generators, attacks, shipped "
                       "models or shipped recipes")
    s.add_argument("kind", choices=["detectors", "generators", "attacks", "models", "recipes"])
    s.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'cnn-*'")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("generate", help="build a labelled corpus from a recipe")
    s.add_argument("recipe")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    s.add_argument("--evidence", metavar="DIR", default=None,
                   help="also copy each generator's sample grid + quality figure to DIR/<name>/")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("train-generator", help="train a generator on real patches or human "
                       "text (resumable)")
    s.add_argument("generator", help="registry name, e.g. dcgan, vae, diffusion-ddim, gpt2-small")
    s.add_argument("--out", required=True, help="folder: checkpoints, model/, samples.png")
    s.add_argument("--source", default=None,
                   help="images: skimage, sklearn, opencv-doc, photos (default), fashion-mnist "
                   "or folder:PATH; text: pydoc (default), docstrings, jargon or folder:PATH, "
                   "comma-separated")
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--patches", type=int, default=16000, help="training patches to cut")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    s.add_argument("--limit", type=int, default=None,
                   help="use at most this many source images (text: documents per source)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (JSON value), e.g. steps=3000")
    s.set_defaults(func=cmd_train_generator)

    s = sub.add_parser("train", help="train and calibrate a detector on a corpus")
    s.add_argument("detector", help="registry name, e.g. spectrum-logreg")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="model folder to write")
    s.add_argument("--target-fpr", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (JSON value)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("bench", help="score models on a corpus split and write a leaderboard")
    s.add_argument("--corpus", required=True)
    s.add_argument("--model", action="append", required=True, help="model folder (repeat)")
    s.add_argument("--out", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--attack", action="append", default=[],
                   help="also score after an attack, e.g. jpeg:quality=75 (repeat)")
    s.set_defaults(func=cmd_bench)

    for name, helptext in (("scan", "scan files and folders; one JSON Lines record per input"),
                           ("inspect", "every signal for one file, as JSON")):
        s = sub.add_parser(name, help=helptext)
        if name == "scan":
            s.add_argument("paths", nargs="*", help="files, folders, or - for stdin")
            s.add_argument("--from-list", metavar="FILE",
                           help="also scan the paths listed in FILE, one per line (- = stdin)")
            s.add_argument("--out", "--output", "-o", dest="output", metavar="FILE",
                           help="append records to FILE (one whole line per write) instead "
                           "of stdout")
            s.add_argument("--format", choices=["jsonl", "csv", "text"], default="jsonl",
                           help="record format (default jsonl)")
            s.add_argument("--resume", action="store_true",
                           help="skip inputs that already have a record in --out (same path "
                           "and sha256); a torn last line is dropped first")
            s.add_argument("--exit-zero", action="store_true",
                           help="exit 0 whatever was found (records still say it)")
            s.add_argument("--workers", type=int, default=1, metavar="N",
                           help="scan in N processes, each with its own models (default 1)")
            s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                           help="give up on an input after this long (an error record)")
            s.add_argument("--engine", choices=["local", "ray"], default="local",
                           help="ray: the same scan on Ray actors (--workers of them)")
            s.add_argument("--ray-address", metavar="ADDR", default=None,
                           help="with --engine ray: a cluster (ray://host:10001); default: a "
                           "local instance")
            s.add_argument("--fail-on", default="synthetic", metavar="WHAT",
                           help="what makes the exit code 1: comma-separated synthetic, "
                           "uncertain, watermarked; or never (default: synthetic)")
            s.add_argument("--no-watermarks", action="store_true",
                           help="skip the image watermark catalog check")
            s.add_argument("--max-bytes", type=int, default=256 * 2**20)
            s.add_argument("--max-pixels", type=int, default=64_000_000)
            s.add_argument("--include-hidden", action="store_true",
                           help="also scan hidden files and folders inside given folders")
        else:
            s.add_argument("file")
            s.add_argument("--output", "-o", help="also write the JSON report here")
            s.add_argument("--heatmap", metavar="PNG",
                           help="write the per-patch heat map of every detector as a PNG")
            s.add_argument("--timeline", metavar="PNG",
                           help="video: write the per-frame score timeline as a PNG")
            s.add_argument("--html", metavar="FILE",
                           help="write a self-contained HTML report (evidence pictures "
                           "embedded)")
            s.add_argument("--json", dest="output", metavar="FILE",
                           help="write the JSON report (schema-versioned) to FILE")
        s.add_argument("--detector", "-d", action="append", default=[],
                       help="shipped model by registry name (repeat); default: all shipped")
        s.add_argument("--model", "-m", action="append", default=[],
                       help="saved model folder (repeat)")
        s.add_argument("--target-fpr", type=float, default=None,
                       help="re-derive thresholds for this FPR from the saved calibration scores")
        s.add_argument("--scorer", metavar="PATH_OR_ID",
                       help="score text with this causal LM (folder or hub id) instead of the "
                       "shipped one; zero-shot thresholds are re-derived on shipped human texts")
        s.add_argument("--performer", metavar="PATH_OR_ID",
                       help="with --scorer: the second LM for binoculars (same tokenizer)")
        s.add_argument("--text-errors", choices=["strict", "replace"], default="strict",
                       help="invalid UTF-8: an error record (strict) or decode with U+FFFD "
                       "and record how many bytes were replaced (replace)")
        _video_args(s)
        _watermark_fpr_args(s)
        s.set_defaults(func=cmd_scan if name == "scan" else cmd_inspect)

    _watermark_parser(sub)

    s = sub.add_parser("serve", help="the scan as an HTTP API: POST /scan (file or JSON text)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-bytes", type=int, default=64 * 2**20,
                   help="largest upload accepted (default 64 MiB; larger: 413)")
    s.add_argument("--max-pixels", type=int, default=64_000_000)
    s.add_argument("--detector", "-d", action="append", default=[])
    s.add_argument("--model", "-m", action="append", default=[])
    s.add_argument("--target-fpr", type=float, default=None)
    s.add_argument("--no-watermarks", action="store_true")
    s.set_defaults(func=cmd_serve, scorer=None, performer=None, text_errors="strict",
                   max_duration=3600.0, max_frames=100_000, frames=16, frame_every=None)

    s = sub.add_parser("quickstart", help="the whole chain: corpus, training, bench, scan")
    s.add_argument("--out", default="runs/quickstart")
    s.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    s.add_argument("--detectors", nargs="+", default=list(QUICKSTART_DETECTORS),
                   help="detectors to train (a fusion fuses the others); the first decides "
                   "scan verdicts")
    s.add_argument("--target-fpr", type=float, default=0.01)
    s.add_argument("--attack", action="append", default=None,
                   help="bench conditions besides clean (default: jpeg q90, jpeg q75, blur 1.0)")
    s.add_argument("--retrain", action="store_true", help="retrain models already in --out")
    s.add_argument("--update-defaults", action="store_true",
                   help="copy the trained models into the package as the shipped defaults")
    s.add_argument("--publish-results", action="store_true",
                   help="copy leaderboard, ROC, DCGAN grid and timing to benchmarks/results/")
    s.set_defaults(func=cmd_quickstart)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # also silences bars deep inside training loops
    try:
        return a.func(a)
    except UnmaskError as e:
        if a.debug:
            raise
        print(f"unmask: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unmask: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
