"""Face corpus recipes (``modality = "face"``): real face crops, forgeries made from them, and
optionally video clips with forged stretches.

Every item is a crop from :func:`detect.face.find.crop_face` (the function a scan uses), cut at
``work_size`` and area-resized to ``size`` for both classes alike. Forgeries:

- ``method = "sbi"``: self-blended images, a face blended with a colour-, scale- and
  warp-transformed copy of itself (the boundary traces of a swap, without a second face);
- ``method = "swap"``: another face of the same split aligned on the landmarks, colour-matched
  and cloned in (Poisson or alpha blending);
- ``generator = NAME``: whole faces from a GAN / VAE / diffusion model of the image-generator
  registry, trained here on the train split's real crops.

Faces are split by picture (identity) first; a face's variants and the forgeries made from it
share its split. Methods or generators named in ``held_out`` go to the test split only. A
``[video]`` table adds clips (see :mod:`generators.faces.video`). Same recipe + seed, same
content hash; an interrupted build resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.types import Provenance, Sample
from detect.face.find import Face, FaceFinder, crop_face, grey_rgb
from detect.io.corpus import SPLITS, Corpus, CorpusWriter
from generators.image.base import sample_in_blocks
from generators.splits import fake_split
from generators.training import trained_generator

from .sources import RealFace, real_faces

FACE_DEFAULTS: dict[str, Any] = {
    "size": 32,  # crop side the detectors see
    # side forgeries are made at, before the shared resize to ``size``; at ``size`` itself the
    # blending traces survive (measured: MesoNet on unseen swaps 0.84 at 32 vs 0.62 at 64->32)
    "work_size": 32,
    "margin": 0.1,  # box growth on each side (crop_face)
    "finder": "auto",
    "format": "png",
    "jitter": 0.04,  # box shift/scale of the extra variants, as a fraction of the face size
    # "auto": grey crops for both classes when every real face is grey (LFW), so colour can
    # never tell a forgery from a real face; "grey" / "colour" force it.
    "colour": "auto",
}
#: a [[synthetic]] ``method`` -> its registered generator (generators/faces/methods.py)
METHODS = {"sbi": "sbi", "swap": "face-swap"}


def check(recipe: dict[str, Any], where: str) -> None:
    face = recipe["face"]
    unknown = sorted(set(face) - set(FACE_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: [face] has unknown field(s) {unknown} "
                          f"(known: {', '.join(FACE_DEFAULTS)})")
    cfg = {**FACE_DEFAULTS, **face}
    if cfg["work_size"] < cfg["size"]:
        raise ConfigError(f"{where}: [face] work_size must be >= size")
    for r in recipe["real"]:
        if "source" not in r:
            raise ConfigError(f"{where}: every [[real]] needs a source (lfw, photos, "
                              "folder:PATH)")
    from detect.core.registry import generators

    names = set()
    allowed = {"method", "generator", "name", "per_face", "count", "params", "blend"}
    for s in recipe["synthetic"]:
        extra = sorted(set(s) - allowed)
        if extra:
            raise ConfigError(f"{where}: [[synthetic]] has unknown field(s) {extra} (known: "
                              f"{', '.join(sorted(allowed))}; held_out goes before the "
                              "first table)")
        if ("method" in s) == ("generator" in s):
            raise ConfigError(f"{where}: every [[synthetic]] needs exactly one of method "
                              f"({', '.join(METHODS)}) or generator")
        if "method" in s and s["method"] not in METHODS:
            raise ConfigError(f"{where}: unknown method {s['method']!r} ({', '.join(METHODS)})")
        if "generator" in s:
            generators.entry(s["generator"])  # raises with close matches
            if getattr(generators.get_class(s["generator"]), "needs_faces", False):
                raise ConfigError(f"{where}: {s['generator']!r} forges given faces; name it as "
                                  f"a method ({', '.join(METHODS)}), not a generator")
            if "count" not in s:
                raise ConfigError(f"{where}: [[synthetic]] {s['generator']} needs a count")
        names.add(_entry_name(s))
    unknown_held = set(recipe.get("held_out", [])) - names
    if unknown_held:
        raise ConfigError(f"{where}: held_out names {sorted(unknown_held)}, not a [[synthetic]] "
                          f"entry ({', '.join(sorted(names))})")
    if names and names <= set(recipe.get("held_out", [])):
        raise ConfigError(f"{where}: held_out holds out every forgery; training would see none")
    if "video" in recipe:
        from .video import check as check_video

        check_video(recipe["video"], where)


def _entry_name(s: dict[str, Any]) -> str:
    return str(s.get("name", s.get("method") or s.get("generator")))


def _jittered(face: Face, rng: np.random.Generator, amount: float) -> Face:
    x0, y0, x1, y1 = face.box
    s = face.size
    dx, dy = rng.uniform(-amount, amount, 2) * s
    k = 1 + rng.uniform(-amount, amount)
    cx, cy, hw, hh = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, (x1 - x0) * k / 2, (y1 - y0) * k / 2
    lm = None if face.landmarks is None else face.landmarks + np.array([dx, dy])
    return Face((cx - hw, cy - hh, cx + hw, cy + hh), face.score, face.backend, lm)


def _work_crop(rf: RealFace, cfg: dict[str, Any], rng: np.random.Generator | None):
    face = rf.face if rng is None else _jittered(rf.face, rng, float(cfg["jitter"]))
    return crop_face(rf.image, face, int(cfg["work_size"]), margin=float(cfg["margin"]))


def _final(pixels: np.ndarray, size: int, grey: bool) -> np.ndarray:
    """The one resize (and colour rule) every item of both classes goes through."""
    import cv2

    if pixels.shape[0] != size:
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
    if grey:
        pixels = grey_rgb(pixels)
    return np.ascontiguousarray(pixels)


def is_grey(img: np.ndarray) -> bool:
    a = img.astype(np.int16)
    return int(np.abs(a[..., 0] - a[..., 1]).max()) <= 2 and \
        int(np.abs(a[..., 1] - a[..., 2]).max()) <= 2


def _crop_params(crop: Any) -> dict[str, Any]:
    r = crop.record
    return {"face": r["face"], "angle": r["angle"], "margin": r["margin"],
            "work_size": r["size"], "matrix": r["matrix"]}


def build(recipe: dict[str, Any], recipe_path: str | Path, out: str | Path, *,
                seed: int | None = None, progress: bool = True) -> Corpus:
    """Write the face corpus of a checked recipe into ``out`` (resuming what is there)."""
    from tqdm.auto import tqdm

    from detect.core.registry import generators
    from generators.sources import assign_splits

    from .methods import FaceInput

    if seed is not None:
        recipe["seed"] = seed
    seed = int(recipe["seed"])
    cfg = {**FACE_DEFAULTS, **recipe["face"]}
    size = int(cfg["size"])
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    held = set(recipe.get("held_out", []))
    finder = FaceFinder(cfg["finder"])
    writer = CorpusWriter(out, name=recipe["name"], recipe=recipe, seed=seed,
                          image_format=cfg["format"])
    extra: dict[str, Any] = {
        "modality": "face", "generators": {}, "held_out": sorted(held),
        "faces": {"size": size, "margin": float(cfg["margin"]), "work_size": cfg["work_size"],
                  "finder": finder.describe()}}

    faces: list[RealFace] = []
    variants_of: list[int] = []  # crops per face, from its [[real]] entry
    for real in recipe["real"]:
        found = real_faces(real["source"], finder, real.get("limit"))
        faces += found
        variants_of += [int(real.get("variants", 1))] * len(found)
    if cfg["colour"] not in ("auto", "grey", "colour"):
        raise ConfigError(f"{recipe_path}: [face] colour must be auto, grey or colour")
    grey = cfg["colour"] == "grey" or (cfg["colour"] == "auto"
                                       and all(is_grey(f.image) for f in faces))
    extra["faces"]["grey"] = grey
    groups = sorted({f.group for f in faces})
    if len(groups) < 3:
        raise ConfigError(f"{recipe_path}: {len(groups)} face picture(s) found; need >= 3 so "
                          "train, calib and test hold different people")
    split_of_group = assign_splits(groups, fractions, seed)
    split_of = [split_of_group[f.group] for f in faces]
    by_split = {s: [i for i, sp in enumerate(split_of) if sp == s] for s in SPLITS}
    extra["face_splits"] = {f.name: s for f, s in zip(faces, split_of, strict=True)}

    def real_prov(rf: RealFace, params: dict[str, Any], index: int) -> Provenance:
        return Provenance(kind="real", source=rf.name, seed=seed, index=index,
                          params={**params, **({"notes": rf.notes} if rf.notes else {})})

    # real crops: variant 0 is the face as found, the others jittered
    pool: list[np.ndarray] = []
    for fi, rf in enumerate(faces):
        for v in range(variants_of[fi]):
            rng = None if v == 0 else np.random.default_rng([seed, 101, fi, v])
            crop = _work_crop(rf, cfg, rng)
            pixels = _final(crop.pixels, size, grey)
            if split_of[fi] == "train":
                pool.append(pixels)
            key = f"real:{rf.name}:{v}"
            if not writer.has(key):
                writer.add(Sample(pixels, "image", 0, real_prov(rf, {**_crop_params(crop),
                           "variant": v}, fi), group=rf.group), split_of[fi], key)

    # forgeries made from real faces of the same split
    for si, syn in enumerate(recipe["synthetic"]):
        if "method" not in syn:
            continue
        name = _entry_name(syn)
        method = generators.create(METHODS[syn["method"]],
                                   **({"blend": str(syn.get("blend", "auto"))}
                                      if syn["method"] == "swap" else {}))
        per_face = int(syn.get("per_face", 1))
        todo = [(fi, v) for fi in range(len(faces)) for v in range(per_face)
                if name not in held or split_of[fi] == "test"]
        bar = tqdm(total=len(todo), desc=f"forge {name}", file=sys.stderr, disable=not progress,
                   leave=False)
        for fi, v in todo:
            key = f"{name}:{faces[fi].name}:{v}"
            bar.update(1)
            if writer.has(key):
                continue
            rng = np.random.default_rng([seed, 202, si, fi, v])
            target = _work_crop(faces[fi], cfg, rng)
            params: dict[str, Any] = {"method": syn["method"], "target": faces[fi].name,
                                      "crop": _crop_params(target)}
            item = FaceInput(target.pixels, target.landmarks)
            if syn["method"] == "swap":
                others = [j for j in by_split[split_of[fi]] if faces[j].group != faces[fi].group]
                if not others:
                    continue  # a split with one picture cannot swap within itself
                j = int(rng.choice(others))
                source = _work_crop(faces[j], cfg, rng)
                item = FaceInput(target.pixels, target.landmarks, source.pixels,
                                 source.landmarks)
                params["source"] = faces[j].name
            img, info = method.forge(item, rng)
            prov = method.provenance(v, seed, info, **params)
            prov.parent = faces[fi].name
            writer.add(Sample(_final(img, size, grey), "image", 1, prov, group=faces[fi].group),
                       split_of[fi], key)
        bar.close()

    # whole faces from generative models trained on the train split's real crops
    out = Path(out)
    for si, syn in enumerate(recipe["synthetic"]):
        if "generator" not in syn:
            continue
        name, gname = _entry_name(syn), syn["generator"]
        gdir = out / "generators" / f"{si}-{gname}"
        gen = trained_generator(gname, {"size": size, "seed": seed + si,
                                        **syn.get("params", {})}, gdir, np.stack(pool), seed,
                                progress)
        extra["generators"][f"{si}-{gname}"] = {
            "name": gname, "family": gen.family, "checkpoint_sha256": gen.checkpoint_sha256_,
            "params": gen.get_params(), "held_out": name in held,
            "quality": json.loads((gdir / "quality.json").read_text())
            if (gdir / "quality.json").exists() else None}
        n = int(syn["count"])
        todo = [i for i in range(n) if not writer.has(f"{name}:{i}")]
        for i, sample in sample_in_blocks(gen, todo, seed + 10_000 + si, n):
            split = "test" if name in held else fake_split(i, fractions, seed + si)
            if grey:  # the colour rule of the real crops, recorded like any post-processing
                sample.content = _final(sample.content, size, True)
                sample.provenance.transforms = [*sample.provenance.transforms, {"op": "grey"}]
            writer.add(sample, split, f"{name}:{i}")

    if "video" in recipe:
        from .video import build_clips

        extra["video"] = build_clips(recipe["video"], writer, faces, finder, cfg, seed,
                                     progress=progress)
    return writer.close(extra)


def publish_evidence(corpus: Corpus, d: Path) -> Path:
    """The evidence of a face corpus's whole-face generators: the image recipes' table."""
    from generators.image.recipe import publish_evidence as image_evidence

    return image_evidence(corpus, d)
