"""The records that flow through unmask: an input Item, a generated Sample with its
Provenance, and the Finding that a scan writes as one JSON Lines record."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal


class Modality(StrEnum):
    """The one spelling of a modality (items, detector tags, corpora, recipes). A StrEnum, so a
    member equals its string ("image") and serialises as it in JSON."""

    IMAGE = "image"
    VIDEO = "video"
    TEXT = "text"
    # what face detectors and face recipes work on: face crops found in photos and videos
    # (an input item is never "face"; see ITEM_MODALITIES)
    FACE = "face"

    @classmethod
    def parse(cls, value: Any, where: str = "modality") -> Modality:
        """``value`` as a Modality; a ConfigError naming ``where`` for anything else."""
        try:
            return cls(value)
        except ValueError:
            from detect.core.errors import ConfigError

            raise ConfigError(f"{where}: unknown modality {value!r} (one of "
                              f"{', '.join(m.value for m in cls)})") from None


# the modalities an input item (a file, a corpus record) can have
ITEM_MODALITIES = (Modality.IMAGE, Modality.VIDEO, Modality.TEXT)

Verdict = Literal["synthetic", "real", "uncertain", "error"]

FINDING_SCHEMA = "unmask.finding/1"
SAMPLE_SCHEMA = "unmask.sample/1"


@dataclass
class Item:
    """One input after bounded loading.

    ``content`` is an RGB ``uint8`` array of shape (H, W, 3) for images and a ``str`` for
    text. A video holds its bytes after loading and a :class:`detect.io.video.Video` (the
    sampled frames) after :func:`detect.io.video.decode_item`.
    """

    path: str
    sha256: str
    modality: Modality
    format: str
    size_bytes: int
    content: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...] | None:
        return getattr(self.content, "shape", None)


@dataclass
class Provenance:
    """Where a corpus item came from, enough to regenerate it bit for bit.

    Real items name their ``source`` (package or folder, the original file and the crop);
    synthetic ones the ``generator``, the sha256 of its checkpoint, the seed and sampling
    parameters. ``transforms`` lists post-processing applied after creation (same for both
    classes, so a detector cannot win on the file format).
    """

    kind: Literal["real", "synthetic"]
    source: str | None = None
    generator: str | None = None
    checkpoint_sha256: str | None = None
    seed: int | None = None
    index: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    watermark_key: str | None = None
    parent: str | None = None
    transforms: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Sample:
    """A generated or collected corpus item before it is written to disk."""

    content: Any
    modality: Modality
    label: int
    provenance: Provenance
    group: str | None = None  # items sharing a group (e.g. patches of one photo) share a split


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: write null instead, at any depth, so a record never fails."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


# the keys every detector result has (``DetectorResult.to_dict``); "reason" joins them when
# the verdict has one, "decides" when the detector steps aside (False)
RESULT_KEYS = ("score", "threshold", "uncertain_above", "target_fpr", "verdict", "calibration")


@dataclass
class DetectorResult(Mapping):
    """One detector's result for one item: the score, the rule it was judged by and the verdict.

    ``decides`` is False when the detector steps aside (a face detector that found no face, a
    rule whose calibration cannot hold the target FPR): the next detector's verdict stands
    (``detect.app.verdict.primary``). ``details`` holds what one family adds (a text's tokens
    and length bucket, the faces found, a video's frames...). ``to_dict`` is the flat record a
    scan writes under ``Finding.detectors[name]``, and the result reads as that record
    (``res["verdict"]``, ``res.get("reason")``, ``{**res}``).
    """

    score: float | None
    verdict: Verdict
    threshold: float | None = None
    uncertain_above: float | None = None
    target_fpr: float | None = None
    calibration: dict[str, Any] | None = None
    decides: bool = True
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in RESULT_KEYS}
        if self.reason is not None:
            d["reason"] = self.reason
        if not self.decides:
            d["decides"] = False
        clash = set(self.details) & {*RESULT_KEYS, "reason", "decides"}
        if clash:
            raise ValueError(f"result details may not redefine {sorted(clash)}")
        return {**d, **self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorResult:
        """A record read back (``to_dict``'s inverse); keys beyond the common ones are details."""
        common = {*RESULT_KEYS, "reason", "decides"}
        return cls(**{k: d.get(k) for k in RESULT_KEYS}, reason=d.get("reason"),
                   decides=bool(d.get("decides", True)),
                   details={k: v for k, v in d.items() if k not in common})

    # read as the record (Mapping), so ``primary`` and report code take a result or a record
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass
class Finding:
    """One scan record: exactly one per input, errors included."""

    path: str
    sha256: str | None = None
    modality: str | None = None
    verdict: Verdict = "error"
    decided_by: str | None = None  # the detector whose verdict this is
    score: float | None = None
    threshold: float | None = None
    target_fpr: float | None = None
    # the deciding rule's calibration ({"n", "supports_fpr", "rule"}) and, for "uncertain",
    # why (too short a text, no face, a target FPR the calibration cannot support...)
    calibration: dict[str, Any] | None = None
    reason: str | None = None
    detectors: dict[str, Any] = field(default_factory=dict)
    watermarks: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": FINDING_SCHEMA}
        d.update({k: _finite(v) for k, v in asdict(self).items()})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        """A record read back (an earlier run's output, a worker's answer); ``schema`` and
        any field this version does not know are left out."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def as_path(p: str | Path) -> Path:
    return p if isinstance(p, Path) else Path(p)
