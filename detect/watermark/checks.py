"""Watermark checks for one loaded item, shared by ``scan``, ``inspect`` and
``unmask watermark verify``: images against the payload catalog (or a user's payload), text
against the key files a user gives (a text watermark cannot be checked without its key)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import DEFAULT_TARGET_FPR, WatermarkResult


def check_item(item: Any, *, target_fpr: float = DEFAULT_TARGET_FPR,
               payloads: Sequence[Any] | None = None, text_keys: Sequence[str | Path] = (),
               decoder: str = "fast") -> list[WatermarkResult]:
    """Every applicable check; the FPR holds for the item as a whole (corrected for the
    number of payloads or keys tried)."""
    if item.modality == "image":
        from .image import verify_image

        return verify_image(item.content, list(payloads) if payloads is not None else None,
                            target_fpr=target_fpr, decoder=decoder, path=item.path)
    if item.modality == "text" and text_keys:
        from .text import TextWatermarkKey, verify_text

        keys = [TextWatermarkKey.load(k) for k in text_keys]
        out = []
        for k, src in zip(keys, text_keys, strict=True):
            r = verify_text(item.content, k, target_fpr=target_fpr, n_tests=len(keys))
            r.payload = Path(src).name
            out.append(r)
        return out
    return []


def compact(results: Sequence[WatermarkResult]) -> list[dict[str, Any]]:
    """The scan record's form: one small dict per check (``inspect`` keeps the full results)."""
    out = []
    for r in results:
        d = {"scheme": r.scheme, "payload": r.payload, "status": r.status,
             "p_value": r.p_value, "alpha": r.alpha}
        for k in ("bit_accuracy", "z_score", "tokens_scored"):
            if k in r.statistic:
                d[k] = r.statistic[k]
        out.append(d)
    return out
