"""Decoding an image input's bytes to RGB uint8, with the dimensions checked before any
pixel is decoded (decompression bombs) and every decoder failure an InputError naming the file.
PIL is imported on the first decode."""

from __future__ import annotations

import io
import re
import struct
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.errors import InputError

if TYPE_CHECKING:
    from detect.io.media import Limits

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


def decode_image(
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
