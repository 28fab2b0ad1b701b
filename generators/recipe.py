"""Build a labelled corpus from a recipe (TOML): real patches + fakes from generators.

The build is resumable: items already in the output folder are kept (matched by a stable key),
a generator's training resumes from its last checkpoint, and a finished build re-run is a no-op.
Same recipe + seed -> same content hash.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.registry import generators
from detect.io.corpus import SPLITS, Corpus, CorpusWriter

from .splits import fake_split
from .training import report_generator, trained_generator  # noqa: F401 - the CLI imports it here

RECIPE_SCHEMA = "unmask.recipe/1"


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Parse and check a recipe; errors name the file and the field."""
    p = Path(path)
    try:
        recipe = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: recipe not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    if recipe.get("schema") != RECIPE_SCHEMA:
        raise ConfigError(f"{p}: schema must be {RECIPE_SCHEMA!r}")
    modality = recipe.get("modality", "image")
    if modality not in ("image", "text", "face"):
        raise ConfigError(f"{p}: modality must be 'image', 'text' or 'face', got {modality!r}")
    for k in ("name", "seed", modality, "splits", "real", "synthetic"):
        if k not in recipe:
            raise ConfigError(f"{p}: missing [{k}]")
    splits = recipe["splits"]
    if set(splits) - set(SPLITS) or abs(sum(splits.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{p}: [splits] must give train/calib/test fractions summing to 1")
    for s in ("calib", "test"):
        if splits.get(s, 0) <= 0:
            raise ConfigError(f"{p}: [splits] needs a positive {s} fraction")
    if modality == "text":  # its own [[real]] / [[synthetic]] fields: generators/text/recipe.py
        from .text.recipe import check as check_text

        check_text(recipe, str(p))
        return recipe
    if modality == "face":  # generators/faces/recipe.py
        from .faces.recipe import check as check_faces

        check_faces(recipe, str(p))
        return recipe
    for r in recipe["real"]:
        if "source" not in r or "count" not in r:
            raise ConfigError(f"{p}: every [[real]] needs source and count")
    from .postprocess import check

    check(recipe.get("postprocess", []), str(p))
    for s in recipe["synthetic"]:
        if "generator" not in s or "count" not in s:
            raise ConfigError(f"{p}: every [[synthetic]] needs generator and count")
        if s["generator"] not in generators:
            generators.entry(s["generator"])  # raises with close matches
    return recipe


def _real_name(real: dict[str, Any]) -> str:
    return str(real.get("name", real["source"]))


def build(recipe_path: str | Path, out: str | Path, *, seed: int | None = None,
          progress: bool = True) -> Corpus:
    """Write the corpus of ``recipe_path`` into ``out`` (resuming what is there)."""
    from tqdm.auto import tqdm

    from . import postprocess
    from .sources import assign_splits, photo_patches, photos

    recipe = load_recipe(recipe_path)
    if recipe.get("modality", "image") == "text":
        from .text.recipe import build_text

        return build_text(recipe, recipe_path, out, seed=seed, progress=progress)
    if recipe.get("modality", "image") == "face":
        from .faces.recipe import build_faces

        return build_faces(recipe, recipe_path, out, seed=seed, progress=progress)
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
        for i, sample in gen.generate_indices(todo, sseed, total=n):
            # a held-out family is only ever tested on: detectors trained here never see it
            split = "test" if family in held_out else fake_split(i, fractions, seed)
            add(sample, split, f"synthetic:{si}:{i}")
            bar.update(1)
        bar.close()
    return writer.close(extra)


def publish_evidence(corpus: Corpus, dest: str | Path) -> Path:
    """Copy each generator's sample grid and quality figure, plus a summary table, to ``dest``.

    This is the evidence that every generator learned, committed next to the recipe that made it.
    """
    import shutil

    d = Path(dest) / corpus.header["name"]
    d.mkdir(parents=True, exist_ok=True)
    if corpus.header.get("modality") == "text":
        from .text.recipe import publish_text_evidence

        return publish_text_evidence(corpus, d)
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
