"""Model references: one grammar, one resolver.

A reference names a model by where it is:

- ``shipped:NAME``: the folder ``NAME`` under the package's ``detect/models`` (a shipped
  detector such as ``shipped:cnn-resnet10t-slim``, or a shipped language model such as
  ``shipped:text-lm-a``);
- ``model-dir:SUB``: the folder ``SUB`` inside a saved model's own folder (what a saved text
  detector writes for the LM or tokenizer it copied in, so the folder can move);
- a path to a local folder;
- anything else: a Hugging Face hub id, passed on as given (for users with internet).

:func:`resolve_ref` turns a reference into a folder (or the hub id). Detectors add two forms,
read by :func:`load_model`: a bare shipped detector name (``cnn-resnet10t-slim``) and
``train:NAME`` (the registered detector ``NAME`` trained on a corpus during ``fit``). Loading a
detector always goes through :func:`detect.core.detector.load_detector` (config.json +
safetensors, class by registry name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detect.core.errors import ModelError
from detect.core.resources import MODELS_DIR

SHIPPED_PREFIX = "shipped:"
MODEL_DIR_PREFIX = "model-dir:"
TRAIN_PREFIX = "train:"


def resolve_ref(ref: str | Path, base: str | Path | None = None) -> str | Path:
    """Where reference ``ref`` points (the grammar is the module's): ``shipped:NAME`` -> the
    shipped folder (a ModelError when there is none), ``model-dir:SUB`` -> ``base/SUB`` (a
    ModelError without ``base``), a local folder -> its Path; else ``ref`` itself, a hub id.
    ``train:NAME`` names no location (only :func:`load_model` takes it): a ModelError."""
    if isinstance(ref, Path):
        return ref
    if ref.startswith(SHIPPED_PREFIX):
        p = MODELS_DIR / ref.removeprefix(SHIPPED_PREFIX)
        if not (p / "config.json").is_file():
            raise ModelError(f"no shipped model {ref!r} (expected {p})")
        return p
    if ref.startswith(MODEL_DIR_PREFIX):
        if base is None:
            raise ModelError(f"{ref!r} is relative to a saved model folder, but none is known")
        return Path(base) / ref.removeprefix(MODEL_DIR_PREFIX)
    if ref.startswith(TRAIN_PREFIX):
        raise ModelError(f"{ref!r} is trained during fit, not a model that can be loaded")
    if Path(ref).is_dir():
        return Path(ref)
    return ref


def is_local_ref(ref: str | None) -> bool:
    """Whether ``ref`` is a plain local folder (not shipped, not inside a model folder)."""
    return bool(ref) and not str(ref).startswith((SHIPPED_PREFIX, MODEL_DIR_PREFIX,
                                                  TRAIN_PREFIX)) and Path(ref).is_dir()


def shipped_models() -> dict[str, Path]:
    """Registry name -> folder of the trained default models that ship with the package."""
    if not MODELS_DIR.is_dir():
        return {}
    # detector folders only (the shipped LMs they score with sit beside them)
    return {p.parent.name: p.parent for p in sorted(MODELS_DIR.glob("*/config.json"))
            if (p.parent / "weights.safetensors").is_file()}


def default_detector_names() -> list[str]:
    """What a scan runs when no detector is named: the list in ``defaults.json`` (primary
    first). Other shipped models (e.g. the slow, weak ``recon-vae``) run only when named."""
    order_file = MODELS_DIR / "defaults.json"
    shipped = shipped_models()
    if order_file.is_file():
        cfg = json.loads(order_file.read_text(encoding="utf-8"))
        # faces first: a photo or video with a face is judged by the face detector, one
        # without falls through to the image detectors (see scan_item)
        order = [*cfg.get("face", []), *cfg.get("image", []), *cfg.get("text", [])]
        return [n for n in order if n in shipped]
    return list(shipped)


def load_detectors(names: Iterable[str] = (), model_dirs: Iterable[str | Path] = (),
                   device: str | None = None) -> list[Any]:
    """Detectors by registry name (shipped weights) and/or saved model folders, in that order.
    A fusion among them shares the members loaded on their own (``share_members``)."""
    from detect.core.detector import load_detector
    from detect.core.registry import detectors as registry

    names, model_dirs = list(names), list(model_dirs)
    if not names and not model_dirs:
        names = default_detector_names()
        if not names:
            raise ModelError("no trained models ship with this install and none was given: "
                             "train one (`unmask train`) and pass --model DIR")
    shipped = shipped_models()
    out = []
    for n in names:
        registry.entry(n)  # unknown names get close-match suggestions
        if n not in shipped:
            raise ModelError(f"no trained weights ship for {n!r} (shipped: "
                             f"{', '.join(shipped) or 'none'}); train it with `unmask train {n} "
                             "--corpus DIR --out MODEL` and pass --model MODEL")
        out.append(load_detector(shipped[n], device=device))
    out += [load_detector(d, device=device) for d in model_dirs]
    for d in out:
        if hasattr(d, "share_members"):
            d.share_members(out)
    return out


def load_model(ref: str | Path, corpus: Any = None, device: str | None = None) -> Any:
    """The detector a reference names: ``train:NAME`` (fitted on ``corpus``), ``shipped:NAME``
    or a bare shipped name, or a saved model folder."""
    from detect.core.detector import load_detector
    from detect.core.registry import detectors

    ref = str(ref)
    if ref.startswith(TRAIN_PREFIX):
        if corpus is None:
            raise ModelError(f"{ref!r} must be trained: call fit(corpus)")
        return detectors.create(ref.removeprefix(TRAIN_PREFIX)).fit(corpus)
    shipped = shipped_models()
    name = ref.removeprefix(SHIPPED_PREFIX)
    if name in shipped:
        return load_detector(resolve_ref(SHIPPED_PREFIX + name), device=device)
    if not ref.startswith(SHIPPED_PREFIX) and isinstance(resolve_ref(ref), Path):
        return load_detector(ref, device=device)
    raise ModelError(f"model {ref!r} is neither a shipped model "
                     f"({', '.join(shipped) or 'none'}) nor a model folder")
