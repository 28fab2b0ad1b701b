"""Finding faces and cutting them out the same way every time.

Two finders work offline: MTCNN (its weights ship inside the ``facenet-pytorch`` wheel, which
must be installed with ``--no-deps`` because its metadata pins ancient torch/numpy) and OpenCV's
cascades (Haar in the opencv-python wheel; an LBP cascade XML, e.g. from Debian's opencv-data,
works through ``cascade=PATH``). ``backend="auto"`` takes MTCNN when it is importable.

A crop is one similarity transform (rotate so the eyes are level, scale the box plus a margin to
``size``), applied with ``cv2.warpAffine``; the matrix, the finder, its score and landmarks are
kept in :class:`FaceCrop.record`, so a crop in a corpus or a report can be reproduced exactly.
Training crops and the crops a scan scores come from this one function: a detector never
judges faces cut differently from the ones it learned on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError

__all__ = ["Face", "FaceCrop", "FaceFinder", "crop_face", "find_faces", "grey_rgb"]

BACKENDS = ("auto", "mtcnn", "haar")
HAAR_DEFAULT = "haarcascade_frontalface_default.xml"


@dataclass
class Face:
    """One face: box (x0, y0, x1, y1) in image pixels, finder confidence, optional landmarks
    (5x2: left eye, right eye, nose, mouth left, mouth right; eyes only for cascades)."""

    box: tuple[float, float, float, float]
    score: float
    backend: str
    landmarks: np.ndarray | None = None

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": [round(float(v), 2) for v in self.box],
                             "score": round(float(self.score), 4), "backend": self.backend}
        if self.landmarks is not None:
            d["landmarks"] = np.round(self.landmarks, 2).tolist()
        return d


@dataclass
class FaceCrop:
    pixels: np.ndarray  # size x size x 3 uint8
    landmarks: np.ndarray | None  # in crop coordinates
    record: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _mtcnn(min_face: int, thresholds: tuple[float, float, float]) -> Any:
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu", min_face_size=min_face,
                 thresholds=list(thresholds), post_process=False)


def mtcnn_available() -> bool:
    try:
        import facenet_pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


@functools.cache
def _cascade(path: str) -> Any:
    import cv2

    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise ConfigError(f"{path}: not a loadable OpenCV cascade XML")
    return c


def _cascade_path(name: str) -> str:
    import cv2

    p = Path(name)
    if p.is_file():
        return str(p)
    q = Path(cv2.data.haarcascades) / name
    if q.is_file():
        return str(q)
    known = ", ".join(sorted(x.name for x in Path(cv2.data.haarcascades).glob("*.xml")))
    raise ConfigError(f"cascade {name!r} not found (a path, or one of opencv-python's: {known})")


class FaceFinder:
    """Find faces in an RGB uint8 image. Parameters are recorded in every crop's record."""

    def __init__(self, backend: str = "auto", *, min_face: int = 20, min_score: float = 0.95,
                 cascade: str = HAAR_DEFAULT, max_faces: int = 8):
        if backend not in BACKENDS:
            raise ConfigError(f"face finder backend must be one of {', '.join(BACKENDS)}, "
                              f"got {backend!r}")
        if backend == "mtcnn" and not mtcnn_available():
            raise ConfigError("face finder 'mtcnn' needs facenet-pytorch: pip install --no-deps "
                              "facenet-pytorch (its pins are outdated; torch is already here)")
        self.backend = ("mtcnn" if mtcnn_available() else "haar") if backend == "auto" else backend
        self.min_face, self.min_score = int(min_face), float(min_score)
        self.cascade, self.max_faces = cascade, int(max_faces)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"backend": self.backend, "min_face": self.min_face,
                             "max_faces": self.max_faces}
        if self.backend == "mtcnn":
            d["min_score"] = self.min_score
        else:
            d["cascade"] = Path(self.cascade).name
        return d

    def find(self, image: np.ndarray) -> list[Face]:
        """Faces, largest first (at most ``max_faces``); an empty list when there is none."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ConfigError("FaceFinder.find needs an RGB uint8 image (HxWx3)")
        if min(image.shape[:2]) < self.min_face:
            return []
        faces = self._mtcnn(image) if self.backend == "mtcnn" else self._haar(image)
        faces.sort(key=lambda f: -f.size)
        return faces[: self.max_faces]

    def _mtcnn(self, image: np.ndarray) -> list[Face]:
        import torch

        det = _mtcnn(self.min_face, (0.6, 0.7, 0.7))
        with torch.inference_mode():
            boxes, probs, points = det.detect(np.ascontiguousarray(image), landmarks=True)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        return [Face(tuple(float(v) for v in b), float(p), "mtcnn", lm)
                for b, p, lm in zip(boxes, probs, points, strict=True)
                if p >= self.min_score and min(b[2] - b[0], b[3] - b[1]) >= self.min_face]

    def _haar(self, image: np.ndarray) -> list[Face]:
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        casc = _cascade(_cascade_path(self.cascade))
        rects, _, weights = casc.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_face, self.min_face),
            outputRejectLevels=True)
        eyes = _cascade(_cascade_path("haarcascade_eye.xml"))
        out = []
        for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4),
                                    np.asarray(weights).reshape(-1), strict=True):
            lm = None
            upper = grey[y:y + h // 2, x:x + w]
            found = eyes.detectMultiScale(upper, 1.1, 3, minSize=(max(4, w // 10),) * 2)
            found = sorted(np.asarray(found).reshape(-1, 4).tolist(), key=lambda r: -r[2])[:2]
            if len(found) == 2:
                centres = sorted((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in found)
                lm = np.full((5, 2), np.nan)
                lm[0], lm[1] = centres  # image-left eye first, as MTCNN orders them
            level = min(50.0, max(-50.0, float(wt)))  # the cascade's margin, squashed to (0, 1)
            out.append(Face((float(x), float(y), float(x + w), float(y + h)),
                            1 / (1 + math.exp(-level)), "haar", lm))
        return out


def find_faces(image: np.ndarray, backend: str = "auto") -> list[Face]:
    return FaceFinder(backend).find(image)


def _eye_angle(lm: np.ndarray | None) -> float | None:
    if lm is None or not np.all(np.isfinite(lm[:2])):
        return None
    (lx, ly), (rx, ry) = lm[0], lm[1]
    if rx - lx <= 0:
        return None
    return math.degrees(math.atan2(ry - ly, rx - lx))


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """The image in grey, still three channels: the colour rule of grey face corpora, applied
    alike to their crops and to the crops a detector trained on them scores."""
    import cv2

    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def crop_face(image: np.ndarray, face: Face, size: int = 32, *, margin: float = 0.15,
              align: bool = True) -> FaceCrop:
    """The face's box grown by ``margin`` on each side, squared, rotated so the eyes are level
    (when landmarks give both eyes), resampled to ``size`` x ``size``. Pixels outside the image
    are mirrored (``BORDER_REFLECT_101``), so a face at the edge still gives a full crop."""
    import cv2

    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    angle = _eye_angle(face.landmarks) if align else None
    scale = size / max(side, 1e-6)
    # rotate about the box centre by the eye angle, scale, then move the centre to the crop's
    m = cv2.getRotationMatrix2D((cx, cy), angle or 0.0, scale)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    pixels = cv2.warpAffine(image, m, (size, size), flags=interp,
                            borderMode=cv2.BORDER_REFLECT_101)
    lm = None
    if face.landmarks is not None:
        pts = np.c_[face.landmarks, np.ones(len(face.landmarks))]
        lm = pts @ m.T
    record = {"face": face.to_dict(), "size": size, "margin": margin,
              "angle": None if angle is None else round(angle, 3),
              "matrix": np.round(m, 6).tolist(),
              "interpolation": "area" if scale < 1 else "linear"}
    return FaceCrop(np.ascontiguousarray(pixels), lm, record)
