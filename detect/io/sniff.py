"""Format sniffing: what an input is, from its first bytes (never its name, which lies)."""

from __future__ import annotations

import codecs

SNIFF_BYTES = 8192  # how much of the head the text check looks at

_UTF8_BOM = codecs.BOM_UTF8
UTF8_REPLACEMENT = "\ufffd".encode()  # U+FFFD as it appears in a UTF-8 file
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


def looks_like_non_utf8_text(head: bytes) -> bool:
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


def looks_like_damaged_utf8(head: bytes) -> bool:
    """True for UTF-8 text with a few bad bytes (at most 2% of its characters), which the
    ASCII-based test above misses when the text is not in a Latin script."""
    h = head[:SNIFF_BYTES]
    if not h or b"\x00" in h or any(b in _CONTROL_BYTES for b in h):
        return False
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(h, final=False)
    bad = text.count("\ufffd") - h.count(UTF8_REPLACEMENT)
    return bad <= 0.02 * len(text)
