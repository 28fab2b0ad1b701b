"""Shipping trained models as the package's defaults: one function for every release path.

``unmask quickstart --update-defaults`` (image models and their fusion),
``benchmarks/face_detection.py --update-defaults`` (the face model) and
``benchmarks/text_detection.py --update-defaults`` (text detectors, their LMs and the human
calibration texts) all call :func:`release`. It copies the models into a models folder, merges
their part of ``defaults.json`` and saves a small held-out sample beside the tests (one schema,
``unmask.holdout/1``), so the shipped weights stay checked by ``tests/test_shipped.py``.

By default the models folder is the package's own ``detect/models`` and the sample goes to the
checkout's ``tests/data/``: that is only allowed from a git checkout (a release is a commit).
An installed package (site-packages, or no checkout around it) is refused with a
:class:`ConfigError` unless ``dest`` names another folder; the sample then goes to
``dest/../holdout/`` unless ``holdout_root`` says where.

Held-out sample (``<holdout_root>/<name>/labels.json``)::

    {"schema": "unmask.holdout/1", "corpus_hash": "<content hash of the corpus>",
     "split": "test",
     "labels": {"<file>": 0 | 1, ...},              # 0 real / human, 1 synthetic
     "modalities": {"<file>": "image" | "video" | "text", ...},
     "frame_labels": {"<video file>": [0 | 1, ...], ...}}   # per frame; {} without videos
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError
from detect.core.resources import MODELS_DIR, checkout_root, installed_in_site_packages

HOLDOUT_SCHEMA = "unmask.holdout/1"
DEFAULTS_SCHEMA = "unmask.defaults/1"
HOLDOUT_KEYS = ("schema", "corpus_hash", "split", "labels", "modalities", "frame_labels")


def _log(msg: str) -> None:
    print(f"unmask: {msg}", file=sys.stderr, flush=True)


@dataclass
class Holdout:
    """Corpus items to save beside the tests: ``name`` is the folder (``shipped-holdout-faces``),
    ``filename`` names each record's copy (default: the corpus file's own name)."""

    name: str
    corpus: Any
    records: Sequence[Any]
    filename: Callable[[Any], str] | None = None
    split: str = "test"


def default_models_dir() -> Path:
    """The package's models folder, if a release may write there (a git checkout), else a
    ConfigError saying why and what to do instead."""
    if installed_in_site_packages(MODELS_DIR) or checkout_root() is None:
        raise ConfigError(
            f"{MODELS_DIR} belongs to an installed package, not a git checkout: a release "
            "writes the shipped defaults of a checkout (then commit them). Give an explicit "
            "destination (release(..., dest=DIR)), or use the trained model folders as they "
            "are (unmask scan --model DIR)")
    return MODELS_DIR


def _same_tree(a: Path, b: Path) -> bool:
    if not b.is_dir():
        return False
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


def _fusion_config(src: Path, member_dir: Callable[[str], Path]) -> dict[str, Any]:
    """The config of fusion ``src`` re-pointed at its members by name (``member_dir(name)`` is
    where each one ships), after checking they are the very models it was fitted on."""
    from detect.core.detector import load_detector
    from detect.image.fusion import weights_sha256

    det = load_detector(src)
    names = [m.name for m in det.members_]
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    for i, name in enumerate(names):
        b = member_dir(name)
        if not (b / "config.json").is_file():
            raise ConfigError(f"{src}: fusion member {name} is not among the shipped models")
        a = src / "members" / str(i)
        if (a / "weights.safetensors").read_bytes() != (b / "weights.safetensors").read_bytes():
            raise ConfigError(f"{src}: member {i} differs from the shipped {name}")
    cfg["params"]["members"] = names
    cfg["state"]["members"] = names
    cfg["state"]["member_sha256"] = [weights_sha256(member_dir(n)) for n in names]
    return cfg


def _write_fusion(src: Path, dest: Path, cfg: dict[str, Any]) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy(src / "weights.safetensors", dest / "weights.safetensors")
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def reship_fusion(src: Path, dest: Path, models_dir: Path) -> None:
    """Ship fusion ``src`` as ``dest``, referring to its members by name in ``models_dir``
    (never a second copy of their weights); a member that differs is refused."""
    src, dest, models_dir = Path(src), Path(dest), Path(models_dir)
    _write_fusion(src, dest, _fusion_config(src, lambda n: models_dir / n))


def _picked(h: Holdout) -> dict[str, Any]:
    name_of = h.filename or (lambda r: Path(r.path).name)
    picked: dict[str, Any] = {}
    for r in h.records:
        n = name_of(r)
        if n in picked:
            raise ConfigError(f"held-out sample {h.name}: two items named {n}")
        if not (h.corpus.root / r.path).is_file():
            raise ConfigError(f"held-out sample {h.name}: {h.corpus.root / r.path} is missing")
        picked[n] = r
    return picked


def write_holdout(h: Holdout, folder: Path) -> Path:
    """Copy the sample's files into ``folder`` (replaced) with its ``labels.json``."""
    folder = Path(folder)
    picked = _picked(h)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    labels, modalities, frames = {}, {}, {}
    for n, r in picked.items():
        shutil.copy(h.corpus.root / r.path, folder / n)
        labels[n] = int(r.label)
        modalities[n] = r.modality
        fl = (r.provenance.get("params") or {}).get("frame_labels")
        if r.modality == "video" and fl is not None:
            frames[n] = [int(x) for x in fl]
    meta = {"schema": HOLDOUT_SCHEMA, "corpus_hash": h.corpus.content_hash, "split": h.split,
            "labels": labels, "modalities": modalities, "frame_labels": frames}
    (folder / "labels.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return folder


def read_holdout(folder: str | Path) -> dict[str, Any]:
    """A held-out sample's ``labels.json``, checked against the schema."""
    p = Path(folder) / "labels.json"
    meta = json.loads(p.read_text(encoding="utf-8"))
    if meta.get("schema") != HOLDOUT_SCHEMA:
        raise ConfigError(f"{p}: schema must be {HOLDOUT_SCHEMA!r}, got {meta.get('schema')!r}")
    missing = [k for k in HOLDOUT_KEYS if k not in meta]
    if missing or set(meta["labels"]) != set(meta["modalities"]) or \
            not set(meta["frame_labels"]) <= set(meta["labels"]):
        raise ConfigError(f"{p}: incomplete held-out sample (missing {missing or 'entries'})")
    return meta


def release(models: Mapping[str, str | Path], *, defaults: Mapping[str, Any],
            holdout: Holdout | Sequence[Holdout] | None = None, dest: str | Path | None = None,
            holdout_root: str | Path | None = None) -> Path:
    """Ship ``models`` (name -> trained model folder, or a file shipped under that name) into
    ``dest`` (default: the package's models folder, checkout only), in the given order.

    - A folder identical to the one already shipped is left as it is.
    - A fusion (a folder with ``members/``) ships referring to its members by name: each must be
      in ``models`` or already shipped, with the very weights it was fitted on.
    - ``defaults`` is merged into ``defaults.json`` (the keys of other modalities are kept).
    - ``holdout`` is saved to ``holdout_root/<name>/`` (default: the checkout's ``tests/data``,
      or ``dest/../holdout`` when ``dest`` is given).

    Everything is checked before anything is written. Returns the models folder."""
    if dest is None:
        out = default_models_dir()
        root = checkout_root()
        assert root is not None  # default_models_dir() refuses otherwise
        hroot = Path(holdout_root) if holdout_root else root / "tests" / "data"
    else:
        out = Path(dest)
        hroot = Path(holdout_root) if holdout_root else out.parent / "holdout"
    holdouts = [] if holdout is None else [holdout] if isinstance(holdout, Holdout) \
        else list(holdout)
    srcs = {name: Path(p) for name, p in models.items()}
    for name, p in srcs.items():
        if not p.exists():
            raise ConfigError(f"release: {name}: {p} does not exist")
        if p.is_dir() and not (p / "config.json").is_file():
            raise ConfigError(f"release: {name}: {p} holds no config.json (not a saved model)")
    fusions = {n: p for n, p in srcs.items() if p.is_dir() and (p / "members").is_dir()}

    def member_dir(name: str) -> Path:  # where a member ships: this release or the shipped one
        p = srcs.get(name)
        return p if p is not None and p.is_dir() and name not in fusions else out / name

    fusion_cfgs = {n: _fusion_config(p, member_dir) for n, p in fusions.items()}
    for h in holdouts:
        _picked(h)

    out.mkdir(parents=True, exist_ok=True)
    for name, p in srcs.items():
        target = out / name
        if name in fusions:
            _write_fusion(p, target, fusion_cfgs[name])
        elif p.is_file():
            shutil.copy(p, target)
        elif _same_tree(p, target):
            _log(f"{target} unchanged")
        else:
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(p, target)
    dpath = out / "defaults.json"
    cfg = json.loads(dpath.read_text(encoding="utf-8")) if dpath.is_file() else {}
    cfg.update({"schema": DEFAULTS_SCHEMA, **defaults})
    dpath.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    for h in holdouts:
        write_holdout(h, hroot / h.name)
    _log(f"released {', '.join(srcs)} into {out}"
         + (f"; held-out sample(s) in {', '.join(str(hroot / h.name) for h in holdouts)}"
            if holdouts else ""))
    return out
