"""Model references: one grammar, one resolver.

A detector is named by a registry name with shipped weights (``cnn-resnet10t-slim``, or
``shipped:cnn-resnet10t-slim``), by a saved model folder, or by ``train:NAME`` (a registered
detector trained on a corpus during ``fit``). Loading always goes through
:func:`detect.core.detector.load_detector` (config.json + safetensors, class by registry name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detect.core.errors import ModelError
from detect.core.resources import MODELS_DIR

SHIPPED_PREFIX = "shipped:"
TRAIN_PREFIX = "train:"


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


def load_detectors(names: Iterable[str] = (), model_dirs: Iterable[str | Path] = ()) -> list[Any]:
    """Detectors by registry name (shipped weights) and/or saved model folders, in that order."""
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
        out.append(load_detector(shipped[n]))
    out += [load_detector(d) for d in model_dirs]
    _share_members(out)
    return out


def _share_members(dets: list[Any]) -> None:
    """A fusion whose member is also loaded on its own uses that very instance, so a scan
    scores it once (``scan_item`` re-uses the member's score)."""
    by_dir = {str(Path(d.model_dir_).resolve()): d for d in dets if getattr(d, "model_dir_", None)}
    for d in dets:
        members = getattr(d, "members_", None)
        if members:
            d.members_ = [by_dir.get(str(Path(m.model_dir_).resolve()), m) for m in members]




def load_model(ref: str | Path, corpus: Any = None) -> Any:
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
        return load_detector(shipped[name])
    if Path(ref).is_dir():
        return load_detector(ref)
    raise ModelError(f"model {ref!r} is neither a shipped model "
                     f"({', '.join(shipped) or 'none'}) nor a model folder")
