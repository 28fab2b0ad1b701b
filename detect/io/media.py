"""Bounded, safe loading of one input file into an :class:`~detect.core.types.Item`.

Inputs are untrusted: a scan may be pointed at anything, including truncated uploads,
renamed files and decompression bombs. Everything here therefore checks sizes before
doing work, identifies formats by their magic bytes (never the extension, which lies),
and turns every failure into an :class:`~detect.core.errors.InputError` that names the file.

Heavy libraries stay out of import time: PIL is imported when the first image is decoded,
and torch / cv2 are never imported here: videos are sniffed and kept as bytes, and their
frames decode on demand in :mod:`detect.io.video`.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, InputError
from detect.core.types import Item

__all__ = ["Limits", "iter_paths", "load", "load_bytes", "sniff"]

MiB = 1024 * 1024
SNIFF_BYTES = 8192  # how much of the head the text check looks at


@dataclass(frozen=True)
class Limits:
    """Resource ceilings for one input, so a hostile file costs bounded memory and time."""

    max_bytes: int = 256 * MiB
    max_pixels: int = 64_000_000
    max_chars: int = 2_000_000
    max_frames: int = 100_000
    max_duration_s: float = 3600.0  # a longer video is refused (decoding cost grows with it)
    min_side: int = 8  # smaller images carry too little signal to score honestly
    # Invalid bytes in a text: "strict" refuses the file (naming the byte); "replace" decodes
    # them to U+FFFD and records how many in ``meta["decode"]``.
    text_errors: str = "strict"

    def __post_init__(self) -> None:
        if self.text_errors not in ("strict", "replace"):
            raise ConfigError(f"text_errors must be 'strict' or 'replace', "
                              f"got {self.text_errors!r}")


# --------------------------------------------------------------------------- sniffing

_UTF8_BOM = codecs.BOM_UTF8
_UTF8_REPLACEMENT = "\ufffd".encode()  # U+FFFD as it appears in a UTF-8 file
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# BITMAPINFOHEADER variants; checking this keeps text starting with "BM..." from being a BMP.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# ISO-BMFF brands that are still images (HEIF/AVIF), not videos: we cannot decode them.
_STILL_IMAGE_BRANDS = frozenset(
    {
        b"heic",
        b"heix",
        b"heim",
        b"heis",
        b"hevc",
        b"hevm",
        b"hevs",
        b"mif1",
        b"msf1",
        b"avif",
        b"avis",
    }
)


def sniff(head: bytes) -> tuple[str, str] | None:
    """Return ``(modality, format)`` from the first bytes of a file, or None if unknown.

    Only magic bytes count: a PNG renamed to ``.jpg`` is still a PNG, and trusting the
    name would send it to the wrong decoder (or the wrong detector).
    """
    h = bytes(head[:SNIFF_BYTES])
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("image", "png")
    if h.startswith(b"\xff\xd8\xff"):
        return ("image", "jpeg")
    if h.startswith((b"GIF87a", b"GIF89a")):
        return ("image", "gif")
    if h.startswith(b"BM") and int.from_bytes(h[14:18], "little") in _BMP_DIB_SIZES:
        return ("image", "bmp")
    if h.startswith(b"RIFF") and len(h) >= 12:
        if h[8:12] == b"WEBP":
            return ("image", "webp")
        if h[8:12] == b"AVI ":
            return ("video", "avi")
    if h.startswith((b"II*\x00", b"MM\x00*")):
        return ("image", "tiff")
    if len(h) >= 12 and h[4:8] == b"ftyp":
        brand = h[8:12]
        if brand in _STILL_IMAGE_BRANDS:
            return None
        return ("video", "mov" if brand == b"qt  " else "mp4")
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header's DocType says which; it sits within the first few dozen bytes.
        return ("video", "webm" if b"webm" in h[:64] else "mkv")
    if h.startswith(_UTF8_BOM) or h.startswith(_UTF16_BOMS):
        return ("text", "text")
    if h and b"\x00" not in h:
        try:
            # final=False tolerates a multibyte character cut off by the end of the head.
            codecs.getincrementaldecoder("utf-8")("strict").decode(h, final=False)
        except UnicodeDecodeError:
            return None
        return ("text", "text")
    return None


_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}
_PRINTABLE_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def _looks_like_non_utf8_text(head: bytes) -> bool:
    """True for text in a legacy encoding (Latin-1, cp1252...): no NULs or control bytes
    and mostly printable ASCII. Such a file earns a precise "bad UTF-8 at byte N" error
    instead of a vague "unrecognised format"; random binary fails both tests."""
    h = head[:SNIFF_BYTES]
    if not h or b"\x00" in h:
        return False
    if any(b in _CONTROL_BYTES for b in h):
        return False
    printable = sum(1 for b in h if b in _PRINTABLE_BYTES)
    return printable >= 0.7 * len(h)


def _looks_like_damaged_utf8(head: bytes) -> bool:
    """True for UTF-8 text with a few bad bytes (at most 2% of its characters), which the
    ASCII-based test above misses when the text is not in a Latin script."""
    h = head[:SNIFF_BYTES]
    if not h or b"\x00" in h or any(b in _CONTROL_BYTES for b in h):
        return False
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(h, final=False)
    bad = text.count("\ufffd") - h.count(_UTF8_REPLACEMENT)
    return bad <= 0.02 * len(text)


# --------------------------------------------------------------------------- loading


def load(
    path: str | os.PathLike[str],
    limits: Limits = Limits(),
    *,
    modalities: Iterable[str] | None = None,
) -> Item:
    """Load one file into an :class:`Item`, refusing anything unsafe or unusable.

    ``stat`` comes first so that missing files, folders, empty files and oversized files
    are rejected without reading a byte. ``modalities`` restricts what is accepted (a
    text-only detector should say so, not silently score an image).
    """
    name = str(path)
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(name, "no such file") from None
    except PermissionError:
        raise InputError(name, "permission denied") from None
    except OSError as e:
        raise InputError(name, f"cannot stat: {e.strerror or e}") from None

    if stat.S_ISDIR(st.st_mode):
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(name, "is a directory (and cannot be listed: permission denied)")
        raise InputError(name, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        # FIFOs and devices can block forever or never end; stdin goes through load_bytes.
        raise InputError(name, "not a regular file")
    _check_size(name, st.st_size, limits)

    try:
        with open(p, "rb") as f:
            # One byte more than allowed, so a file that grew since stat is still caught.
            data = f.read(limits.max_bytes + 1)
    except PermissionError:
        raise InputError(name, "permission denied") from None
    except OSError as e:
        raise InputError(name, f"cannot read: {e.strerror or e}") from None
    return load_bytes(data, name, limits, modalities=modalities)


def _check_size(name: str, size: int, limits: Limits) -> None:
    if size == 0:
        raise InputError(name, "empty file (0 bytes)")
    if size > limits.max_bytes:
        raise InputError(name, f"file too large ({size} bytes > limit {limits.max_bytes})")


def load_bytes(
    data: bytes,
    name: str,
    limits: Limits = Limits(),
    *,
    modalities: Iterable[str] | None = None,
) -> Item:
    """Same as :func:`load` for bytes already in memory (stdin, archives, tests).

    ``name`` is only used to label the Item and its errors.
    """
    data = bytes(data)
    _check_size(name, len(data), limits)
    sha = hashlib.sha256(data).hexdigest()

    kind = sniff(data[:SNIFF_BYTES])
    if kind is None and _looks_like_non_utf8_text(data):
        kind = ("text", "text")  # decoding below reports exactly where UTF-8 breaks
    if kind is None and limits.text_errors == "replace" and _looks_like_damaged_utf8(data):
        kind = ("text", "text")  # e.g. Cyrillic UTF-8 with one bad byte: not mostly ASCII
    if kind is None:
        raise InputError(
            name,
            "unrecognised format (not an image, video or UTF-8 text; "
            f"starts with {data[:8].hex()})",
        )
    modality, fmt = kind
    if modalities is not None and modality not in set(modalities):
        raise InputError(name, f"{modality} input not accepted here")

    content: Any
    if modality == "image":
        content, meta = _decode_image(data, name, fmt, limits)
    elif modality == "text":
        content, meta = _decode_text(data, name, limits)
    else:
        # Decoding video is expensive and needs cv2/ffmpeg: keep the bytes, so frames can be
        # decoded on demand (detect.io.video.read_video) from exactly what was hashed.
        content, meta = data, {"container": fmt}
    return Item(
        path=name,
        sha256=sha,
        modality=modality,  # type: ignore[arg-type]
        format=fmt,
        size_bytes=len(data),
        content=content,
        meta=meta,
    )


# --------------------------------------------------------------------------- text


def _decode_text(data: bytes, name: str, limits: Limits) -> tuple[str, dict[str, Any]]:
    """Strict decoding by default: replacing bad bytes would feed detectors text nobody wrote.

    ``limits.text_errors == "replace"`` is for callers who would rather score a damaged
    text than none; the item then says how much was replaced and where the damage starts.
    """
    if data.startswith(_UTF8_BOM):
        encoding, codec, skip = "utf-8-sig", "utf-8", len(_UTF8_BOM)
    elif data.startswith(codecs.BOM_UTF16_LE):
        encoding, codec, skip = "utf-16", "utf-16-le", 2
    elif data.startswith(codecs.BOM_UTF16_BE):
        encoding, codec, skip = "utf-16", "utf-16-be", 2
    else:
        encoding, codec, skip = "utf-8", "utf-8", 0
    decode: dict[str, Any] | None = None
    if limits.text_errors == "replace":
        decode = {"policy": "replace", "replaced": 0, "first_bad_offset": None}
    try:
        text = data[skip:].decode(codec, errors="strict")
    except UnicodeDecodeError as e:
        label = "UTF-16" if encoding == "utf-16" else "UTF-8"
        # Offsets are reported in file bytes (BOM included), so `xxd -s` finds them.
        if decode is None:
            raise InputError(name, f"bad {label} at byte {e.start + skip}: {e.reason}") from None
        text = data[skip:].decode(codec, errors="replace")
        genuine = _replacement_chars_in(data[skip:], codec)
        decode.update(replaced=text.count("\ufffd") - genuine, first_bad_offset=e.start + skip)
    if "\x00" in text:
        raise InputError(name, "binary data (NUL bytes), not text")
    if len(text) > limits.max_chars:
        raise InputError(name, f"text too long ({len(text)} characters > limit {limits.max_chars})")
    if not text.strip():
        raise InputError(name, "empty text (only whitespace)")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    meta: dict[str, Any] = {"chars": len(text), "lines": lines, "encoding": encoding}
    if decode is not None:
        meta["decode"] = decode
    return text, meta


def _replacement_chars_in(data: bytes, codec: str) -> int:
    """U+FFFD characters the file really contains, so they are not counted as replaced.

    Exact: a decoder never reads EF (UTF-8) or an FFFD code unit (UTF-16) as part of
    another character, so each occurrence decodes to U+FFFD whatever surrounds it.
    """
    if codec == "utf-8":
        return data.count(_UTF8_REPLACEMENT)
    dtype = "<u2" if codec == "utf-16-le" else ">u2"
    units = np.frombuffer(data[: len(data) // 2 * 2], dtype=dtype)
    return int(np.count_nonzero(units == 0xFFFD))


# --------------------------------------------------------------------------- images

_PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "gif": "GIF",
    "bmp": "BMP",
    "webp": "WEBP",
    "tiff": "TIFF",
}
# What a hostile or damaged file can make PIL's plugins raise besides OSError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)
_EXIF_ORIENTATION = 0x0112


def _decode_image(
    data: bytes, name: str, fmt: str, limits: Limits
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode to RGB uint8 (H, W, 3), checking dimensions before any pixel is decoded."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    pil_fmt = _PIL_FORMATS[fmt]
    previous_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Other decoder warnings (e.g. corrupt EXIF) are kept for meta, not printed.
            warnings.simplefilter("always")
            # PIL only warns between 1x and 2x its own limit; a warning is still a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Someone may have set this globally; a half-grey image must not pass as real.
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                # formats=[...]: decode with the plugin the magic bytes chose, nothing else.
                img = Image.open(io.BytesIO(data), formats=[pil_fmt])
                width, height = img.size
                pixels = width * height
                if pixels > limits.max_pixels:
                    raise InputError(name, _bomb_message(width, height, pixels, limits))
                if min(width, height) < limits.min_side:
                    raise InputError(name, f"too small to analyse ({width}x{height})")
                meta: dict[str, Any] = {
                    "width": width,
                    "height": height,
                    "mode": img.mode,
                    "info_keys": sorted(str(k) for k in img.info),
                }
                orientation = _exif_orientation(img)
                if orientation is not None:
                    meta["exif_orientation"] = orientation
                n_frames = int(getattr(img, "n_frames", 1) or 1)
                if n_frames > 1:
                    # Animated GIF/WebP (or multi-page TIFF): analyse the first frame.
                    meta["frames"] = n_frames
                    img.seek(0)
                img.load()
                array, had_alpha, reduced = _to_rgb(img)
            except InputError:
                raise
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise InputError(name, _bomb_from_pil(data, pil_fmt, limits, e)) from None
            except UnidentifiedImageError:
                raise InputError(
                    name, f"cannot decode {fmt} image: not a valid {fmt} file"
                ) from None
            except _DECODE_ERRORS as e:
                detail = str(e) or type(e).__name__
                if isinstance(e, OSError) and "truncated" in detail.lower():
                    raise InputError(name, f"truncated or corrupt image data ({detail})") from None
                short = _riff_shortfall(data) if fmt == "webp" else None
                if short is not None:
                    # libwebp only says "could not create decoder object"; say why.
                    detail = f"{detail}; {short}"
                    raise InputError(name, f"truncated or corrupt image data ({detail})") from None
                raise InputError(name, f"cannot decode {fmt} image: {detail}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous_truncated

    meta["had_alpha"] = had_alpha
    notes = sorted({str(w.message) for w in caught})
    if notes:
        meta["decoder_warnings"] = notes
    if reduced:
        meta["depth_reduced_from"] = reduced
    # Frames of an animation may be larger than the logical screen; report what we return.
    meta["height"], meta["width"] = array.shape[:2]
    return array, meta


def _riff_shortfall(data: bytes) -> str | None:
    """Describe a RIFF file shorter than its header says, i.e. a truncated WebP."""
    declared = int.from_bytes(data[4:8], "little") + 8
    if len(data) < declared:
        return f"file has {len(data)} bytes, RIFF header declares {declared}"
    return None


def _bomb_message(width: int, height: int, pixels: int, limits: Limits) -> str:
    return f"decompression bomb: {width}x{height} = {pixels} pixels > limit {limits.max_pixels}"


def _bomb_from_pil(data: bytes, pil_fmt: str, limits: Limits, err: BaseException) -> str:
    """PIL's own bomb check fired inside ``Image.open``, so we never saw the size.

    Re-read just the header with the format's plugin factory (which skips PIL's check)
    to report WxH like our own check does; fall back to PIL's pixel count.
    """
    size = _header_size(data, pil_fmt)
    if size is not None:
        w, h = size
        return _bomb_message(w, h, w * h, limits)
    m = re.search(r"\((\d+) pixels\)", str(err))
    count = m.group(1) if m else "?"
    return f"decompression bomb: {count} pixels > limit {limits.max_pixels}"


def _header_size(data: bytes, pil_fmt: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        factory = Image.OPEN[pil_fmt][0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = factory(io.BytesIO(data), "").size
    except Exception:  # noqa: BLE001 - best effort; the caller has a correct fallback
        return None
    return int(w), int(h)


def _exif_orientation(img: Any) -> int | None:
    """Orientation is recorded, never applied: forensic signals live in stored pixels."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a good image unreadable
        return None
    return int(value) if isinstance(value, int) else None


def _to_rgb(img: Any) -> tuple[np.ndarray, bool, str | None]:
    """Return (RGB uint8 array, had_alpha, original mode if bit depth was reduced).

    Alpha is dropped rather than composited: compositing would invent pixel values.
    High bit-depth greyscale is scaled (not clipped) so it does not turn white.
    """
    mode = img.mode
    had_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    reduced: str | None = None
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.int64)
        grey = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
        reduced = mode
    elif mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and float(a.max()) <= 1.0 else 1.0
        grey = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
        reduced = mode
    else:
        grey = None
    if grey is not None:
        array = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        if mode != "RGB":
            try:
                img = img.convert("RGB")
            except ValueError:
                img = img.convert("RGBA").convert("RGB")
        array = np.array(img, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"unexpected pixel layout {array.shape} from mode {mode}")
    return np.ascontiguousarray(array), had_alpha, reduced


# --------------------------------------------------------------------------- paths


def iter_paths(
    paths: Iterable[str | os.PathLike[str]],
    recursive: bool = True,
    *,
    include_hidden: bool = False,
    skipped: list[Path] | None = None,
) -> Iterator[Path]:
    """Expand files and folders into the files to scan, each exactly once.

    Folders are walked in sorted order (stable output). Hidden entries inside folders are
    skipped unless ``include_hidden``; each one skipped is appended to ``skipped`` so the
    caller can say how many it left out. Special files and broken links are yielded so
    ``load`` reports them. Paths
    given explicitly are never dropped: a missing or odd one is yielded as-is so the
    caller writes an error record for it instead of silently scanning less than asked.
    """
    seen: set[str] = set()
    visited_dirs: set[str] = set()

    def key(p: Path) -> str:
        try:
            return str(p.resolve())
        except (OSError, RuntimeError):
            return os.path.abspath(p)

    def walk(folder: Path) -> Iterator[Path]:
        k = key(folder)
        if k in visited_dirs:  # symlink loops / the same folder given twice
            return
        visited_dirs.add(k)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            yield folder  # unreadable: let load() report it rather than hide it
            return
        for entry in entries:
            child = folder / entry.name
            if entry.name.startswith(".") and not include_hidden:
                if skipped is not None:
                    skipped.append(child)
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    yield from walk(child)
            else:
                yield child  # regular, special or dangling: load() says which

    for raw in paths:
        p = Path(raw)
        candidates = walk(p) if p.is_dir() else iter((p,))
        for c in candidates:
            k = key(c)
            if k not in seen:
                seen.add(k)
                yield c
