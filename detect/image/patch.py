"""Image detectors that judge square patches.

Training crops one random patch per image; ``score`` tiles an image of any size at native
resolution (no blind resize) and averages the patch scores, so a 4000x3000 photo and a 32x32
training patch are judged by the same function. A video scores as the mean of its sampled
frames, each at the image calibration. Subclasses implement ``_fit_patches`` (or override
``_fit_images``), ``_score_patches`` and the state I/O (``_get_state`` / ``_set_state``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.detector import Detector, Tags
from detect.core.errors import ConfigError, InputError
from detect.core.types import Modality

if TYPE_CHECKING:
    from detect.io.corpus import Corpus


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


def smaller_than_tile(result: Any, item: Any, patch: int, name: str) -> Any:
    """``result`` made ``uncertain`` (stepping aside, with the reason) when the still image
    ``item`` is smaller than a ``patch`` tile on a side: it would be judged on a reflect-padded
    tile, a picture no calibration item looked like, so the FPR the threshold holds does not
    carry to it (measured: 16% of held-out real photos halved to 128 px flagged at a 1%
    threshold by the 192 px tile line)."""
    if getattr(item, "modality", None) == Modality.VIDEO or result.verdict == "error":
        return result
    try:
        h, w = as_image(item).shape[:2]
    except InputError:  # not a decoded picture: nothing to say about its size
        return result
    if min(h, w) < patch:
        result.verdict, result.decides = "uncertain", False
        result.reason = (f"image {w}x{h} is smaller than the {patch} px tile {name} was "
                         "calibrated on (it would be judged on a reflect-padded tile): no "
                         "verdict at the target FPR")
    return result


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


class PatchDetector(Detector):
    """Base of the image detectors that tile (spectrum, CNN, NPR, reconstruction)."""

    tags = Tags(modality=Modality.IMAGE, needs_fit=True, min_size=8)

    # constructor arguments of every subclass (read back by get_params)
    patch: int = 32
    max_tiles: int = 64

    def applies_to(self, item: Any) -> bool:
        """Images, and videos: those are scored by their sampled frames (see ``score``)."""
        return item.modality in (Modality.IMAGE, Modality.VIDEO)

    # -- training ----------------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> PatchDetector:
        """Train on the train split's images and calibrate on the calib split's."""
        train = corpus.split("train").filter(lambda r: r.modality == self.tags.modality)
        if len(train) == 0 or len(set(train.labels.tolist())) < 2:
            raise ConfigError(f"{self.name}: the train split needs both real and synthetic "
                              f"{self.tags.modality} items")
        images = [as_image(it) for it in train.iter_items()]
        rng = np.random.default_rng(self.seed)
        self._fit_images(images, train.labels, rng)
        self._record_training(corpus, n_train=len(train))
        self.calibrate_on(corpus.split("calib"))
        return self

    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        patches = random_crops(images, self.patch, rng)
        self._fit_patches(patches, labels, rng)

    def _fit_patches(self, patches: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit_patches or "
                                  "_fit_images")

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _score_patches")

    # -- scoring -----------------------------------------------------------------------------
    def score(self, items: list[Any]) -> np.ndarray:
        """One score per item, higher = more likely synthetic (mean over native-res tiles).

        Tiles of many items are scored in one batch, so small images cost one model call. A
        video scores as the mean of its sampled frames (each frame at the image calibration).
        """
        if any(getattr(it, "modality", None) == Modality.VIDEO for it in items):
            return np.array([self._score_video(it)
                             if getattr(it, "modality", None) == Modality.VIDEO
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

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> Any:
        """As every detector's, but ``uncertain`` for a picture smaller than one tile."""
        return smaller_than_tile(super().decide(item, score, target_fpr), item, self.patch,
                                 self.name)

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
