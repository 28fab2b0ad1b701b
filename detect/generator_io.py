"""Reading a saved generator folder: the pieces the recon detector needs to load its
reconstructor, kept in the core so ``detect`` never imports ``generators``. The generators
package writes these folders and imports the same names from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError
from .registry import generators

GENERATOR_SCHEMA = "unmask.generator/1"


def read_config(directory: Path) -> dict[str, Any]:
    """A saved generator's config.json, checked; errors name the folder."""
    try:
        cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{directory}: not a saved generator ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("schema") != GENERATOR_SCHEMA:
        raise ModelError(f"{directory / 'config.json'}: schema must be {GENERATOR_SCHEMA!r}")
    return cfg


def load_generator(directory: str | Path) -> Any:
    """Load a saved generator by the registry name in its config.json (never an import path)."""
    d = Path(directory)
    cfg = read_config(d)
    try:
        cls = generators.get_class(cfg["name"])
    except ConfigError as e:
        raise ModelError(f"{d}: {e}") from None
    obj = cls.load(d)
    obj.name = cfg["name"]
    return obj
