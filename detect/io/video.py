"""Bounded, honest decoding of video frames, and a small encoder for tests and corpora.

:func:`detect.io.media.load` only sniffs a video and keeps its bytes; this module turns those
bytes into a handful of RGB frames when a detector asks for them. Inputs are untrusted, so
the header's frame size, frame count and duration are checked against
:class:`~detect.io.media.Limits` before any frame is decoded, and every failure becomes an
:class:`~detect.core.errors.InputError` naming the file.

Decoding goes through OpenCV's FFmpeg backend, which only reads files: bytes are staged in a
temporary file named by us (never a caller's path, which FFmpeg could read as a URL or an
image-sequence pattern) and deleted afterwards. Frames are read strictly sequentially with
``grab`` and converted with ``retrieve`` only when wanted: seeking in a damaged or
variable-frame-rate file lands on the wrong frame, sequential reading does not.

Header frame counts are not always the number of frames FFmpeg delivers: AVI files from
capture software count "repeat the previous frame" entries (OpenCV's own ``tree.avi``
declares 444 frames and holds 68 pictures) and Matroska counts are estimated from the
duration. A shortfall is therefore only called truncation when the last decodable frame's
timestamp is short of the declared end; otherwise the decoded count is used.

cv2 is imported inside functions so that ``import detect.io.video`` stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, InputError
from detect.core.types import Item
from detect.io.media import Limits, load, load_bytes

__all__ = [
    "CODECS",
    "FrameSampling",
    "Video",
    "available_codecs",
    "encode_video",
    "probe_video",
    "read_video",
]

# codec name -> (fourcc, file suffix of the container it is written in)
CODECS: dict[str, tuple[str, str]] = {
    "mjpeg": ("MJPG", ".avi"),
    "mp4v": ("mp4v", ".mp4"),
    "xvid": ("XVID", ".avi"),
    "h264": ("avc1", ".mp4"),
}
_SUFFIXES = {"avi": ".avi", "mp4": ".mp4", "mov": ".mov", "mkv": ".mkv", "webm": ".webm"}
# Frame counts that come from an index (AVI, MP4/MOV) are exact; Matroska/WebM ones are
# duration x fps, which can be one frame off without anything being wrong with the file.
_COUNT_SLACK = {"mkv": 1, "webm": 1}
_MODES = ("uniform", "every")


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video to decode.

    ``"uniform"`` spreads ``n`` frames evenly over the whole video, first and last included,
    so a detector sees all of it whatever its length. ``"every"`` keeps every ``every``-th
    frame from the start, at most ``n`` of them, for detectors that need consecutive motion.
    """

    mode: str = "uniform"
    n: int = 32
    every: int = 1

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"frame sampling mode must be one of {', '.join(_MODES)}, "
                              f"got {self.mode!r}")
        for key in ("n", "every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"frame sampling {key} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"frame sampling {key} must be >= 1, got {value}")

    def describe(self) -> dict[str, Any]:
        """JSON-able form, recorded in each Video so a score says which frames it saw."""
        return {"mode": self.mode, "n": int(self.n), "every": int(self.every)}


@dataclass
class Video:
    """Sampled frames of one video.

    ``frames`` are RGB ``uint8`` arrays (H, W, 3) in the size FFmpeg decoded them (a stream
    may change size midway, so shapes can differ). ``indices`` count decoded frames from 0.
    ``times`` are presentation times in seconds (``index / fps`` for a constant frame rate);
    when the file carries no timestamps they are ``index / fps``, or the bare index if the
    frame rate is unknown too (``meta["fps"]`` is then None).

    ``meta`` holds fps, frame_count (decoded when reading reached the end, else declared),
    declared_frames (the header's count, None if unknown), duration_s, width and height (of
    the first sampled frame), codec (fourcc), container, sampling and decoded_frames (how many
    frames FFmpeg decoded to produce this sample: the cost, not ``len(frames)``).
    """

    frames: list[np.ndarray]
    indices: list[int]
    times: list[float]
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def read_video(
    source: Item | bytes | str | os.PathLike[str],
    limits: Limits = Limits(),
    sampling: FrameSampling = FrameSampling(),
    *,
    name: str | None = None,
) -> Video:
    """Decode the frames ``sampling`` asks for from a video Item, raw bytes or a path.

    Paths and bytes go through :func:`detect.io.media.load` first, so the same size and
    format checks apply as in a scan. ``name`` labels errors (default: the Item's path,
    the path, or ``"<bytes>"``). Raises InputError for anything unusable: not a video,
    unopenable, over a limit, no decodable frame, or truncated.
    """
    item, label = _as_item(source, limits, name)
    data = bytes(item.content)
    with _staged(data, item.format) as path, _quiet(), _capture(path, label, data) as cap:
        info = _header(cap, item.format, label, limits)
        declared = info["frame_count"]
        fps = info["fps"]
        if declared is None:
            video = _read_unknown_length(cap, path, data, label, limits, sampling, fps)
        else:
            video = _read_known_length(cap, path, data, label, limits, sampling, info)
    meta = dict(info)
    meta.update(video.meta)
    meta["declared_frames"] = declared
    # The header's count times the frame period is the container's duration; when the
    # header counts frames FFmpeg skips (AVI null frames) the decoded count would understate it.
    count = declared or meta["frame_count"]
    meta["duration_s"] = count / fps if (fps and count) else None
    if video.frames:
        meta["height"], meta["width"] = (int(s) for s in video.frames[0].shape[:2])
    meta["sampling"] = sampling.describe()
    video.meta = meta
    return video


def probe_video(
    source: Item | bytes | str | os.PathLike[str],
    limits: Limits = Limits(),
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """What the container says (fps, frame_count, duration_s, width, height, codec,
    container), checked against ``limits`` but without decoding a frame.

    Cheap enough to run on every input of a scan; a file that passes may still turn out
    truncated when :func:`read_video` decodes it.
    """
    item, label = _as_item(source, limits, name)
    data = bytes(item.content)
    with _staged(data, item.format) as path, _quiet(), _capture(path, label, data) as cap:
        return _header(cap, item.format, label, limits)


def _as_item(
    source: Item | bytes | str | os.PathLike[str], limits: Limits, name: str | None
) -> tuple[Item, str]:
    video_only = ("video",)
    if isinstance(source, Item):
        label = name or source.path
        if source.modality != "video":
            raise InputError(label, f"{source.modality} input, not a video")
        if not isinstance(source.content, bytes | bytearray | memoryview):
            raise InputError(label, "video item holds no bytes (load it with detect.io.media.load)")
        return source, label
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "<bytes>"
        return load_bytes(bytes(source), label, limits, modalities=video_only), label
    if isinstance(source, str | os.PathLike):
        label = name or str(source)
        item = load(source, limits, modalities=video_only)
        return item, label
    raise TypeError(f"read_video needs an Item, bytes or a path, got {type(source).__name__}")


@contextlib.contextmanager
def _staged(data: bytes, container: str) -> Iterator[str]:
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


def _cv2() -> Any:
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
def _quiet() -> Iterator[None]:
    """Silence OpenCV's own log while we read (a damaged file is reported, not logged)."""
    cv2 = _cv2()
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


@contextlib.contextmanager
def _capture(path: str, label: str, data: bytes) -> Iterator[Any]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise _damaged(label, "corrupt or unsupported video (OpenCV/FFmpeg cannot open it)",
                           data)
        yield cap
    finally:
        cap.release()


def _header(cap: Any, container: str, label: str, limits: Limits) -> dict[str, Any]:
    """Read and check what the container declares, before decoding anything."""
    cv2 = _cv2()
    width = _positive_int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = _positive_int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps_raw = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps_raw) if math.isfinite(fps_raw) and fps_raw > 0 else None
    count = _positive_int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if width and height:
        _check_pixels(label, width, height, limits)
    if count is not None and count > limits.max_frames:
        raise InputError(label, f"too many frames ({count} declared > limit {limits.max_frames})")
    duration = count / fps if (count and fps) else None
    if duration is not None:
        _check_duration(label, duration, limits)
    return {
        "container": container,
        "codec": _fourcc(cap.get(cv2.CAP_PROP_FOURCC)),
        "width": width,
        "height": height,
        "fps": fps,
        "frame_count": count,
        "duration_s": duration,
    }


def _check_pixels(label: str, width: int, height: int, limits: Limits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels:
        raise InputError(
            label, f"frame {width}x{height} = {pixels} pixels > limit {limits.max_pixels}"
        )


def _check_duration(label: str, duration: float, limits: Limits) -> None:
    if duration > limits.max_duration_s:
        raise InputError(
            label, f"video too long ({duration:.1f} s > limit {limits.max_duration_s:g} s)"
        )


def _positive_int(value: float) -> int | None:
    """OpenCV reports unknown properties as 0, -1 or NaN; all mean "not known"."""
    if not math.isfinite(value) or value < 1:
        return None
    return int(round(value))


def _fourcc(value: float) -> str | None:
    if not math.isfinite(value) or int(value) == 0:
        return None
    raw = (int(value) & 0xFFFFFFFF).to_bytes(4, "little")
    text = "".join(chr(b) for b in raw if 32 < b < 127)
    return text or None


# --------------------------------------------------------------------------- decoding


@dataclass
class _Pass:
    """One sequential read: the frames kept and where decoding stopped."""

    frames: list[np.ndarray] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    grabbed: int = 0
    last_time: float | None = None  # timestamp (s) of the last decoded frame, if known
    ended: bool = False  # True when FFmpeg ran out of frames (end of file or damage)


def _decode(
    cap: Any,
    want: Callable[[int, _Pass], bool],
    stop: int | None,
    fps: float | None,
    label: str,
    limits: Limits,
) -> _Pass:
    """Grab frames 0, 1, ... until ``stop`` (or the end), converting only wanted ones.

    With ``stop=None`` the length is unknown, so the frame and duration limits are enforced
    as frames arrive instead of from the header.
    """
    cv2 = _cv2()
    result = _Pass()
    index = 0
    while stop is None or index < stop:
        if not cap.grab():
            result.ended = True
            break
        result.grabbed = index + 1
        stamp = _timestamp(cap.get(cv2.CAP_PROP_POS_MSEC), index)
        result.last_time = stamp
        if stop is None:
            if result.grabbed > limits.max_frames:
                raise InputError(
                    label, f"too many frames (more than limit {limits.max_frames})"
                )
            if fps:
                _check_duration(label, result.grabbed / fps, limits)
        if want(index, result):
            ok, bgr = cap.retrieve()
            if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
                raise InputError(label, f"truncated or corrupt video: frame {index} "
                                        "was read but cannot be decoded")
            _check_pixels(label, int(bgr.shape[1]), int(bgr.shape[0]), limits)
            result.frames.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            result.indices.append(index)
            if stamp is not None:
                result.times.append(stamp)
            else:
                result.times.append(index / fps if fps else float(index))
        index += 1
    return result


def _timestamp(msec: float, index: int) -> float | None:
    """OpenCV reports 0 ms when a frame has no timestamp; only frame 0 may really be at 0."""
    if not math.isfinite(msec) or msec < 0 or (msec == 0 and index > 0):
        return None
    return msec / 1000.0


def _uniform(count: int, n: int) -> list[int]:
    k = min(n, count)
    return sorted({int(i) for i in np.linspace(0, count - 1, k).round()})


def _every(count: int, sampling: FrameSampling) -> list[int]:
    return list(range(0, count, sampling.every))[: sampling.n]


def _wanting(indices: Sequence[int]) -> Callable[[int, _Pass], bool]:
    wanted = frozenset(indices)
    return lambda index, _: index in wanted


def _read_known_length(
    cap: Any,
    path: str,
    data: bytes,
    label: str,
    limits: Limits,
    sampling: FrameSampling,
    info: dict[str, Any],
) -> Video:
    declared: int = info["frame_count"]
    fps: float | None = info["fps"]
    wanted = (_uniform(declared, sampling.n) if sampling.mode == "uniform"
              else _every(declared, sampling))
    stop = wanted[-1] + 1
    got = _decode(cap, _wanting(wanted), stop, fps, label, limits)
    count = declared
    if got.grabbed < stop:
        if got.grabbed == 0:
            raise _damaged(label, _NO_FRAMES, data)
        if not _reached_declared_end(got, declared, fps, info["container"]):
            raise _damaged(label, f"truncated or corrupt video: header declares {declared} "
                                  f"frames, only {got.grabbed} decodable", data)
        # The file is whole; its header counted frames FFmpeg never delivers (AVI "drop"
        # entries, a rounded Matroska estimate). Sample again over the frames that exist.
        count = got.grabbed
        if sampling.mode == "uniform":
            with _capture(path, label, data) as again:
                wanted = _uniform(count, sampling.n)
                got2 = _decode(again, _wanting(wanted), wanted[-1] + 1, fps, label, limits)
            if got2.grabbed < wanted[-1] + 1:  # the decoder disagrees with itself: give up
                raise InputError(label, f"truncated or corrupt video: header declares "
                                        f"{declared} frames, only {got2.grabbed} decodable")
            got2.grabbed += got.grabbed
            got = got2
    return _video(got, count)


def _reached_declared_end(got: _Pass, declared: int, fps: float | None, container: str) -> bool:
    """True when the last decodable frame is timed at the declared end of the video.

    Truncation cuts the timeline short; frames the header counts but FFmpeg skips (AVI
    null frames) leave the last picture at the end. Without timestamps or a frame rate
    there is no way to tell, and the shortfall is reported as damage.
    """
    if got.last_time is None or not fps:
        return False
    slack = _COUNT_SLACK.get(container, 0)
    return round(got.last_time * fps) >= declared - 1 - slack


def _read_unknown_length(
    cap: Any,
    path: str,
    data: bytes,
    label: str,
    limits: Limits,
    sampling: FrameSampling,
    fps: float | None,
) -> Video:
    """No frame count in the header: count by decoding (bounded by the limits).

    "every" keeps its frames during that pass; "uniform" needs the total first, so it
    decodes twice rather than hold every frame of an unknown-length video in memory.
    """
    if sampling.mode == "every":
        def keep(index: int, state: _Pass) -> bool:
            return index % sampling.every == 0 and len(state.frames) < sampling.n

        got = _decode(cap, keep, None, fps, label, limits)
        if got.grabbed == 0:
            raise _damaged(label, _NO_FRAMES, data)
        return _video(got, got.grabbed)
    counted = _decode(cap, lambda index, state: False, None, fps, label, limits)
    if counted.grabbed == 0:
        raise _damaged(label, _NO_FRAMES, data)
    wanted = _uniform(counted.grabbed, sampling.n)
    with _capture(path, label, data) as again:
        got = _decode(again, _wanting(wanted), wanted[-1] + 1, fps, label, limits)
    if got.grabbed < wanted[-1] + 1:
        raise InputError(label, f"truncated or corrupt video: {counted.grabbed} frames "
                                f"decodable in one pass, only {got.grabbed} in the next")
    got.grabbed += counted.grabbed
    return _video(got, counted.grabbed)


def _video(got: _Pass, count: int) -> Video:
    return Video(
        frames=got.frames,
        indices=got.indices,
        times=got.times,
        meta={"frame_count": count, "decoded_frames": got.grabbed},
    )


# --------------------------------------------------------------------------- damage hints

_NO_FRAMES = "no decodable frames (corrupt or truncated video)"


def _damaged(label: str, problem: str, data: bytes) -> InputError:
    """The error for a damaged file, with what its structure shows when that says more."""
    hint = _container_damage(data)
    return InputError(label, f"{problem}; {hint}" if hint else problem)


def _container_damage(data: bytes) -> str | None:
    """Say what is structurally wrong with an AVI or MP4/MOV file, if anything obvious.

    FFmpeg only says "cannot open" or stops decoding; the top-level structure usually shows
    why: a RIFF file shorter than its header, or an MP4 whose ``moov`` index (written last
    by most muxers) is cut off or missing.
    """
    if data[:4] == b"RIFF" and len(data) >= 12:
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            return f"file has {len(data)} bytes, its RIFF header declares {declared}"
        return None
    if data[4:8] == b"ftyp":
        return _mp4_damage(data)
    return None


def _mp4_damage(data: bytes) -> str | None:
    offset, seen = 0, set()
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1 and offset + 16 <= len(data):
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:  # box runs to the end of the file
            size = len(data) - offset
        name = kind.decode("latin-1")
        if size < 8:
            return f"invalid size {size} for top-level box {name!r} at byte {offset}"
        if offset + size > len(data):
            cut = (f"top-level box {name!r} at byte {offset} declares {size} bytes, "
                   f"only {len(data) - offset} present")
            if kind == b"moov":
                return f"the 'moov' index is cut off ({cut})"
            return cut if b"moov" in seen else f"{cut}; no 'moov' index before it"
        seen.add(kind)
        offset += size
    if b"moov" not in seen:
        return "no 'moov' index box (cut off, overwritten or never written)"
    return None


# --------------------------------------------------------------------------- encoding


@functools.cache
def available_codecs() -> list[str]:
    """Names in :data:`CODECS` that this OpenCV build can write, in that order.

    Builds differ (pip wheels ship no H.264 encoder), so this is tried, not assumed: each
    codec writes two tiny frames to a temporary file. Cached for the process.
    """
    frame = np.zeros((16, 16, 3), np.uint8)
    found = []
    with tempfile.TemporaryDirectory(prefix="unmask-codecs-") as tmp, _quiet():
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
    with tempfile.TemporaryDirectory(prefix="unmask-encode-") as tmp, _quiet():
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
    cv2 = _cv2()
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


# --------------------------------------------------------------------------- items

DEFAULT_SAMPLING = FrameSampling(n=16)


def decode_item(item: Item, limits: Limits = Limits(),
                sampling: FrameSampling | None = None) -> Item:
    """The item with its sampled frames as ``content`` (a :class:`Video`) and the video's
    facts merged into ``meta``; every detector of a scan then shares one decode."""
    if isinstance(item.content, Video):
        return item
    video = read_video(item, limits, sampling or DEFAULT_SAMPLING, name=item.path)
    return replace(item, content=video, meta={**item.meta, **video.meta})


def decoded(item: Item, sampling: FrameSampling | None = None) -> Video:
    """The item's frames: already decoded by ``decode_item``, else decoded now (default
    limits) from the bytes ``load`` kept."""
    if isinstance(item.content, Video):
        return item.content
    return read_video(item, Limits(), sampling or DEFAULT_SAMPLING, name=item.path)
