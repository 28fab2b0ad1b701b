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

from detect.corpus import SPLITS, Corpus, CorpusWriter
from detect.errors import ConfigError
from detect.registry import generators

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
    for k in ("name", "seed", "image", "splits", "real", "synthetic"):
        if k not in recipe:
            raise ConfigError(f"{p}: missing [{k}]")
    splits = recipe["splits"]
    if set(splits) - set(SPLITS) or abs(sum(splits.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{p}: [splits] must give train/calib/test fractions summing to 1")
    for s in ("calib", "test"):
        if splits.get(s, 0) <= 0:
            raise ConfigError(f"{p}: [splits] needs a positive {s} fraction")
    for r in recipe["real"]:
        if "source" not in r or "count" not in r:
            raise ConfigError(f"{p}: every [[real]] needs source and count")
    for s in recipe["synthetic"]:
        if "generator" not in s or "count" not in s:
            raise ConfigError(f"{p}: every [[synthetic]] needs generator and count")
        if s["generator"] not in generators:
            generators.entry(s["generator"])  # raises with close matches
    return recipe


def _fake_split(i: int, fractions: dict[str, float], seed: int) -> str:
    u = np.random.default_rng([seed, 7919, i]).random()
    acc = 0.0
    for s, f in fractions.items():
        acc += f
        if u < acc:
            return s
    return list(fractions)[-1]


def build(recipe_path: str | Path, out: str | Path, *, seed: int | None = None,
          progress: bool = True) -> Corpus:
    """Write the corpus of ``recipe_path`` into ``out`` (resuming what is there)."""
    from PIL import Image
    from tqdm.auto import tqdm

    from .quality import image_grid, quality_report
    from .sources import assign_splits, photo_patches, photos

    recipe = load_recipe(recipe_path)
    if seed is not None:
        recipe["seed"] = seed
    seed = int(recipe["seed"])
    size = int(recipe["image"].get("size", 32))
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    out = Path(out)
    writer = CorpusWriter(out, name=recipe["name"], recipe=recipe, seed=seed,
                          image_format=recipe["image"].get("format", "png"),
                          quality=int(recipe["image"].get("quality", 95)))
    extra: dict[str, Any] = {"generators": {}, "photo_splits": {}}

    train_patches: list[np.ndarray] = []
    for ri, real in enumerate(recipe["real"]):
        plist = photos(real["source"])
        if len(plist) < 3:
            raise ConfigError(f"source {real['source']!r} has {len(plist)} photos; need >= 3 "
                              "so train, calib and test get different photos")
        split_of = assign_splits([p.name for p in plist], fractions, seed + ri)
        extra["photo_splits"].update(split_of)
        scales = [float(s) for s in real.get("scales", [1.0])]
        n = int(real["count"])
        bar = tqdm(total=n, desc=f"real {real['source']}", file=sys.stderr, disable=not progress,
                   leave=False)
        for i, sample in photo_patches(plist, n, size, scales, seed + 1000 * ri):
            key = f"real:{ri}:{i}"
            if not writer.has(key):
                writer.add(sample, split_of[sample.group], key)
            bar.update(1)
        bar.close()
        # generators learn only from photos of the train split: test photos stay unseen
        train_photos = [p for p in plist if split_of[p.name] == "train"]
        n_train = int(real.get("generator_patches", 4 * n))
        train_patches += [s.content for _, s in
                          photo_patches(train_photos, n_train, size, scales, seed + 500 + ri)]

    train_arr = np.stack(train_patches)
    for si, syn in enumerate(recipe["synthetic"]):
        gname = syn["generator"]
        params = {"size": size, "seed": seed + si, **syn.get("params", {})}
        gdir = out / "generators" / f"{si}-{gname}"
        if (gdir / "model" / "config.json").exists():
            gen = generators.get_class(gname).load(gdir / "model")
        else:
            gen = generators.create(gname, **params)
            gen.fit(train_arr, workdir=gdir, progress=progress)
            gen.save(gdir / "model")
            _report_generator(gen, train_arr, gdir, seed, image_grid, quality_report, Image)
        extra["generators"][f"{si}-{gname}"] = {
            "name": gname, "checkpoint_sha256": gen.checkpoint_sha256_,
            "params": gen.get_params(),
            "quality": json.loads((gdir / "quality.json").read_text())
            if (gdir / "quality.json").exists() else None,
        }
        n = int(syn["count"])
        sseed = seed + 10_000 + si
        todo = [i for i in range(n) if not writer.has(f"synthetic:{si}:{i}")]
        bar = tqdm(total=n, initial=n - len(todo), desc=f"generate {gname}", file=sys.stderr,
                   disable=not progress, leave=False)
        for i, sample in gen.generate_indices(todo, sseed):
            writer.add(sample, _fake_split(i, fractions, seed), f"synthetic:{si}:{i}")
            bar.update(1)
        bar.close()
    return writer.close(extra)


def _report_generator(gen, train_arr, gdir, seed, image_grid, quality_report, Image) -> None:  # noqa: ANN001
    """Sample grid PNG + quality figure, so a generator that learned nothing is caught."""
    n = min(1000, len(train_arr) // 2)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train_arr))
    real_a, real_b = train_arr[idx[:n]], train_arr[idx[n:2 * n]]
    fake = gen.sample_array(list(range(n)), seed + 99)
    untrained = generators.create(gen.name, **{**gen.get_params(), "steps": 0})
    untrained.fit(train_arr[:1], progress=False)
    rep = quality_report(real_a, real_b, fake, untrained.sample_array(list(range(n)), seed + 99))
    rep["generator"] = gen.name
    rep["checkpoint_sha256"] = gen.checkpoint_sha256_
    (gdir / "quality.json").write_text(json.dumps(rep, indent=2) + "\n")
    grid = np.concatenate([image_grid(real_a[:32], cols=8), image_grid(fake[:32], cols=8)],
                          axis=1)
    Image.fromarray(grid).save(gdir / "samples.png")
