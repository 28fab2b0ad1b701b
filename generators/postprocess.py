"""Post-processing a recipe applies to real and synthetic items alike (``[[postprocess]]``),
so both classes carry the same encoder history and a detector cannot win on it. The same
functions back the benchmark attacks of the same names."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from detect.errors import ConfigError


def jpeg(img: np.ndarray, quality: int = 90, subsampling: str = "4:2:0") -> np.ndarray:
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


STEPS = {"jpeg": jpeg, "resize": resize}


def check(steps: list[dict[str, Any]], where: str = "recipe") -> None:
    for st in steps:
        name = st.get("op")
        if name not in STEPS:
            raise ConfigError(f"{where}: [[postprocess]] op must be one of {', '.join(STEPS)}, "
                              f"got {name!r}")


def apply(img: np.ndarray, steps: list[dict[str, Any]]) -> tuple[np.ndarray, list[dict]]:
    """Run the steps in order; return the image and the transforms to record in provenance."""
    done = []
    for st in steps:
        kwargs = {k: v for k, v in st.items() if k != "op"}
        img = STEPS[st["op"]](img, **kwargs)
        done.append(dict(st))
    return img, done
