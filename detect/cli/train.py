"""``unmask generate``, ``train-generator``, ``train`` and ``bench``: corpora, generators,
detectors and leaderboards. Generators and benchmarks are imported inside the handlers."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from detect.cli._common import _log, _parse_sets


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

    from detect.core.registry import generators
    from generators.recipe import report_generator
    from generators.sources import photo_patches, photos

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
    from detect.core.registry import generators
    from generators.text.sources import documents, split_documents

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
    from detect.core.registry import detectors
    from detect.io.corpus import Corpus

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


def register(sub: Any) -> None:
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
