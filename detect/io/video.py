"""Bounded, honest decoding of video frames (the encoder for tests and corpora is
:mod:`detect.io.video_encode`).

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

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, InputError
from detect.core.types import Item
from detect.io.media import Limits, load, load_bytes
from detect.io.opencv import capture, opencv, quiet, staged
from detect.io.video_damage import NO_FRAMES, damaged

__all__ = ["FrameSampling", "Video", "decode_item", "decoded", "probe_video", "read_video"]

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
    with staged(data, item.format) as path, quiet(), capture(path, label, data) as cap:
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
    with staged(data, item.format) as path, quiet(), capture(path, label, data) as cap:
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


def _header(cap: Any, container: str, label: str, limits: Limits) -> dict[str, Any]:
    """Read and check what the container declares, before decoding anything."""
    cv2 = opencv()
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
    cv2 = opencv()
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
            raise damaged(label, NO_FRAMES, data)
        if not _reached_declared_end(got, declared, fps, info["container"]):
            raise damaged(label, f"truncated or corrupt video: header declares {declared} "
                                  f"frames, only {got.grabbed} decodable", data)
        # The file is whole; its header counted frames FFmpeg never delivers (AVI "drop"
        # entries, a rounded Matroska estimate). Sample again over the frames that exist.
        count = got.grabbed
        if sampling.mode == "uniform":
            with capture(path, label, data) as again:
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
            raise damaged(label, NO_FRAMES, data)
        return _video(got, got.grabbed)
    counted = _decode(cap, lambda index, state: False, None, fps, label, limits)
    if counted.grabbed == 0:
        raise damaged(label, NO_FRAMES, data)
    wanted = _uniform(counted.grabbed, sampling.n)
    with capture(path, label, data) as again:
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
