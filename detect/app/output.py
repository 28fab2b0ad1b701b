"""Where scan records go: JSON Lines (default), CSV or one readable line per input, on stdout
or appended to a file, plus what ``--resume`` needs to skip inputs already recorded.

Appending is crash-safe: the file is opened ``O_APPEND`` and every record is one ``os.write``
of a complete line, so concurrent writers never interleave inside a line and a crash can at
worst cut the last line short. Such a torn tail is removed before a resumed scan appends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from detect.core import hashing
from detect.core.errors import ConfigError
from detect.core.types import Finding

FORMATS = ("jsonl", "csv", "text")
CSV_FIELDS = ["path", "sha256", "modality", "verdict", "decided_by", "score", "threshold",
              "target_fpr", "reason", "watermarked", "error", "elapsed_ms"]


def _csv_row(f: Finding) -> str:
    d = f.to_dict()
    d["watermarked"] = any(w.get("status") == "detected" for w in f.watermarks)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        ["" if d.get(k) is None else d[k] for k in CSV_FIELDS])
    return buf.getvalue()


def _text_line(f: Finding) -> str:
    if f.error and f.verdict == "error":
        return f"error        {f.path}: {f.error.removeprefix(f.path + ': ')}\n"
    score = "" if f.score is None else f"{f.score:+.3f} (threshold {f.threshold:+.3f}) "
    by = f" by {f.decided_by}" if f.decided_by else ""
    wm = " [watermarked]" if any(w.get("status") == "detected" for w in f.watermarks) else ""
    why = f" ({f.reason})" if f.reason else ""
    return f"{f.verdict:<12} {f.path}  {score}{by}{wm}{why}\n"


class FindingWriter:
    """One record per call to ``write``; ``path=None`` writes to standard output."""

    def __init__(self, path: str | os.PathLike[str] | None = None, fmt: str = "jsonl"):
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.fmt, self.path = fmt, None if path is None else Path(path)
        self._fd: int | None = None
        if self.path is not None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise ConfigError(f"{self.path}: cannot open for appending "
                                  f"({e.strerror or e})") from None
            empty = os.fstat(self._fd).st_size == 0
        else:
            empty = True
        if fmt == "csv" and empty:
            self._emit(",".join(CSV_FIELDS) + "\n")

    def _emit(self, text: str) -> None:
        if self._fd is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        data = text.encode("utf-8")
        while data:  # one write for a regular file; the loop only guards short writes
            data = data[os.write(self._fd, data):]

    def write(self, f: Finding) -> None:
        if self.fmt == "jsonl":
            self._emit(f.to_json() + "\n")
        elif self.fmt == "csv":
            self._emit(_csv_row(f))
        else:
            self._emit(_text_line(f))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FindingWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def drop_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (a crash mid-record); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return 0
        # walk back to the previous newline
        pos, chunk = size, 65536
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                fh.truncate(keep)
                return size - keep
            pos = start
        fh.truncate(0)
        return size


def recorded(path: Path, fmt: str) -> list[Finding]:
    """The findings an earlier run appended to ``path`` (JSON Lines or CSV)."""
    if fmt == "text":
        raise ConfigError("--resume needs --format jsonl or csv (text lines cannot be read back)")
    if not path.is_file():
        return []
    drop_torn_tail(path)
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}:{n}: not a JSON record ({e.msg}); cannot resume "
                                      "into this file") from None
                out.append(Finding.from_dict(d))
        else:
            for row in csv.DictReader(fh):
                d = {k: (v if v != "" else None) for k, v in row.items()}
                for k in ("score", "threshold", "target_fpr", "elapsed_ms"):
                    d[k] = None if d.get(k) is None else float(d[k])
                wm = d.pop("watermarked", None) == "True"
                f = Finding.from_dict(d)
                f.watermarks = [{"status": "detected"}] if wm else []
                out.append(f)
    return out


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a file's bytes, None when it cannot be read (its record will say why)."""
    try:
        return hashing.file_sha256(path)
    except OSError:
        return None
