"""A corpus on disk: ``corpus.json`` (header) + ``manifest.jsonl`` (one item per line).

Labels and splits come from the manifest, never from folder names. Item ids are the sha256
of the stored file (``Corpus.open(verify_hashes=True)`` re-checks every file), and the corpus
content hash (over the canonical manifest) is the same for the same recipe and seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.hashing import file_sha256
from detect.core.types import ITEM_MODALITIES, SAMPLE_SCHEMA, Modality, Sample

CORPUS_SCHEMA = "unmask.corpus/1"
SPLITS = ("train", "calib", "test")
MODALITIES = tuple(m.value for m in ITEM_MODALITIES)  # what a record may be
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Record:
    id: str
    path: str
    modality: Modality
    label: int
    split: str
    provenance: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SAMPLE_SCHEMA, "id": self.id, "path": self.path,
                             "modality": self.modality, "label": self.label,
                             "split": self.split, "provenance": self.provenance}
        if self.key is not None:
            d["key"] = self.key
        if self.group is not None:
            d["group"] = self.group
        return d


def _canonical(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(records: list[Record]) -> str:
    """sha256 over the canonical manifest lines, sorted by id (order of writing is irrelevant)."""
    h = hashlib.sha256()
    for line in sorted(_canonical(r.to_dict()) for r in records):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def parse_record(obj: Any, where: str) -> Record:
    """Validate one manifest entry; the message says which line and which field is wrong."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("schema") != SAMPLE_SCHEMA:
        raise ConfigError(f"{where}: schema must be {SAMPLE_SCHEMA!r}, got {obj.get('schema')!r}")
    missing = [k for k in ("id", "path", "modality", "label", "split") if k not in obj]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(obj["id"], str) or not _HEX64.match(obj["id"]):
        raise ConfigError(f"{where}: id must be a lowercase sha256 hex string, got {obj['id']!r}")
    label = obj["label"]
    if type(label) is not int or label not in (0, 1):
        raise ConfigError(f"{where}: label must be 0 (real) or 1 (synthetic), got {label!r}")
    if obj["split"] not in SPLITS:
        raise ConfigError(f"{where}: split must be one of {', '.join(SPLITS)}, "
                          f"got {obj['split']!r}")
    if obj["modality"] not in MODALITIES:
        raise ConfigError(f"{where}: modality must be one of {', '.join(MODALITIES)}, "
                          f"got {obj['modality']!r}")
    p = obj["path"]
    if not isinstance(p, str) or not p or os.path.isabs(p) or ".." in Path(p).parts:
        raise ConfigError(f"{where}: path must be relative and inside the corpus, got {p!r}")
    prov = obj.get("provenance", {})
    if not isinstance(prov, dict):
        raise ConfigError(f"{where}: provenance must be an object")
    return Record(obj["id"], p, Modality(obj["modality"]), int(label), obj["split"], prov,
                  obj.get("key"), obj.get("group"))


def read_manifest(path: Path) -> list[Record]:
    records: list[Record] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="\n") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not valid JSON ({e.msg})") from None
            rec = parse_record(obj, where)
            if rec.id in seen:
                raise ConfigError(f"{where}: duplicate id {rec.id[:12]}... (first on line "
                                  f"{seen[rec.id]})")
            seen[rec.id] = n
            records.append(rec)
    return records


class Corpus:
    """A read-only view of a corpus folder (or of one split / subset of it)."""

    def __init__(self, root: Path, header: dict[str, Any], records: list[Record],
                 transforms: tuple[Any, ...] = ()):
        self.root = Path(root)
        self.header = header
        self.records = records
        # image transforms applied on load, in order (a view: the files are never changed)
        self.transforms = tuple(transforms)

    @classmethod
    def open(cls, root: str | Path, *, verify_files: bool = True,
             verify_hashes: bool = False) -> Corpus:
        """Open and validate a corpus; ``verify_hashes`` also re-hashes every item file."""
        root = Path(root)
        hpath, mpath = root / "corpus.json", root / "manifest.jsonl"
        for p in (hpath, mpath):
            if not p.is_file():
                raise ConfigError(f"{root}: not a corpus (missing {p.name})")
        try:
            header = json.loads(hpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{hpath}: not valid JSON ({e.msg})") from None
        if not isinstance(header, dict) or header.get("schema") != CORPUS_SCHEMA:
            raise ConfigError(f"{hpath}: schema must be {CORPUS_SCHEMA!r}")
        records = read_manifest(mpath)
        if verify_files:
            for r in records:
                if not (root / r.path).is_file():
                    raise ConfigError(f"{mpath}: item {r.id[:12]}... file {r.path} is missing")
        if verify_hashes:
            for r in records:
                got = file_sha256(root / r.path)
                if got != r.id:
                    raise ConfigError(f"{root / r.path}: content does not match its id "
                                      f"{r.id[:12]}... (file replaced or corrupted)")
        expected = header.get("content_hash")
        if expected and expected != content_hash(records):
            raise ConfigError(f"{root}: manifest does not match the content hash in corpus.json "
                              "(edited or incomplete; re-run the recipe to finish it)")
        return cls(root, header, records)

    # -- views --------------------------------------------------------------------------------
    def filter(self, pred: Callable[[Record], bool]) -> Corpus:
        return Corpus(self.root, self.header, [r for r in self.records if pred(r)],
                      self.transforms)

    def map(self, transform: Any) -> Corpus:
        """A view whose images pass through ``transform`` (an attack: a callable on HxWx3
        uint8 with ``describe()``) on load: the same operation for real and fake alike. Its
        ``content_hash`` covers the transform, so a model trained on it is not mistaken for
        one trained on the plain corpus."""
        if not callable(transform) or not hasattr(transform, "describe"):
            raise ConfigError("Corpus.map needs an attack-like transform with describe()")
        return Corpus(self.root, self.header, self.records, (*self.transforms, transform))

    def split(self, name: str) -> Corpus:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return self.filter(lambda r: r.split == name)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    @property
    def paths(self) -> list[Path]:
        return [self.root / r.path for r in self.records]

    @property
    def content_hash(self) -> str:
        base = content_hash(self.records)
        if not self.transforms:
            return base
        steps = [_canonical(t.describe()) for t in self.transforms]
        return hashlib.sha256(_canonical({"corpus": base, "transforms": steps}).encode()
                              ).hexdigest()

    def counts(self) -> dict[str, dict[str, int]]:
        c = Counter((r.split, "synthetic" if r.label else "real") for r in self.records)
        out: dict[str, dict[str, int]] = {}
        for (s, lab), n in sorted(c.items()):
            out.setdefault(s, {})[lab] = n
        return out

    def iter_items(self) -> Iterator[Any]:
        from detect.io.media import load

        for p in self.paths:
            item = load(p)
            if self.transforms and item.modality == "image":
                img = item.content
                for t in self.transforms:
                    img = t(img)
                item = dataclasses.replace(item, content=img, meta={
                    **item.meta, "transforms": [t.describe() for t in self.transforms]})
            yield item

    @property
    def items(self) -> list[Any]:
        return list(self.iter_items())


def library_versions() -> dict[str, str]:
    """Versions that can change bytes (encoders, RNGs); recorded, not hashed."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("unmask", "numpy", "pillow", "torch", "timm", "scikit-learn"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def encode_image(arr: np.ndarray, fmt: str = "png", quality: int = 95) -> tuple[bytes, str]:
    """Encode an RGB uint8 array the same way for both classes (no format shortcut)."""
    from PIL import Image

    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ConfigError(f"expected an HxWx3 uint8 image, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    img = Image.fromarray(arr, "RGB")
    if fmt == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue(), ".png"
    if fmt in ("jpeg", "jpg"):
        img.save(buf, format="JPEG", quality=int(quality), subsampling=0 if quality >= 90 else 2)
        return buf.getvalue(), ".jpg"
    raise ConfigError(f"unsupported corpus image format {fmt!r} (png or jpeg)")


class CorpusWriter:
    """Writes items and manifest lines as it goes, so an interrupted build resumes.

    Re-opening a folder keeps what is there: ``has(key)`` tells the builder which items exist.
    ``close()`` writes ``corpus.json`` with the content hash; until then the folder is marked
    incomplete and ``Corpus.open`` refuses it.
    """

    def __init__(self, root: str | Path, *, name: str, recipe: dict[str, Any], seed: int,
                 image_format: str = "png", quality: int = 95):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.recipe, self.seed = name, recipe, seed
        self.image_format, self.quality = image_format, quality
        self.manifest = self.root / "manifest.jsonl"
        self.records: list[Record] = []
        self.duplicates: list[str] = []
        # The recipe and seed are pinned in build.json from the first item on, so a resumed
        # build can never mix two corpora, even after a kill before corpus.json existed.
        hpath, bpath = self.root / "corpus.json", self.root / "build.json"
        pinned = {"schema": "unmask.build/1", "name": name, "recipe": recipe, "seed": seed,
                  "image_format": image_format, "quality": quality}
        for path in (hpath, bpath):
            if path.exists():
                try:
                    old = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}: not valid JSON; use a new --out folder") from None
                if old.get("recipe") != recipe or old.get("seed") != seed:
                    raise ConfigError(f"{self.root} holds a corpus built from another recipe or "
                                      "seed; use a new --out folder")
        if self.manifest.exists() and not hpath.exists() and not bpath.exists():
            raise ConfigError(f"{self.root} holds a manifest of unknown origin; use a new folder")
        bpath.write_text(json.dumps(pinned, indent=2) + "\n", encoding="utf-8")
        if hpath.exists():
            hpath.unlink()  # being extended: incomplete until close()
        if self.manifest.exists():
            self.records = self._recover()
        self._keys = {r.key for r in self.records if r.key}
        self._ids = {r.id for r in self.records}
        self._fh = open(self.manifest, "a", encoding="utf-8")  # noqa: SIM115

    def _recover(self) -> list[Record]:
        """Keep complete manifest lines whose file exists; drop a torn last line."""
        good: list[Record] = []
        # split on "\n" only: str.splitlines() also breaks on U+2028 inside JSON strings
        lines = self.manifest.read_text(encoding="utf-8").split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        for n, line in enumerate(lines, 1):
            where = f"{self.manifest}:{n}"
            try:
                rec = parse_record(json.loads(line), where)
            except (json.JSONDecodeError, ConfigError) as e:
                if n == len(lines):
                    break  # interrupted mid-write
                if isinstance(e, json.JSONDecodeError):
                    raise ConfigError(f"{where}: not valid JSON ({e.msg})") from None
                raise
            if (self.root / rec.path).is_file():
                good.append(rec)
        self.manifest.write_text("".join(_canonical(r.to_dict()) + "\n" for r in good),
                                 encoding="utf-8")
        return good

    def has(self, key: str) -> bool:
        return key in self._keys

    def add(self, sample: Sample, split: str, key: str) -> Record | None:
        """Store one sample; returns None (and records it) if identical bytes already exist."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}")
        if sample.modality == "image":
            data, ext = encode_image(sample.content, self.image_format, self.quality)
        elif sample.modality == "text":
            data, ext = sample.content.encode("utf-8"), ".txt"
        elif sample.modality == "video":  # encoded bytes; the container names the extension
            from detect.io.sniff import sniff

            kind = sniff(sample.content[:8192]) if isinstance(sample.content, bytes) else None
            if kind is None or kind[0] != "video":
                raise ConfigError("a video sample's content must be the bytes of an encoded "
                                  "video file")
            data, ext = sample.content, f".{kind[1]}"
        else:
            raise ConfigError(f"cannot store {sample.modality} samples")
        sha = hashlib.sha256(data).hexdigest()
        if sha in self._ids:
            self.duplicates.append(key)
            self._keys.add(key)
            return None
        rel = f"items/{sha[:2]}/{sha}{ext}"
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        rec = Record(sha, rel, Modality(sample.modality), int(sample.label), split,
                     sample.provenance.to_dict(), key, sample.group)
        self._fh.write(_canonical(rec.to_dict()) + "\n")
        self._fh.flush()
        self.records.append(rec)
        self._ids.add(sha)
        self._keys.add(key)
        return rec

    def close(self, extra: dict[str, Any] | None = None) -> Corpus:
        self._fh.close()
        # rewrite sorted so the manifest file itself is byte-identical for the same recipe
        self.records.sort(key=lambda r: (r.split, r.label, r.key or "", r.id))
        self.manifest.write_text("".join(_canonical(r.to_dict()) + "\n" for r in self.records),
                                 encoding="utf-8")
        corpus = Corpus(self.root, {}, self.records)
        header = {
            "schema": CORPUS_SCHEMA,
            "name": self.name,
            "recipe": self.recipe,
            "seed": self.seed,
            "content_hash": content_hash(self.records),
            "counts": corpus.counts(),
            "n_items": len(self.records),
            "duplicates_skipped": len(self.duplicates),
            "versions": library_versions(),
            **(extra or {}),
        }
        tmp = self.root / "corpus.json.part"
        tmp.write_text(json.dumps(header, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.root / "corpus.json")
        (self.root / "build.json").unlink(missing_ok=True)
        corpus.header = header
        return corpus
