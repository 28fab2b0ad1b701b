"""The detector contract, scikit-learn style.

``__init__`` stores hyperparameters and nothing else; ``fit`` trains on the corpus' train split
and calibrates on its calib split; state learned from data ends in ``_``. Image detectors work
on square patches: training crops patches, and ``score`` tiles an image of any size at native
resolution (no blind resize) and averages the patch scores, so a 4000x3000 photo and a 32x32
training patch are judged by the same function. Saved models are ``config.json`` +
``weights.safetensors``; ``load`` finds the class by its registry name, never by a path or
a pickle taken from the file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.calibration import Calibration
from detect.core.errors import ConfigError, InputError, ModelError
from detect.core.params import HasParams

if TYPE_CHECKING:
    from detect.io.corpus import Corpus

DETECTOR_SCHEMA = "unmask.detector/1"


@dataclass(frozen=True)
class Tags:
    """What a detector applies to, so scan/inspect pick the right ones without trying."""

    modality: str = "image"
    needs_fit: bool = True
    min_size: int = 8


def as_image(x: Any) -> np.ndarray:
    """Accept an Item or an array; return an HxWx3 uint8 array."""
    arr = getattr(x, "content", x)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 \
            or arr.shape[2] != 3:
        where = getattr(x, "path", "input")
        raise InputError(where, "expected a decoded RGB image (HxWx3 uint8)")
    return arr


def tile_positions(h: int, w: int, patch: int, max_tiles: int) -> list[tuple[int, int]]:
    """Non-overlapping patch corners covering the image; evenly thinned past ``max_tiles``."""
    ys = list(range(0, h - patch + 1, patch)) or [0]
    xs = list(range(0, w - patch + 1, patch)) or [0]
    pos = [(y, x) for y in ys for x in xs]
    if len(pos) > max_tiles:
        idx = np.linspace(0, len(pos) - 1, max_tiles).round().astype(int)
        pos = [pos[i] for i in idx]
    return pos


def tiles(img: np.ndarray, patch: int, max_tiles: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Cut patches at native resolution; images smaller than a patch are reflect-padded."""
    h, w = img.shape[:2]
    if h < patch or w < patch:
        ph, pw = max(0, patch - h), max(0, patch - w)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        h, w = img.shape[:2]
    pos = tile_positions(h, w, patch, max_tiles)
    return np.stack([img[y:y + patch, x:x + patch] for y, x in pos]), pos


def random_crops(images: list[np.ndarray], patch: int, rng: np.random.Generator) -> np.ndarray:
    """One random patch per image (the whole image when it already is patch-sized)."""
    out = []
    for img in images:
        h, w = img.shape[:2]
        if h < patch or w < patch:
            out.append(tiles(img, patch, 1)[0][0])
            continue
        y = int(rng.integers(0, h - patch + 1))
        x = int(rng.integers(0, w - patch + 1))
        out.append(img[y:y + patch, x:x + patch])
    return np.stack(out)


class Detector(HasParams):
    """Base class. Subclasses implement ``_fit_patches``, ``_score_patches`` and the state I/O."""

    tags = Tags()
    name: str = "detector"

    # Patch-based defaults; subclasses accept these as constructor arguments.
    patch: int = 32
    max_tiles: int = 64
    target_fpr: float = 0.01
    seed: int = 0

    def applies_to(self, item: Any) -> bool:
        """Whether this detector can judge ``item``. Image detectors also take a video: they
        score its sampled frames (see ``score``)."""
        return self.tags.modality == item.modality or (
            self.tags.modality == "image" and item.modality == "video")

    # -- training ----------------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> Detector:
        """Train on ``corpus.split('train')`` and calibrate on ``corpus.split('calib')``."""
        train = corpus.split("train").filter(lambda r: r.modality == self.tags.modality)
        if len(train) == 0 or len(set(train.labels.tolist())) < 2:
            raise ConfigError(f"{self.name}: the train split needs both real and synthetic "
                              f"{self.tags.modality} items")
        images = [as_image(it) for it in train.iter_items()]
        rng = np.random.default_rng(self.seed)
        self._fit_images(images, train.labels, rng)
        self.trained_on_ = {"corpus": corpus.header.get("name"),
                            "content_hash": corpus.content_hash, "n_train": len(train)}
        self.calibrate(corpus.split("calib"))
        return self

    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        patches = random_crops(images, self.patch, rng)
        self._fit_patches(patches, labels, rng)

    def calibrate(self, calib: Corpus) -> Detector:
        """Choose ``threshold_`` at ``target_fpr`` on held-out calibration items."""
        calib = calib.filter(lambda r: r.modality == self.tags.modality)
        if len(calib) == 0:
            raise ConfigError(f"{self.name}: the calib split is empty; calibration needs it")
        scores = self.score(list(calib.iter_items()))
        self.calib_scores_ = scores.astype(np.float64)
        self.calib_labels_ = calib.labels.astype(np.int64)
        self.calibration_ = Calibration.fit(scores, calib.labels, self.target_fpr)
        return self

    def calibration_for(self, target_fpr: float | None = None) -> Calibration:
        """The decision rule at the saved FPR, or re-derived from saved calibration scores."""
        self._check_fitted()
        return self._rule_at(self.calibration_, self.calib_scores_, self.calib_labels_,
                             target_fpr)

    def _rule_at(self, saved: Calibration, scores: np.ndarray, labels: np.ndarray,
                 target_fpr: float | None) -> Calibration:
        """``saved`` at its own FPR; another FPR's rule re-derived from the calibration scores
        it was fitted on, once per set of scores (a scan asks once per file)."""
        if target_fpr is None or math.isclose(target_fpr, saved.target_fpr):
            return saved
        key = (target_fpr, id(scores))
        cache = self.__dict__.setdefault("_calibration_cache", {})
        if key not in cache:
            cache[key] = Calibration.fit(scores, labels, target_fpr)
        return cache[key]

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> dict[str, Any]:
        """This detector's result for one item: score, the rule at the target FPR, verdict.
        (Text detectors add the length bucket and an "uncertain" reason.)"""
        return self.calibration_for(target_fpr).decision(score)

    @property
    def threshold_(self) -> float:
        self._check_fitted()
        return self.calibration_.threshold

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise ModelError(f"{self.name} is not fitted: call fit() or load a saved model")

    # -- scoring -----------------------------------------------------------------------------
    def score(self, items: list[Any]) -> np.ndarray:
        """One score per item, higher = more likely synthetic (mean over native-res tiles).

        Tiles of many items are scored in one batch, so small images cost one model call. A
        video scores as the mean of its sampled frames (each frame at the image calibration).
        """
        if any(getattr(it, "modality", None) == "video" for it in items):
            return np.array([self._score_video(it) if getattr(it, "modality", None) == "video"
                             else self.score([it])[0] for it in items], dtype=np.float64)
        out = np.empty(len(items), dtype=np.float64)
        pending: list[tuple[int, np.ndarray]] = []
        n_tiles = 0
        for i, it in enumerate(items):
            patches, _ = self._tiles_of(it)
            pending.append((i, patches))
            n_tiles += len(patches)
            if n_tiles >= 512 or i == len(items) - 1:
                scores = self._score_patches(np.concatenate([p for _, p in pending]))
                k = 0
                for j, p in pending:
                    out[j] = float(scores[k:k + len(p)].mean())
                    k += len(p)
                pending, n_tiles = [], 0
        return out

    def _score_video(self, item: Any) -> float:
        from detect.io.video import decoded

        frames = decoded(item).frames
        return float(np.mean(self.score(frames))) if frames else math.nan

    def _tiles_of(self, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        img = as_image(item)
        if min(img.shape[:2]) < self.tags.min_size:
            raise InputError(getattr(item, "path", "input"),
                             f"image {img.shape[1]}x{img.shape[0]} is smaller than {self.name}'s "
                             f"minimum side {self.tags.min_size}")
        return tiles(img, self.patch, self.max_tiles)

    def score_tiles(self, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Per-patch scores and their top-left corners: the raw material of a heat map."""
        patches, pos = self._tiles_of(item)
        return self._score_patches(patches).astype(np.float64), pos

    def predict(self, items: list[Any], target_fpr: float | None = None) -> list[str]:
        cal = self.calibration_for(target_fpr)
        return [cal.verdict(s) for s in self.score(items)]

    # -- subclass hooks ----------------------------------------------------------------------
    def _fit_patches(self, patches: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors, meta = self._get_state()
        tensors = {**tensors, "calib.scores": self.calib_scores_,
                   "calib.labels": self.calib_labels_}
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
    def load(cls, directory: str | Path) -> Detector:
        return load_detector(directory)


def load_detector(directory: str | Path) -> Detector:
    """Load a saved detector: class by the registry name in config.json, weights by safetensors."""
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
    try:
        det = detectors.create(cfg["name"], **cfg.get("params", {}))
    except (KeyError, ConfigError) as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    try:
        tensors = load_file(str(w_path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{w_path}: unreadable weights ({e})") from None
    det.calib_scores_ = tensors.pop("calib.scores")
    det.calib_labels_ = tensors.pop("calib.labels")
    det.calibration_ = Calibration.from_dict(cfg["calibration"])
    det.trained_on_ = cfg.get("trained_on")
    det.model_dir_ = str(d)
    det._set_state(tensors, cfg.get("state") or {})
    return det
