"""Image corpus recipes (``modality = "image"``, the default): real patches of photos and fakes
from image generators trained here on the train split's patches (or pretrained pipelines).

The build is resumable: items already in the output folder are kept (matched by a stable key),
a generator's training resumes from its last checkpoint, and a finished build re-run is a no-op.
Same recipe + seed -> same content hash.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.registry import generators
from detect.io.corpus import SPLITS, Corpus, CorpusWriter
from generators.image.base import sample_in_blocks
from generators.splits import fake_split
from generators.training import trained_generator


def check(recipe: dict[str, Any], where: str) -> None:
    """Validate the image-specific parts of a recipe; errors name the file and the field."""
    for r in recipe["real"]:
        if "source" not in r or "count" not in r:
            raise ConfigError(f"{where}: every [[real]] needs source and count")
    from generators.postprocess import check as check_postprocess

    check_postprocess(recipe.get("postprocess", []), where)
    for s in recipe["synthetic"]:
        if "generator" not in s or "count" not in s:
            raise ConfigError(f"{where}: every [[synthetic]] needs generator and count")
        if s["generator"] not in generators:
            generators.entry(s["generator"])  # raises with close matches
        cls = generators.get_class(s["generator"])
        if getattr(cls, "modality", "image") != "image" or getattr(cls, "needs_faces", False):
            raise ConfigError(f"{where}: generator {s['generator']!r} does not make whole "
                              "images from noise; an image recipe cannot use it")


def _real_name(real: dict[str, Any]) -> str:
    return str(real.get("name", real["source"]))


def build(recipe: dict[str, Any], recipe_path: str | Path, out: str | Path, *,
          seed: int | None = None, progress: bool = True) -> Corpus:
    """Write the image corpus of a checked recipe into ``out`` (resuming what is there)."""
    from tqdm.auto import tqdm

    from generators import postprocess
    from generators.sources import assign_splits, photo_patches, photos

    if seed is not None:
        recipe["seed"] = seed
    seed = int(recipe["seed"])
    size = int(recipe["image"].get("size", 32))
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    post = list(recipe.get("postprocess", []))
    held_out = set(recipe.get("held_out_families", []))
    out = Path(out)
    writer = CorpusWriter(out, name=recipe["name"], recipe=recipe, seed=seed,
                          image_format=recipe["image"].get("format", "png"),
                          quality=int(recipe["image"].get("quality", 95)))
    extra: dict[str, Any] = {"generators": {}, "photo_splits": {},
                             "held_out_families": sorted(held_out)}

    def add(sample: Any, split: str, key: str) -> None:
        if post:
            sample.content, done = postprocess.apply(sample.content, post)
            sample.provenance.transforms = sample.provenance.transforms + done
        writer.add(sample, split, key)

    families = []
    for syn in recipe["synthetic"]:
        fam = syn.get("params", {}).get("family") or getattr(
            generators.get_class(syn["generator"]), "family", None)
        families.append(fam)
    unknown = held_out - set(families)
    if unknown:
        raise ConfigError(f"{recipe_path}: held_out_families names {sorted(unknown)}, but the "
                          f"recipe's generators are of families {sorted(set(families))}")
    if families and set(families) <= held_out:
        raise ConfigError(f"{recipe_path}: held_out_families holds out every family; "
                          "training would see no synthetic items")
    pools: dict[str, list[np.ndarray]] = {}
    for ri, real in enumerate(recipe["real"]):
        plist = photos(real["source"], limit=real.get("limit"))
        if len(plist) < 3:
            raise ConfigError(f"source {real['source']!r} has {len(plist)} photos; need >= 3 "
                              "so train, calib and test get different photos")
        split_of = assign_splits([p.name for p in plist], fractions, seed + ri)
        if len(plist) <= 1000:
            extra["photo_splits"].update(split_of)
        scales = [float(s) for s in real.get("scales", [1.0])]
        n = int(real["count"])
        bar = tqdm(total=n, desc=f"real {_real_name(real)}", file=sys.stderr,
                   disable=not progress, leave=False)
        for i, sample in photo_patches(plist, n, size, scales, seed + 1000 * ri):
            key = f"real:{ri}:{i}"
            if not writer.has(key):
                add(sample, split_of[sample.group], key)
            bar.update(1)
        bar.close()
        # generators learn only from photos of the train split: test photos stay unseen
        train_photos = [p for p in plist if split_of[p.name] == "train"]
        n_train = int(real.get("generator_patches", 4 * n))
        pools[_real_name(real)] = [s.content for _, s in photo_patches(
            train_photos, n_train, size, scales, seed + 500 + ri)]

    for si, syn in enumerate(recipe["synthetic"]):
        gname = syn["generator"]
        gdir = out / "generators" / f"{si}-{gname}"
        train_on = syn.get("train_on")
        if train_on is not None and train_on not in pools:
            raise ConfigError(f"{recipe_path}: synthetic {gname!r} trains on {train_on!r}, "
                              f"which is not a [[real]] name ({', '.join(pools)})")
        pool = pools[train_on] if train_on else [a for p in pools.values() for a in p]
        gen = trained_generator(gname, {"size": size, "seed": seed + si,
                                        **syn.get("params", {})},
                                gdir, np.stack(pool), seed, progress)
        family = gen.family
        extra["generators"][f"{si}-{gname}"] = {
            "name": gname, "family": family, "checkpoint_sha256": gen.checkpoint_sha256_,
            "params": gen.get_params(), "held_out": family in held_out,
            "quality": json.loads((gdir / "quality.json").read_text())
            if (gdir / "quality.json").exists() else None,
        }
        n = int(syn["count"])
        sseed = seed + 10_000 + si
        todo = [i for i in range(n) if not writer.has(f"synthetic:{si}:{i}")]
        bar = tqdm(total=n, initial=n - len(todo), desc=f"generate {gname}", file=sys.stderr,
                   disable=not progress, leave=False)
        for i, sample in sample_in_blocks(gen, todo, sseed, n):
            # a held-out family is only ever tested on: detectors trained here never see it
            split = "test" if family in held_out else fake_split(i, fractions, seed)
            add(sample, split, f"synthetic:{si}:{i}")
            bar.update(1)
        bar.close()
    return writer.close(extra)


def publish_evidence(corpus: Corpus, d: Path) -> Path:
    """Each generator's sample grid and quality figure, plus a summary table, in ``d``: the
    evidence that every generator learned (face corpora use it for their whole-face models)."""
    import shutil

    rows = ["| generator | family | held out | FD generated | FD untrained | FD real-vs-real "
            "| learned | samples |", "|---|---|---|---|---|---|---|---|"]
    for key, g in corpus.header.get("generators", {}).items():
        src = corpus.root / "generators" / key
        if (src / "samples.png").exists():
            shutil.copy(src / "samples.png", d / f"{key}-samples.png")
        q = g.get("quality") or {}
        (d / f"{key}-quality.json").write_text(json.dumps(q, indent=2) + "\n")
        rows.append(f"| {g['name']} | {g.get('family', '?')} | {g.get('held_out', False)} | "
                    f"{q.get('fd_generated', '-')} | {q.get('fd_untrained', '-')} | "
                    f"{q.get('fd_real_vs_real', '-')} | {q.get('learned_fraction', '-')} | "
                    f"![{key}]({key}-samples.png) |")
    head = (f"# Generators of corpus `{corpus.header['name']}`\n\n"
            f"Recipe: `{corpus.header['recipe'].get('name')}` (seed {corpus.header['seed']}), "
            f"content hash `{corpus.content_hash[:16]}`. Quality: Fréchet distance between "
            "hand-made patch features (colour, gradient, Laplacian, spectrum) of 1,000 generated "
            "and 1,000 real train patches; `learned` is 1 at real-vs-real, 0 at the untrained "
            "generator. Sample grids: real patches left, generated right.\n\n")
    (d / "README.md").write_text(head + "\n".join(rows) + "\n")
    return d
