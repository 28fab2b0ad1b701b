"""OpenCV's FFmpeg as reading and writing videos use it: its log and FFmpeg's silenced (a
damaged file is reported as an InputError, never logged), bytes staged in a temporary file
named by us, a capture that names the damage when it cannot open. cv2 is imported on first
use."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from detect.io.video_damage import damaged

_SUFFIXES = {"avi": ".avi", "mp4": ".mp4", "mov": ".mov", "mkv": ".mkv", "webm": ".webm"}


def opencv() -> Any:
    """Import cv2, first asking its FFmpeg to stay quiet.

    FFmpeg prints its own complaints ("[mjpeg @ 0x...] EOI missing") straight to stderr,
    which OpenCV's log level does not cover; its level is read once, when OpenCV first
    initialises FFmpeg. Every such problem reaches the caller as an InputError instead. A
    user who wants FFmpeg's diagnostics sets OPENCV_FFMPEG_LOGLEVEL themselves.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    import cv2

    return cv2


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence OpenCV's own log while we read (a damaged file is reported, not logged)."""
    cv2 = opencv()
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


@contextlib.contextmanager
def staged(data: bytes, container: str) -> Iterator[str]:
    """Write the bytes where FFmpeg can open them; the file never outlives the call."""
    suffix = _SUFFIXES.get(container, ".bin")
    fd, name = tempfile.mkstemp(prefix="unmask-video-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


@contextlib.contextmanager
def capture(path: str, label: str, data: bytes) -> Iterator[Any]:
    cv2 = opencv()
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise damaged(label, "corrupt or unsupported video (OpenCV/FFmpeg cannot open it)",
                           data)
        yield cap
    finally:
        cap.release()
