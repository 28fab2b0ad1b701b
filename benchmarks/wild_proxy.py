"""The proxy for images in the wild: held-out photographs through held-out decoders, at 256 and
512 px, clean, after JPEG 75 and after a 0.5 resize.

    python benchmarks/wild_proxy.py --corpus runs/wild --model DIR [--model DIR ...]
                                    [--views 3] [--decoder NAME ...] [--out FOLDER] [--threads N]

Reads a wild corpus (``datasets/recipes/wild.toml``): its test-split photographs (never seen
by the autoencoders or by any detector trained on the corpus) and its autoencoders, those held
out of training (``holdout = true``) and those seen. Every test photo gives ``views`` native-
resolution squares per size (photos smaller than the size are upscaled, both classes alike);
each view's fakes are its reconstructions by every autoencoder; each condition (clean, JPEG 75,
resize 0.5 with bicubic) is applied to the real view and its fakes alike. Reported per model,
size, condition and decoder: AUROC, TPR at the model's own calibrated threshold, and the
realised FPR on the real views at that threshold, with exact 95% intervals for the rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.metrics import auroc, roc
from benchmarks.results import write_results
from benchmarks.wild import rate as _rate

SIZES = (256, 512)
CONDITIONS = ("clean", "jpeg75", "resize0.5")


def condition(pixels: np.ndarray, name: str) -> np.ndarray:
    from detect.attacks import jpeg

    if name == "clean":
        return pixels
    if name == "jpeg75":
        return jpeg(pixels, 75)
    from PIL import Image

    h, w = pixels.shape[:2]
    return np.asarray(Image.fromarray(pixels).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def proxy_set(corpus: Any, views: int, decoders: list[str] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """(items, decoder -> held out): every test view, real and reconstructed (by every corpus
    generator, or those whose decoder is in ``decoders``), per condition."""
    from generators.base import load_generator
    from generators.image.wild import _rng, make_view
    from generators.sources import photos

    header = corpus.header
    split_of = header["photo_splits"]
    test = [p for r in header["recipe"]["real"] for p in photos(r["source"], r.get("limit"))
            if split_of.get(p.name) == "test"]
    gens, held = {}, {}
    for key, g in header["generators"].items():
        if decoders and g["decoder"] not in decoders:
            continue
        gens[g["decoder"]] = load_generator(corpus.root / "generators" / key / "model")
        held[g["decoder"]] = bool(g["held_out"])
    from tqdm.auto import tqdm

    out = []
    for photo in tqdm(test, desc="proxy views", unit="photo", file=sys.stderr):
        for size in SIZES:
            for v in range(views):
                rng = _rng(int(header["seed"]), "proxy", photo.name, size, v)
                view, _ = make_view(photo.pixels, rng, {"sizes": [size], "kernels": ["bicubic"],
                                                        "native_prob": 1.0,
                                                        "downscale": [1.0, 1.0]})
                fakes = {d: g.reconstruct(view) for d, g in gens.items()}
                for cond in CONDITIONS:
                    base = {"photo": photo.name, "size": size, "view": v, "condition": cond}
                    out.append({**base, "label": 0, "decoder": None,
                                "pixels": condition(view, cond)})
                    out += [{**base, "label": 1, "decoder": d, "pixels": condition(f, cond)}
                            for d, f in fakes.items()]
    return out, held


def evaluate(items: list[dict[str, Any]], scores: np.ndarray, threshold: float,
             held: dict[str, bool]) -> list[dict[str, Any]]:
    rows = []
    for size in SIZES:
        for cond in CONDITIONS:
            sel = [i for i, it in enumerate(items) if it["size"] == size
                   and it["condition"] == cond]
            reals = [i for i in sel if items[i]["label"] == 0]
            fp = int((scores[reals] > threshold).sum())
            for dec in sorted(held, key=lambda d: (held[d], d)):
                fakes = [i for i in sel if items[i]["decoder"] == dec]
                idx = reals + fakes
                labels = np.array([items[i]["label"] for i in idx])
                rows.append({"size": size, "condition": cond, "decoder": dec,
                             "held_out": held[dec],
                             "auroc": round(auroc(labels, scores[idx]), 4),
                             "tpr_at_threshold": _rate(int((scores[fakes] > threshold).sum()),
                                                       len(fakes)),
                             "fpr_at_threshold": _rate(fp, len(reals))})
    return rows


def _source(photo: str) -> str:
    return "face cut-outs (nba-headshots)" if photo.startswith("nba-headshots:") \
        else "camera photos"


def fpr_by_source(items: list[dict[str, Any]], scores: np.ndarray, threshold: float
                  ) -> list[dict[str, Any]]:
    """Realised FPR per size, condition and kind of real photo (the small face cut-outs are
    upscaled to the view; the camera photos are cut at native resolution)."""
    rows = []
    for size in SIZES:
        for cond in CONDITIONS:
            for src in sorted({_source(it["photo"]) for it in items}):
                idx = [i for i, it in enumerate(items) if it["label"] == 0
                       and it["size"] == size and it["condition"] == cond
                       and _source(it["photo"]) == src]
                rows.append({"size": size, "condition": cond, "source": src,
                             "fpr_at_threshold": _rate(int((scores[idx] > threshold).sum()),
                                                       len(idx))})
    return rows


def source_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["Realised FPR by kind of real photo:", "",
             "| size | condition | reals | realised FPR |", "|---|---|---|---|"]
    for r in rows:
        f = r["fpr_at_threshold"]
        lines.append(f"| {r['size']} | {r['condition']} | {r['source']} | "
                     f"{f['value']:.3f} ({f['k']}/{f['n']}) |")
    return "\n".join(lines) + "\n"


def markdown(name: str, rows: list[dict[str, Any]], n_photos: int, threshold: float) -> str:
    def rate(r: dict[str, Any]) -> str:
        return f"{r['value']:.3f} ({r['k']}/{r['n']})"

    lines = [f"## {name} (threshold {threshold:.4g} from its own calibration)", "",
             f"{n_photos} held-out photographs. Held-out decoders are marked *.", "",
             "| size | condition | decoder | AUROC | TPR at threshold | realised FPR |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        dec = f"{r['decoder']}{' *' if r['held_out'] else ''}"
        lines.append(f"| {r['size']} | {r['condition']} | {dec} | {r['auroc']:.3f} | "
                     f"{rate(r['tpr_at_threshold'])} | {rate(r['fpr_at_threshold'])} |")
    held = [r for r in rows if r["held_out"]]
    if held:
        lines += ["", f"Held-out decoders over all sizes and conditions: mean AUROC "
                  f"{np.mean([r['auroc'] for r in held]):.3f}, min "
                  f"{min(r['auroc'] for r in held):.3f}; "
                  f"mean TPR at threshold "
                  f"{np.mean([r['tpr_at_threshold']['value'] for r in held]):.3f}; worst realised "
                  f"FPR {max(r['fpr_at_threshold']['value'] for r in held):.3f}."]
    return "\n".join(lines) + "\n"


def roc_axis(ax: Any, title: str, fontsize: float | None = None) -> None:
    """Title and axes of an ROC panel (FPR on a log scale above 1%)."""
    ax.set_title(title, fontsize=fontsize)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("FPR")
    ax.set_ylabel("TPR")


def publish(out: str, data: dict[str, Any], md: list[str], fig: Any, started: float) -> None:
    """Write the results folder, print the tables, and each model's seconds per item."""
    fig.tight_layout()
    write_results(out, data, "\n".join(md), fig, started=started)
    print("\n".join(md))
    print(json.dumps({k: v["seconds_per_item"] for k, v in data["models"].items()}),
          file=sys.stderr)


def score_all(refs: list[str], items: list[dict[str, Any]]) -> dict[str, Any]:
    """{name: (detector, scores, seconds per item)}, a name taken twice given as ``name (ref)``;
    a fusion re-uses its members' scores."""
    from tqdm.auto import tqdm

    from detect.core.models import load_model
    from detect.image.fusion import weights_sha256

    done: dict[str, np.ndarray] = {}
    out = {}
    for ref in refs:
        det = load_model(ref)
        t0 = time.time()
        members = det.members() if callable(getattr(det, "combine", None)) else []
        keys = [weights_sha256(Path(m.model_dir_)) for m in members]
        if members and all(k in done for k in keys):
            scores = det.combine(np.stack([done[k] for k in keys], axis=1))
        else:
            chunks = [items[i:i + 32] for i in range(0, len(items), 32)]
            scores = np.concatenate([det.score([it["pixels"] for it in c]) for c in
                                     tqdm(chunks, desc=f"score {det.name}", file=sys.stderr)])
        if getattr(det, "model_dir_", None):
            done[weights_sha256(Path(det.model_dir_))] = scores
        key = det.name  # two models of one name (two trained lines): the second by its folder
        if key in out:
            key = f"{det.name} ({ref})"
        out[key] = (det, scores, (time.time() - t0) / len(items))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="a wild corpus folder")
    ap.add_argument("--model", action="append", required=True, help="a saved detector folder")
    ap.add_argument("--views", type=int, default=3, help="views per photo and size")
    ap.add_argument("--decoder", action="append", default=None,
                    help="only this decoder's fakes (repeatable; default: every generator of "
                         "the corpus; the pretrained ones have benchmarks/wild_pretrained.py)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "wild_proxy"))
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    started = time.time()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from detect.io.corpus import Corpus

    corpus = Corpus.open(a.corpus)
    items, held = proxy_set(corpus, a.views, a.decoder)
    if a.decoder and set(a.decoder) - set(held):
        raise SystemExit(f"wild_proxy: no decoder {sorted(set(a.decoder) - set(held))} in "
                         f"{a.corpus}")
    n_photos = len({it["photo"] for it in items})
    data: dict[str, Any] = {"schema": "unmask.bench.wild_proxy/1", "corpus": corpus.header["name"],
                            "content_hash": corpus.content_hash, "views": a.views,
                            "n_photos": n_photos, "n_items": len(items), "models": {}}
    md = ["# The wild proxy: held-out photos through held-out decoders", ""]
    fig_rows = None
    for name, (det, scores, spi) in score_all(a.model, items).items():
        thr = float(det.threshold_)
        rows = evaluate(items, scores, thr, held)
        data["models"][name] = {"folder": str(det.model_dir_), "threshold": thr,
                                "rows": rows,
                                "fpr_by_source": fpr_by_source(items, scores, thr),
                                "seconds_per_item": round(spi, 4)}
        md.append(markdown(name, rows, n_photos, thr))
        md.append(source_markdown(data["models"][name]["fpr_by_source"]))
        if fig_rows is None:
            fig_rows = (name, scores)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    name, scores = fig_rows
    for ax, size in zip(axes, SIZES, strict=True):
        for dec in sorted(held):
            for cond, style in zip(CONDITIONS, ("-", "--", ":"), strict=True):
                idx = [i for i, it in enumerate(items) if it["size"] == size
                       and it["condition"] == cond and it["decoder"] in (None, dec)]
                labels = np.array([items[i]["label"] for i in idx])
                fpr, tpr, _ = roc(labels, scores[idx])
                ax.plot(fpr, tpr, style, label=f"{dec}{'*' if held[dec] else ''} {cond}")
        roc_axis(ax, f"{name}, {size} px (* held out)")
    axes[1].legend(fontsize=6, loc="lower right")
    publish(a.out, data, md, fig, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
