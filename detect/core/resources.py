"""Where the package's data lives, from a checkout and from an installed wheel alike.

- The shipped models are package data of ``detect``: ``detect/models/`` in both.
- The recipes and the manifest schema live in the checkout's top-level ``datasets/`` folder
  (data, never a Python package: an importable ``datasets`` would shadow Hugging Face's). The
  wheel carries the same files as ``detect/datasets/`` (pyproject maps that package to
  ``datasets/``). :func:`data_dir` looks at the installed copy first, then at the checkout.

This finds files by path, not through ``importlib.resources``: setuptools' editable installs do
not map ``detect.datasets`` to ``datasets/`` (pypa/setuptools#4248), and the checkout's own
folder is the right answer there anyway.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
MODELS_DIR = PACKAGE_DIR / "models"
_INSTALLED_DATA = PACKAGE_DIR / "datasets"  # in a wheel
_SOURCE_ROOT = PACKAGE_DIR.parent  # the checkout, when the package runs from one


def installed_in_site_packages(path: str | Path) -> bool:
    """True for a path inside an installed package folder (site-packages / dist-packages)."""
    return any(p in ("site-packages", "dist-packages") for p in Path(path).resolve().parts)


def checkout_root() -> Path | None:
    """The git checkout this package runs from (editable install or run in place), else None."""
    root = _SOURCE_ROOT
    if installed_in_site_packages(PACKAGE_DIR):
        return None
    if (root / ".git").exists() and (root / "pyproject.toml").is_file():
        return root
    return None


def data_dir() -> Path:
    """The folder holding ``recipes/`` and ``schema/``: the wheel's ``detect/datasets`` or the
    checkout's ``datasets`` (a source tree without ``.git`` counts too). When neither exists the
    installed location is returned, so a missing recipe names where it was expected."""
    if (_INSTALLED_DATA / "recipes").is_dir():
        return _INSTALLED_DATA
    src = _SOURCE_ROOT / "datasets"
    if (_SOURCE_ROOT / "pyproject.toml").is_file() and (src / "recipes").is_dir():
        return src
    return _INSTALLED_DATA


def recipe_path(name: str) -> Path:
    """A shipped recipe by file name, with or without ``.toml`` (``quickstart``, ``faces.toml``)."""
    return data_dir() / "recipes" / (name if name.endswith(".toml") else f"{name}.toml")


def shipped_recipes() -> dict[str, Path]:
    """Recipe name (file stem) -> path, for every shipped recipe."""
    d = data_dir() / "recipes"
    return {p.stem: p for p in sorted(d.glob("*.toml"))} if d.is_dir() else {}


def data_label(path: str | Path) -> str:
    """How records name a file of the data folder: ``datasets/recipes/x.toml`` whether it was
    read from the checkout or the wheel; any other path as given (resolved)."""
    p = Path(path).resolve()
    base = data_dir().resolve()
    if p.is_relative_to(base):
        return (Path("datasets") / p.relative_to(base)).as_posix()
    return str(path)
