"""Real faces that ship offline, each with the box and landmarks its finder gave.

- ``lfw``: scikit-image's LFW subset (100 faces, 25x25 grey). They are upscaled 4x (bicubic)
  so the face finder sees a face it can measure; the upscale is recorded with the face.
- ``photos``: faces found in the shipped photographs (scikit-image, scikit-learn, opencv-doc).
- ``folder:PATH``: faces found in a user's own pictures.

Every face is its own identity group unless a picture holds several: then the picture is the
group, so no face of one picture can sit in train while another is in test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.face.find import Face, FaceFinder

LFW_UPSCALE = 4


@dataclass
class RealFace:
    name: str  # "lfw:17", "skimage:astronaut#0"
    group: str  # split unit: the picture the face comes from
    image: np.ndarray  # the picture the face sits in (RGB uint8)
    face: Face
    notes: dict[str, Any] = field(default_factory=dict)


def _lfw(finder: FaceFinder, limit: int | None) -> list[RealFace]:
    import cv2
    from skimage import data

    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    out = []
    for i, grey in enumerate(faces[:limit]):
        small = np.repeat((np.clip(grey, 0, 1) * 255).round().astype(np.uint8)[:, :, None], 3, 2)
        h, w = small.shape[:2]
        big = cv2.resize(small, (w * LFW_UPSCALE, h * LFW_UPSCALE), interpolation=cv2.INTER_CUBIC)
        found = finder.find(big)
        notes: dict[str, Any] = {"upscale": LFW_UPSCALE}
        if found:
            face = found[0]
        else:  # the subset is already cropped to the face: use the whole picture, no landmarks
            face = Face((0.0, 0.0, float(big.shape[1]), float(big.shape[0])), 0.0, "pre-cropped")
            notes["finder"] = "no face found; whole picture used"
        out.append(RealFace(f"lfw:{i}", f"lfw:{i}", big, face, notes))
    return out


def _pictures(source: str) -> list[tuple[str, np.ndarray]]:
    from generators.sources import photos

    if source == "photos":
        return [(p.name, p.pixels) for p in photos("photos")]
    if source.startswith("folder:"):
        return [(p.name, p.pixels) for p in photos(source)]
    raise ConfigError(f"unknown real-face source {source!r} (lfw, photos, folder:PATH)")


def real_faces(source: str, finder: FaceFinder, limit: int | None = None) -> list[RealFace]:
    """Faces of a named source, in a stable order."""
    if source == "lfw":
        return _lfw(finder, limit)
    out: list[RealFace] = []
    for name, pixels in _pictures(source):
        for k, face in enumerate(finder.find(pixels)):
            out.append(RealFace(f"{name}#{k}", name, pixels, face))
    return out[:limit]
