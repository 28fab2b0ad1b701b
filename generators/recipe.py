"""Build a labelled corpus from a recipe (TOML): real items + fakes from generators.

A recipe's ``kind`` (by default its ``modality``: ``image``, the default; ``text``; ``face``;
or ``wild``, real photographs and their reconstructions at native resolution) names the module
that builds it, each with the same three functions, looked up in :data:`KINDS`:

- ``check(recipe, where)``: the kind's own fields (after the checks every recipe shares here);
- ``build(recipe, recipe_path, out, *, seed, progress) -> Corpus``;
- ``publish_evidence(corpus, d) -> Path``: the evidence that its generators learned.

Every build is resumable: items already in the output folder are kept (matched by a stable
key), a generator's training resumes from its last checkpoint, and a finished build re-run is a
no-op. Same recipe + seed -> same content hash.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

from detect.core.errors import ConfigError
from detect.core.types import Modality
from detect.io.corpus import SPLITS, Corpus

from .training import report_generator, trained_generator  # noqa: F401 - the CLI imports them here

RECIPE_SCHEMA = "unmask.recipe/1"
#: recipe kind -> the module that checks, builds and publishes it (imported on first use)
KINDS: dict[str, str] = {
    Modality.IMAGE: "generators.image.recipe",
    Modality.TEXT: "generators.text.recipe",
    Modality.FACE: "generators.faces.recipe",
    "wild": "generators.image.wild",
}


def recipe_kind(recipe: dict[str, Any]) -> str:
    """A recipe's kind: its ``kind`` field, else its ``modality`` (``image`` by default)."""
    return str(recipe.get("kind") or recipe.get("modality") or "image")


def kind(name: Any, where: str = "recipe") -> ModuleType:
    """The module of recipe kind ``name`` (see :data:`KINDS`); a ConfigError for another."""
    try:
        return importlib.import_module(KINDS[str(name)])
    except KeyError:
        modal = [str(k) for k in KINDS if str(k) in {m.value for m in Modality}]
        other = [str(k) for k in KINDS if str(k) not in modal]
        raise ConfigError(f"{where}: modality must be one of {', '.join(modal)} (or kind one "
                          f"of {', '.join(other)}), got {name!r}") from None


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
    module = kind(recipe_kind(recipe), str(p))
    for k in ("name", "seed", modality, "splits", "real", "synthetic"):
        if k not in recipe:
            raise ConfigError(f"{p}: missing [{k}]")
    splits = recipe["splits"]
    if set(splits) - set(SPLITS) or abs(sum(splits.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{p}: [splits] must give train/calib/test fractions summing to 1")
    for s in ("calib", "test"):
        if splits.get(s, 0) <= 0:
            raise ConfigError(f"{p}: [splits] needs a positive {s} fraction")
    module.check(recipe, str(p))
    return recipe


def build(recipe_path: str | Path, out: str | Path, *, seed: int | None = None,
          progress: bool = True) -> Corpus:
    """Write the corpus of ``recipe_path`` into ``out`` (resuming what is there)."""
    recipe = load_recipe(recipe_path)
    return kind(recipe_kind(recipe)).build(recipe, recipe_path, out, seed=seed,
                                           progress=progress)


def publish_evidence(corpus: Corpus, dest: str | Path) -> Path:
    """Copy the evidence that every generator of ``corpus`` learned (sample grids or texts,
    quality figures, a summary table) to ``dest/<corpus name>``, committed next to the recipe
    that made it."""
    d = Path(dest) / corpus.header["name"]
    d.mkdir(parents=True, exist_ok=True)
    recipe = corpus.header.get("recipe") or {"modality": corpus.header.get("modality")}
    return kind(recipe_kind(recipe)).publish_evidence(corpus, d)
