"""What is structurally wrong with a damaged video container, when FFmpeg only says "cannot
open" or stops decoding: a RIFF (AVI) file shorter than its header, an MP4/MOV whose ``moov``
index is cut off or missing."""

from __future__ import annotations

import struct

from detect.core.errors import InputError

NO_FRAMES = "no decodable frames (corrupt or truncated video)"


def damaged(label: str, problem: str, data: bytes) -> InputError:
    """The error for a damaged file, with what its structure shows when that says more."""
    hint = container_damage(data)
    return InputError(label, f"{problem}; {hint}" if hint else problem)


def container_damage(data: bytes) -> str | None:
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
