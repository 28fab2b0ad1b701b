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

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, InputError
from detect.core.types import Item
from detect.io.image_decode import decode_image
from detect.io.sniff import SNIFF_BYTES, looks_like_damaged_utf8, looks_like_non_utf8_text, sniff
from detect.io.text_decode import decode_text

__all__ = ["Limits", "iter_paths", "load", "load_bytes"]

MiB = 1024 * 1024


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
    if kind is None and looks_like_non_utf8_text(data):
        kind = ("text", "text")  # decoding below reports exactly where UTF-8 breaks
    if kind is None and limits.text_errors == "replace" and looks_like_damaged_utf8(data):
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
        content, meta = decode_image(data, name, fmt, limits)
    elif modality == "text":
        content, meta = decode_text(data, name, limits)
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
