"""Training (or loading) a recipe's generators and the quality evidence that they learned:
shared by the image and face recipe builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.registry import generators


def trained_generator(gname: str, params: dict[str, Any], gdir: Path, pool: np.ndarray,
                      seed: int, progress: bool) -> Any:
    """Load the generator finished in ``gdir``, or train it there (resuming a checkpoint)."""
    from .base import load_generator

    if (gdir / "model" / "config.json").exists():
        gen = load_generator(gdir / "model")
        if not (gdir / "quality.json").exists():  # interrupted between save and report
            report_generator(gen, pool, gdir, seed)
        return gen
    gen = generators.create(gname, **params)
    gen.fit(pool, workdir=gdir, progress=progress)  # a pretrained pipeline only loads there
    gen.save(gdir / "model")
    report_generator(gen, pool, gdir, seed)
    return gen


def report_generator(gen: Any, train_arr: np.ndarray, gdir: Path, seed: int) -> dict[str, Any]:
    """Sample grid PNG + quality figure, so a generator that learned nothing is caught."""
    from PIL import Image

    from .quality import image_grid, quality_report

    n = min(1000, len(train_arr) // 2)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train_arr))
    real_a, real_b = train_arr[idx[:n]], train_arr[idx[n:2 * n]]
    fake = gen.sample_array(list(range(n)), seed + 99)
    if fake.shape[1:] != real_a.shape[1:]:
        raise ConfigError(f"{gen.name} makes {fake.shape[1:]} images; the recipe's real items "
                          f"are {real_a.shape[1:]}: both classes must match")
    untrained = gen.untrained() if hasattr(gen, "untrained") else None
    anchor = untrained.sample_array(list(range(n)), seed + 99) if untrained is not None else \
        np.random.default_rng(seed).integers(0, 256, fake.shape, dtype=np.uint8)
    rep = quality_report(real_a, real_b, fake, anchor)
    rep["anchor"] = "untrained generator" if untrained is not None else "uniform noise"
    rep["generator"] = gen.name
    rep["family"] = gen.family
    rep["checkpoint_sha256"] = gen.checkpoint_sha256_
    gdir.mkdir(parents=True, exist_ok=True)
    (gdir / "quality.json").write_text(json.dumps(rep, indent=2) + "\n")
    grid = np.concatenate([image_grid(real_a[:32], cols=8), image_grid(fake[:32], cols=8)],
                          axis=1)
    Image.fromarray(grid).save(gdir / "samples.png")
    return rep
