"""Reading a saved generator folder: the pieces the recon detector needs to load its
reconstructor, kept in the core so ``detect`` never imports ``generators``. The generators
package writes these folders and imports the same names from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError
from detect.core.registry import generators

GENERATOR_SCHEMA = "unmask.generator/1"
#: a text generator's description (its config.json is transformers' own)
TEXT_META_FILE = "unmask.json"


def read_schema_file(path: Path, what: str) -> dict[str, Any]:
    """The JSON description file of a saved ``what`` (``config.json`` of an image generator,
    ``unmask.json`` of a text one), checked; errors name the folder or the file."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path.parent}: not a {what} ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("schema") != GENERATOR_SCHEMA:
        raise ModelError(f"{path}: schema must be {GENERATOR_SCHEMA!r}")
    return cfg


def read_config(directory: Path) -> dict[str, Any]:
    """A saved generator's config.json, checked; errors name the folder."""
    return read_schema_file(directory / "config.json", "saved generator")


def load_registered(directory: Path, cfg: dict[str, Any]) -> Any:
    """Load the generator saved in ``directory`` by the registry name its checked description
    ``cfg`` gives (never an import path)."""
    try:
        cls = generators.get_class(cfg["name"])
    except ConfigError as e:
        raise ModelError(f"{directory}: {e}") from None
    obj = cls.load(directory)
    obj.name = cfg["name"]
    return obj


def load_generator(directory: str | Path) -> Any:
    """Load a saved generator by the registry name in its description (never an import path):
    ``unmask.json`` for a text generator, else ``config.json``."""
    d = Path(directory)
    if (d / TEXT_META_FILE).is_file():
        return load_registered(d, read_schema_file(d / TEXT_META_FILE, "saved text generator"))
    return load_registered(d, read_config(d))
