"""The detector contract, scikit-learn style, shared by every family.

``__init__`` stores hyperparameters and nothing else (``get_params`` reads them back); ``fit``
trains on the corpus' train split and calibrates on its calib split; state learned from data
ends in ``_``. ``score(items)`` gives one number per item, higher = more likely synthetic;
``decide(item, score, target_fpr)`` turns one score into a :class:`DetectorResult` under the
calibrated rule; ``predict`` is the verdicts of a batch. ``tags`` say which items a detector
applies to. Saved models are ``config.json`` + ``weights.safetensors``; ``load`` finds the class
by its registry name, never by a path or a pickle taken from the file.

The families: patch-tiling image detectors (``detect.image.patch.PatchDetector``), fusion
(``detect.image.fusion``), text (``detect.text.base.TextDetector``) and face
(``detect.face.detector``). Each implements ``fit``, ``score`` and the state I/O
(``_get_state`` / ``_set_state``); ``decide`` and ``applies_to`` have defaults here.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.calibration import CalibratedMixin
from detect.core.errors import ConfigError, ModelError
from detect.core.params import HasParams
from detect.core.types import DetectorResult, Modality

if TYPE_CHECKING:
    from detect.io.corpus import Corpus

DETECTOR_SCHEMA = "unmask.detector/1"

__all__ = ["DETECTOR_SCHEMA", "Detector", "DetectorResult", "Tags", "load_detector"]


@dataclass(frozen=True)
class Tags:
    """What a detector applies to, so scan/inspect pick the right ones without trying."""

    modality: Modality = Modality.IMAGE
    needs_fit: bool = True
    min_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality.parse(self.modality, "Tags.modality"))


class Detector(HasParams, CalibratedMixin):
    """Base class: the contract and what every family shares (calibration, decisions, saving).

    Subclasses implement ``fit``, ``score``, ``_get_state`` and ``_set_state``.
    """

    tags = Tags()
    name: str = "detector"
    target_fpr: float = 0.01
    seed: int = 0

    def applies_to(self, item: Any) -> bool:
        """Whether this detector can judge ``item`` (by default: the same modality)."""
        return self.tags.modality == item.modality

    def set_params(self, **params: Any) -> Detector:
        """Change hyperparameters, checked by the constructor as at creation (the fitted state
        is kept: refit after changing what training depends on). Unknown names: ConfigError."""
        current = self.get_params()
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise ConfigError(f"{self.name}: unknown parameter(s) {unknown} (has "
                              f"{', '.join(current)})")
        type(self).__init__(self, **{**current, **params})
        return self

    # -- training ----------------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> Detector:
        """Train on ``corpus.split('train')`` and calibrate on ``corpus.split('calib')``."""
        raise NotImplementedError(f"{type(self).__name__} must implement fit")

    def calibrate_on(self, calib: Corpus) -> Detector:
        """Calibrate on the items of ``calib`` this detector's modality covers: score them,
        then ``calibrate(scores, labels)``."""
        view = calib.filter(lambda r: r.modality == self.tags.modality)
        if len(view) == 0:
            raise ConfigError(f"{self.name}: the calib split is empty; calibration needs it")
        self.calibrate(self.score(list(view.iter_items())), view.labels)
        return self

    def _record_training(self, corpus: Corpus, **counts: int) -> None:
        """What ``fit`` saw, saved as ``trained_on`` in config.json."""
        self.trained_on_ = {"corpus": corpus.header.get("name"),
                            "content_hash": corpus.content_hash, **counts}

    # -- scoring and deciding ----------------------------------------------------------------
    def score(self, items: list[Any]) -> np.ndarray:
        """One float64 score per item, higher = more likely synthetic."""
        raise NotImplementedError(f"{type(self).__name__} must implement score")

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> DetectorResult:
        """This detector's result for one item: score, the rule at the target FPR, verdict."""
        return self.calibration_for(target_fpr).decision(score)

    def predict(self, items: list[Any], target_fpr: float | None = None) -> list[str]:
        """Verdicts of ``items`` at the target FPR (the pooled rule, without per-item facts)."""
        cal = self.calibration_for(target_fpr)
        return [cal.verdict(s) for s in self.score(items)]

    # -- state I/O hooks ---------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, JSON metadata) of the fitted state beyond the calibration."""
        raise NotImplementedError(f"{type(self).__name__} must implement _get_state")

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_state")

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` (atomically) in ``directory``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors, meta = self._get_state()
        tensors = {**tensors, **self._calibration_tensors()}
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_file(tensors, str(d / "weights.safetensors.part"), metadata={"format": "np"})
        os.replace(d / "weights.safetensors.part", d / "weights.safetensors")
        config = {
            "schema": DETECTOR_SCHEMA,
            "name": self.name,
            "class": type(self).__name__,
            "params": self.get_params(),
            "calibration": self.calibration_.to_dict(),
            "trained_on": getattr(self, "trained_on_", None),
            "state": meta,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> Detector:
        """The saved detector in ``directory`` (its class comes from config.json's name)."""
        return load_detector(directory, device=device)


def _takes(cls: type, param: str) -> bool:
    return param in inspect.signature(cls.__init__).parameters


def load_detector(directory: str | Path, device: str | None = None) -> Detector:
    """Load a saved detector: class by the registry name in config.json, weights by safetensors.

    ``device`` (e.g. ``"cuda"``) overrides the saved ``device`` parameter of a torch detector;
    detectors without one (numpy models) run where they are and ignore it.
    """
    from safetensors.numpy import load_file

    from detect.core.registry import detectors

    d = Path(directory)
    cfg_path, w_path = d / "config.json", d / "weights.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"{d}: not a saved detector (needs config.json and weights.safetensors)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{cfg_path}: not valid JSON ({e.msg})") from None
    if cfg.get("schema") != DETECTOR_SCHEMA:
        raise ModelError(f"{cfg_path}: schema must be {DETECTOR_SCHEMA!r}, "
                         f"got {cfg.get('schema')!r}")
    params = dict(cfg.get("params", {}))
    try:
        if device is not None and _takes(detectors.get_class(cfg["name"]), "device"):
            params["device"] = device
        det = detectors.create(cfg["name"], **params)
    except (KeyError, ConfigError) as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    try:
        tensors = load_file(str(w_path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{w_path}: unreadable weights ({e})") from None
    if "calib.scores" not in tensors or "calib.labels" not in tensors:
        raise ModelError(f"{w_path}: no calibration scores (calib.scores, calib.labels)")
    det._restore_calibration(tensors, cfg["calibration"])
    det.trained_on_ = cfg.get("trained_on")
    det.model_dir_ = str(d)
    det._load_device = device  # for the models a detector loads in turn (a fusion's members)
    det._set_state(tensors, cfg.get("state") or {})
    return det
