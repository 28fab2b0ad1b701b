"""Decoding a text input's bytes: strict UTF-8 / UTF-16 (a BOM says which) by default, or
with bad bytes replaced and counted when the limits ask for it."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.errors import InputError
from detect.io.sniff import UTF8_REPLACEMENT

if TYPE_CHECKING:
    from detect.io.media import Limits

_UTF8_BOM = codecs.BOM_UTF8


def decode_text(data: bytes, name: str, limits: Limits) -> tuple[str, dict[str, Any]]:
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
        return data.count(UTF8_REPLACEMENT)
    dtype = "<u2" if codec == "utf-16-le" else ">u2"
    units = np.frombuffer(data[: len(data) // 2 * 2], dtype=dtype)
    return int(np.count_nonzero(units == 0xFFFD))
