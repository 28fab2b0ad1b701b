"""The wild image corpus (recipe kind ``wild``): real photographs at native resolution and
aligned fakes, so a detector learns decoder traces and nothing else.

Every real photograph (split by photograph: train / calib / test never share one) gives
``views`` views (a ``[[real]]`` entry may set its own). A view is a square of side S (from
``sizes``) cut at a random place, either at native resolution or from a region ``1/r`` times
larger downscaled by r (``downscale``, with a kernel drawn from ``kernels``); photos smaller
than S are first upscaled. Its fake twin is the same view through one of the recipe's
autoencoders (``generators.image.autoencoder``), cycling through them view by view. Then both
go through the same processing, drawn once per view: with probability ``resize_prob`` a
resize by a factor in ``resize`` (with a kernel from ``kernels``; never below ``min_side``
pixels), with probability ``sharpen_prob`` an unsharp mask (``sharpen`` percent, radius in
``sharpen_radius``: so the crispness of a GAN's output is no label either), then JPEG at a quality
in ``jpeg_quality`` with probability ``jpeg_prob``. Format,
size, content and processing carry no label; only the decoder's traces do.

A ``[[synthetic]]`` entry may also name a pretrained generator that reconstructs images and
learns nothing here (``realesrgan-x4``: a photo downscaled by 4 and super-resolved back by a GAN;
``waifu2x-photo``: downscaled by 2 and super-resolved by a transposed convolution).
``sizes = [...]`` limits an entry to views of those sides (the others cycle through the rest),
so a slow generator makes fewer, smaller fakes.

``match_lowpass = SIGMA`` (in ``[image]``) replaces each fake's low frequencies (a Gaussian blur
of SIGMA px) by its real twin's, before the processing: an autoencoder trained here for minutes
shifts colours and tone, which would teach a detector a shortcut no real generator shares; with
it, the pair differs only in the detail the decoder drew.

``holdout = true`` on a ``[[synthetic]]`` entry keeps that decoder out of train and calib: its
fakes exist only in the test split, paired with test photos (the honest proxy for a generator
nobody trained on). The autoencoders learn on random ``size``-pixel crops of the train photos
only; each records its reconstruction quality (PSNR on calib photos against an untrained twin),
so one that learned nothing is caught.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.registry import generators
from detect.io.corpus import SPLITS, Corpus, CorpusWriter

KERNELS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}
DEFAULTS: dict[str, Any] = {"sizes": [192, 224, 256], "views": 8, "downscale": [0.25, 1.0],
                            "native_prob": 0.3, "kernels": ["bilinear", "bicubic", "lanczos",
                                                            "box"],
                            "jpeg_prob": 0.6, "jpeg_quality": [60, 100],
                            "resize_prob": 0.0, "resize": [0.5, 0.9], "min_side": 96,
                            "sharpen_prob": 0.0, "sharpen": [40, 160], "sharpen_radius": [0.6, 2.0],
                            "match_lowpass": 0.0}


def check(recipe: dict[str, Any], where: str) -> None:
    img = {**DEFAULTS, **recipe.get("image", {})}
    if any(int(s) % 8 or int(s) < 32 for s in img["sizes"]):
        raise ConfigError(f"{where}: [image] sizes must be multiples of 8, at least 32")
    if not 0 < float(img["downscale"][0]) <= float(img["downscale"][1]) <= 1:
        raise ConfigError(f"{where}: [image] downscale must be [low, high] within (0, 1]")
    bad = set(img["kernels"]) - set(KERNELS)
    if bad:
        raise ConfigError(f"{where}: [image] unknown kernels {sorted(bad)} ({', '.join(KERNELS)})")
    if not 0 < float(img["resize"][0]) <= float(img["resize"][1]) <= 1:
        raise ConfigError(f"{where}: [image] resize must be [low, high] within (0, 1]")
    if not (0 <= float(img["sharpen"][0]) <= float(img["sharpen"][1])
            and 0 < float(img["sharpen_radius"][0]) <= float(img["sharpen_radius"][1])):
        raise ConfigError(f"{where}: [image] sharpen (percent) and sharpen_radius (px) must be "
                          "[low, high] with 0 <= low <= high (radius > 0)")
    if float(img["match_lowpass"]) < 0:
        raise ConfigError(f"{where}: [image] match_lowpass must be a Gaussian sigma in pixels "
                          ">= 0 (0: off)")
    lo, hi = (int(q) for q in img["jpeg_quality"])
    if not 1 <= lo <= hi <= 100:
        raise ConfigError(f"{where}: [image] jpeg_quality must be [low, high] within 1..100")
    for r in recipe["real"]:
        if "source" not in r:
            raise ConfigError(f"{where}: every [[real]] needs a source")
    entries = recipe["synthetic"]
    for s in entries:
        if "generator" not in s:
            raise ConfigError(f"{where}: every [[synthetic]] needs a generator")
        cls = generators.get_class(s["generator"])
        if not getattr(cls, "needs_images", False):
            raise ConfigError(f"{where}: generator {s['generator']!r} does not reconstruct "
                              "images; a wild recipe pairs each photo with its reconstruction")
        if "sizes" in s and not set(map(int, s["sizes"])) & set(map(int, img["sizes"])):
            raise ConfigError(f"{where}: generator {s['generator']!r}: sizes {s['sizes']} "
                              f"share no side with [image] sizes {img['sizes']}")
    if all(s.get("holdout") for s in entries):
        raise ConfigError(f"{where}: every decoder is held out; training would see no fakes")


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    d = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(d[:8], "big"))


def _resize(arr: np.ndarray, w: int, h: int, kernel: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(arr).resize((w, h), KERNELS[kernel]))


def make_view(photo: np.ndarray, rng: np.random.Generator, img: dict[str, Any]
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """One square view of a photo and how it was made (box, scale, kernel)."""
    size = int(rng.choice([int(s) for s in img["sizes"]]))
    kernel = str(rng.choice(img["kernels"]))
    h, w = photo.shape[:2]
    up = None
    if min(h, w) < size:  # a small photo: upscaled once so its short side is the view
        up = size / min(h, w)
        photo = _resize(photo, max(size, round(w * up)), max(size, round(h * up)), kernel)
        h, w = photo.shape[:2]
        scale = 1.0
    elif rng.random() < float(img["native_prob"]):
        scale = 1.0
    else:  # downscaled: a region up to min(h, w) wide, reduced to the view
        lo = max(float(img["downscale"][0]), size / min(h, w))
        hi = float(img["downscale"][1])
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(max(lo, hi)))))
    side = min(min(h, w), round(size / scale))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    view = photo[y:y + side, x:x + side]
    if side != size:
        view = _resize(np.ascontiguousarray(view), size, size, kernel)
    return np.ascontiguousarray(view), {"box": [x, y, side, side], "size": size,
                                        "scale": round(up if up else scale, 4),
                                        "kernel": kernel if (side != size or up) else None}


def draw_processing(rng: np.random.Generator, img: dict[str, Any], size: int
                    ) -> list[dict[str, Any]]:
    """The processing steps of one view (drawn once; its real and fake both get them)."""
    steps: list[dict[str, Any]] = []
    if float(img["resize_prob"]) > 0 and rng.random() < float(img["resize_prob"]):
        lo = max(float(img["resize"][0]), int(img["min_side"]) / size)
        hi = float(img["resize"][1])
        if lo < hi:
            side = int(round(size * rng.uniform(lo, hi)))
            steps.append({"resize": side, "kernel": str(rng.choice(img["kernels"]))})
    if float(img["sharpen_prob"]) > 0 and rng.random() < float(img["sharpen_prob"]):
        steps.append({"sharpen": int(rng.integers(int(img["sharpen"][0]),
                                                  int(img["sharpen"][1]) + 1)),
                      "radius": round(float(rng.uniform(*map(float, img["sharpen_radius"]))), 2)})
    if rng.random() < float(img["jpeg_prob"]):
        lo_q, hi_q = int(img["jpeg_quality"][0]), int(img["jpeg_quality"][1])
        steps.append({"jpeg": int(rng.integers(lo_q, hi_q + 1))})
    return steps


def match_lowpass(fake: np.ndarray, real: np.ndarray, sigma: float) -> np.ndarray:
    """``fake`` with its low frequencies (a Gaussian blur of ``sigma`` px) replaced by those of
    ``real`` (its twin, cut to the fake's size): colour, tone and shading come from the photo,
    only the detail the decoder drew (its traces) from the fake."""
    from scipy.ndimage import gaussian_filter

    h, w = fake.shape[:2]
    f = fake.astype(np.float32)
    r = real[:h, :w].astype(np.float32)
    s = (float(sigma), float(sigma), 0.0)
    out = f - gaussian_filter(f, s, mode="reflect") + gaussian_filter(r, s, mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def process(pixels: np.ndarray, steps: list[dict[str, Any]]) -> np.ndarray:
    """Apply ``draw_processing``'s steps (the same for a view's real and fake)."""
    for st in steps:
        if "resize" in st:
            pixels = _resize(np.ascontiguousarray(pixels), st["resize"], st["resize"],
                             st["kernel"])
        elif "sharpen" in st:
            from PIL import Image, ImageFilter

            pixels = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).filter(
                ImageFilter.UnsharpMask(float(st["radius"]), int(st["sharpen"]), 0)))
        elif st.get("jpeg"):
            from detect.attacks import jpeg

            pixels = jpeg(pixels, int(st["jpeg"]))
    return pixels


def _crops(photo_list: list[Any], n: int, size: int, seed: int) -> np.ndarray:
    out = []
    for i in range(n):
        rng = _rng(seed, "crop", i)
        p = photo_list[i % len(photo_list)].pixels
        h, w = p.shape[:2]
        if min(h, w) < size:
            continue
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        out.append(p[y:y + size, x:x + size])
    return np.stack(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def decoder_name(gen: Any) -> str:
    """What a corpus calls a generator's fakes: an autoencoder's decoder, else its name."""
    return str(getattr(gen, "decoder", gen.name))


def trained_autoencoder(entry: dict[str, Any], gdir: Path, train_photos: list[Any],
                        check_photos: list[Any], seed: int, progress: bool) -> Any:
    """The entry's autoencoder, trained in ``gdir`` (resuming) on train-photo crops, with its
    reconstruction quality against an untrained twin in ``gdir/quality.json``."""
    from generators.base import load_generator

    if (gdir / "model" / "config.json").exists():
        gen = load_generator(gdir / "model")
    elif not generators.get_class(entry["generator"]).trainable:  # pretrained: nothing to fit
        gen = generators.create(entry["generator"], **entry.get("params", {}))
        gen.save(gdir / "model")
    else:
        gen = generators.create(entry["generator"], **{"seed": seed, **entry.get("params", {})})
        pool = _crops(train_photos, int(entry.get("train_crops", 4000)), gen.size, seed)
        gen.fit(pool, workdir=gdir, progress=progress)
        gen.save(gdir / "model")
    if not (gdir / "quality.json").exists():
        probe = list(_crops(check_photos, 16 if not gen.trainable else 64, 128, seed + 7))
        recon = [gen.reconstruct(c) for c in probe]
        rep = {"generator": gen.name, "decoder": decoder_name(gen),
               "checkpoint_sha256": gen.checkpoint_sha256_,
               "psnr": round(float(np.mean([_psnr(c, r) for c, r in zip(probe, recon,
                                                                              strict=True)])), 2),
               "n": len(probe)}
        if gen.trainable:
            untrained = gen.untrained()
            rep["psnr_untrained"] = round(float(np.mean([_psnr(c, untrained.reconstruct(c))
                                                         for c in probe])), 2)
            rep["learned"] = rep["psnr"] > rep["psnr_untrained"] + 3.0
        else:
            rep["pretrained"] = True
        (gdir / "quality.json").write_text(json.dumps(rep, indent=2) + "\n")
        from PIL import Image

        pair = np.concatenate([np.concatenate(probe[:4], 1),
                               np.concatenate(recon[:4], 1)], 0)
        Image.fromarray(pair).save(gdir / "samples.png")
    return gen


def build(recipe: dict[str, Any], recipe_path: str | Path, out: str | Path, *,
          seed: int | None = None, progress: bool = True) -> Corpus:
    """Write the wild corpus of a checked recipe into ``out`` (resuming what is there)."""
    from tqdm.auto import tqdm

    from detect.core.types import Provenance, Sample
    from generators.sources import assign_splits, photos

    if seed is not None:
        recipe["seed"] = seed
    seed = int(recipe["seed"])
    img = {**DEFAULTS, **recipe.get("image", {})}
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    out = Path(out)
    writer = CorpusWriter(out, name=recipe["name"], recipe=recipe, seed=seed,
                          image_format="png")
    plist, n_views = [], []
    for r in recipe["real"]:  # a source may give each photo its own number of views
        got = photos(r["source"], limit=r.get("limit"))
        plist += got
        n_views += [int(r.get("views", img["views"]))] * len(got)
    if len(plist) < 3:
        raise ConfigError(f"{recipe_path}: {len(plist)} photos; need >= 3 (one per split)")
    split_of = assign_splits([p.name for p in plist], fractions, seed)
    by_split = {s: [p for p in plist if split_of[p.name] == s] for s in SPLITS}
    entries = recipe["synthetic"]
    gens, extra = [], {"generators": {}, "photo_splits": split_of,
                       "held_out": [e["generator"] for e in entries if e.get("holdout")]}
    for si, e in enumerate(entries):
        gdir = out / "generators" / f"{si}-{e['generator']}"
        gen = trained_autoencoder(e, gdir, by_split["train"], by_split["calib"], seed + si,
                                  progress)
        gens.append(gen)
        extra["generators"][f"{si}-{e['generator']}"] = {
            "name": e["generator"], "family": gen.family, "decoder": decoder_name(gen),
            "checkpoint_sha256": gen.checkpoint_sha256_, "params": gen.get_params(),
            "held_out": bool(e.get("holdout")),
            "quality": json.loads((gdir / "quality.json").read_text())}
    seen = [i for i, e in enumerate(entries) if not e.get("holdout")]
    bar = tqdm(total=sum(n_views), desc="wild views", file=sys.stderr, disable=not progress,
               leave=False)
    for pi, photo in enumerate(plist):
        split = split_of[photo.name]
        pool = list(range(len(entries))) if split == "test" else seen
        for v in range(n_views[pi]):
            key = f"{pi}:{v}"
            bar.update(1)
            if writer.has(f"real:{key}") and writer.has(f"synthetic:{key}"):
                continue
            rng = _rng(seed, photo.name, v)
            view, how = make_view(photo.pixels, rng, img)
            post = draw_processing(rng, img, view.shape[0])
            fits = [i for i in pool if int(view.shape[0]) in
                    {int(z) for z in entries[i].get("sizes", img["sizes"])}] or pool
            si = fits[(pi + v) % len(fits)]
            real = Sample(process(view, post), "image", 0,
                          Provenance(kind="real", source=photo.name, seed=seed, index=v,
                                     params=how, transforms=post), group=photo.name)
            fake = gens[si].sample([v], seed, images={v: view})[0]
            if float(img["match_lowpass"]) > 0:
                fake.content = match_lowpass(fake.content, view, float(img["match_lowpass"]))
            fake.content = process(fake.content, post)
            fake.provenance.transforms = [{"view": how}, *post]
            fake.provenance.source = photo.name
            fake.group = photo.name
            if not writer.has(f"real:{key}"):
                writer.add(real, split, f"real:{key}")
            if not writer.has(f"synthetic:{key}"):
                writer.add(fake, split, f"synthetic:{key}")
    bar.close()
    return writer.close(extra)


def publish_evidence(corpus: Corpus, d: Path) -> Path:
    """Each autoencoder's reconstruction quality and sample pairs (originals above,
    reconstructions below), and a summary table, in ``d``."""
    import shutil

    rows = ["| autoencoder | decoder | held out | PSNR | PSNR untrained | learned | samples |",
            "|---|---|---|---|---|---|---|"]
    for key, g in corpus.header.get("generators", {}).items():
        src = corpus.root / "generators" / key
        if (src / "samples.png").exists():
            shutil.copy(src / "samples.png", d / f"{key}-samples.png")
        q = g.get("quality") or {}
        rows.append(f"| {g['name']} | {g.get('decoder')} | {g.get('held_out')} | "
                    f"{q.get('psnr')} | {q.get('psnr_untrained')} | {q.get('learned')} | "
                    f"![{key}]({key}-samples.png) |")
    (d / "README.md").write_text(f"# Autoencoders of corpus `{corpus.header['name']}`\n\n"
                                 + "\n".join(rows) + "\n")
    return d
