"""A small video encoder for tests and corpora: RGB frames to the bytes of a file, through
OpenCV's FFmpeg writer, with the codecs this OpenCV build can really write found by trying."""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detect.core.errors import ConfigError
from detect.io.opencv import opencv, quiet

# codec name -> (fourcc, file suffix of the container it is written in)
CODECS: dict[str, tuple[str, str]] = {
    "mjpeg": ("MJPG", ".avi"),
    "mp4v": ("mp4v", ".mp4"),
    "xvid": ("XVID", ".avi"),
    "h264": ("avc1", ".mp4"),
}


@functools.cache
def available_codecs() -> list[str]:
    """Names in :data:`CODECS` that this OpenCV build can write, in that order.

    Builds differ (pip wheels ship no H.264 encoder), so this is tried, not assumed: each
    codec writes two tiny frames to a temporary file. Cached for the process.
    """
    frame = np.zeros((16, 16, 3), np.uint8)
    found = []
    with tempfile.TemporaryDirectory(prefix="unmask-codecs-") as tmp, quiet():
        for codec in CODECS:
            if _write(Path(tmp), codec, [frame, frame], 12.0):
                found.append(codec)
    return found


def encode_video(frames: Sequence[np.ndarray], codec: str = "mjpeg", fps: float = 12.0) -> bytes:
    """Encode RGB ``uint8`` frames (all the same shape) and return the file's bytes.

    The container follows the codec (see :data:`CODECS`). OpenCV's writer silently crops
    odd widths and heights to even ones, so an odd side is padded by repeating its last
    row or column instead: a 63x47 clip decodes as 64x48, with no pixel lost. Raises
    ConfigError for an unknown codec, one this OpenCV build cannot encode, or bad frames.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown video codec {codec!r}; known: {', '.join(CODECS)}")
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps!r}")
    frames = list(frames)
    if not frames:
        raise ConfigError("encode_video needs at least one frame")
    first = frames[0]
    for i, f in enumerate(frames):
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            got = (f"{f.dtype} array of shape {f.shape}" if isinstance(f, np.ndarray)
                   else type(f).__name__)
            raise ConfigError(f"frame {i} must be an RGB uint8 (H, W, 3) array, got {got}")
        if f.shape != first.shape:
            raise ConfigError(f"all frames must have the same shape: frame 0 is {first.shape}, "
                              f"frame {i} is {f.shape}")
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]
    with tempfile.TemporaryDirectory(prefix="unmask-encode-") as tmp, quiet():
        data = _write(Path(tmp), codec, frames, fps)
    if data is not None:
        return data
    h, w = frames[0].shape[:2]
    available = available_codecs()
    if codec in available:
        raise ConfigError(f"OpenCV's {codec} writer failed on {w}x{h} frames at {fps:g} fps")
    raise ConfigError(f"this OpenCV build cannot encode {codec}; "
                      f"available: {', '.join(available) or 'none'}")


def _write(folder: Path, codec: str, frames: list[np.ndarray], fps: float) -> bytes | None:
    """The encoded file's bytes, or None when OpenCV cannot write this codec/size."""
    cv2 = opencv()
    fourcc, suffix = CODECS[codec]
    path = folder / f"clip-{codec}{suffix}"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc),
                             float(fps), (int(w), int(h)))
    try:
        if not writer.isOpened():
            return None
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    data = path.read_bytes() if path.exists() else b""
    return data or None
