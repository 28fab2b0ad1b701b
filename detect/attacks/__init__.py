"""Post-processing attacks, applied to real and synthetic images alike: the implementations
behind the ``attacks`` registry (text attacks are in :mod:`detect.attacks.text`).

Each attack is deterministic for its parameters (and seed, where random) and is recorded in a
sample's ``transforms`` so a corpus says exactly what was done to it. The same operations serve
a recipe's ``[[postprocess]]`` (:mod:`generators.postprocess`) and the CNN detector's training
augmentation, so a corpus, an augmentation and a benchmark attack of one name are one thing.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np

from detect.core.errors import ConfigError


class Attack:
    name = "attack"

    def params(self) -> dict[str, Any]:
        # the registry's name and the runner's spec label an instance; they are not parameters
        return {k: v for k, v in self.__dict__.items() if k not in ("name", "spec")}

    def describe(self) -> dict[str, Any]:
        return {"attack": self.name, **self.params()}

    def __call__(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _pil(img: np.ndarray):  # noqa: ANN202
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(img), "RGB")


def jpeg(img: np.ndarray, quality: int = 75, subsampling: str = "4:2:0") -> np.ndarray:
    """Re-encode as JPEG with Pillow and decode again."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), "RGB").save(
        buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def resize(img: np.ndarray, scale: float = 0.5, method: str = "bicubic") -> np.ndarray:
    from PIL import Image

    methods = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
               "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}
    if method not in methods:
        raise ConfigError(f"resize method must be one of {', '.join(methods)}")
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(img), "RGB").resize(size,
                                                                               methods[method]))


def blur(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    from PIL import ImageFilter

    return np.asarray(_pil(img).filter(ImageFilter.GaussianBlur(float(sigma))))


class JPEG(Attack):
    name = "jpeg"

    def __init__(self, quality: int = 75, subsampling: str = "4:2:0"):
        self.quality, self.subsampling = int(quality), subsampling

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return jpeg(img, self.quality, self.subsampling)


class Resize(Attack):
    name = "resize"

    def __init__(self, scale: float = 0.5, method: str = "bicubic"):
        self.scale, self.method = float(scale), method

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return resize(img, self.scale, self.method)


class Blur(Attack):
    name = "blur"

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(sigma)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return blur(img, self.sigma)


class Noise(Attack):
    name = "noise"

    def __init__(self, sigma: float = 5.0, seed: int = 0):
        self.sigma, self.seed = float(sigma), int(seed)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        # seeded by the image itself: deterministic, yet a different field for every image
        digest = hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "big")])
        noisy = img.astype(np.float64) + rng.normal(0, self.sigma, img.shape)
        return np.clip(noisy.round(), 0, 255).astype(np.uint8)


class Crop(Attack):
    name = "crop"

    def __init__(self, fraction: float = 0.8):
        self.fraction = float(fraction)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        ch, cw = max(1, round(h * self.fraction)), max(1, round(w * self.fraction))
        y, x = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(img[y:y + ch, x:x + cw])


class Brightness(Attack):
    name = "brightness"

    def __init__(self, factor: float = 1.2):
        self.factor = float(factor)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import ImageEnhance

        return np.asarray(ImageEnhance.Brightness(_pil(img)).enhance(self.factor))


class Rotate(Attack):
    """Rotation about the centre, same canvas size (corners filled black), as a re-upload
    with a slight tilt correction would do."""

    name = "rotate"

    def __init__(self, degrees: float = 2.0):
        self.degrees = float(degrees)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        return np.asarray(_pil(img).rotate(self.degrees, resample=Image.Resampling.BICUBIC))
