"""The field's text-detection file formats, so unmask's numbers compare with published ones.

- Fast-DetectGPT / DetectGPT publish their evaluation sets as one JSON object per data set:
  ``{"original": [human texts...], "sampled": [machine texts...]}`` (paired by index; other
  keys, e.g. ``"perturbed_*"``, are ignored). ``read_fastdetect_json`` turns that into labelled
  texts.
- RAID's leaderboard takes ``predictions.json``: a JSON list of ``{"id": ..., "score": ...}``,
  one per text of its test set, higher = more likely machine-generated. ``write_raid_predictions``
  writes that, with unmask's record of the detector beside it in a separate file (RAID's
  checker rejects extra keys).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError


def read_fastdetect_json(path: str | Path) -> tuple[list[str], list[int], list[str]]:
    """(texts, labels 0 human / 1 machine, ids) from a Fast-DetectGPT data file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict) or not {"original", "sampled"} <= set(data):
        raise ConfigError(f"{p}: expected an object with 'original' and 'sampled' lists "
                          "(Fast-DetectGPT's layout)")
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    for key, label in (("original", 0), ("sampled", 1)):
        seq = data[key]
        if not isinstance(seq, list):
            raise ConfigError(f"{p}: '{key}' must be a list of strings")
        for i, t in enumerate(seq):
            if not isinstance(t, str):
                raise ConfigError(f"{p}: '{key}'[{i}] is {type(t).__name__}, not a string")
            texts.append(t)
            labels.append(label)
            ids.append(f"{key}/{i}")
    if not texts:
        raise ConfigError(f"{p}: no texts")
    return texts, labels, ids


def write_fastdetect_json(path: str | Path, human: Sequence[str], machine: Sequence[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"original": list(human), "sampled": list(machine)}, indent=1) + "\n",
                 encoding="utf-8")
    return p


def write_raid_predictions(path: str | Path, ids: Sequence[Any], scores: Sequence[float],
                           about: dict[str, Any] | None = None) -> Path:
    """RAID's ``predictions.json`` (non-finite scores become null, i.e. "no prediction"), and
    ``about`` (detector, calibration, corpus) in ``<name>.about.json`` beside it."""
    if len(ids) != len(scores):
        raise ConfigError(f"{len(ids)} ids but {len(scores)} scores")
    rows = [{"id": i, "score": (float(s) if s is not None and math.isfinite(float(s)) else None)}
            for i, s in zip(ids, scores, strict=True)]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rows) + "\n", encoding="utf-8")
    if about is not None:
        p.with_suffix(".about.json").write_text(json.dumps(about, indent=2) + "\n",
                                                encoding="utf-8")
    return p
