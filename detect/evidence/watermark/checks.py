"""Watermark checks for one loaded item, shared by ``scan``, ``inspect`` and
``unmask watermark verify``: images against the payload catalog (or a user's payload), text
against the key files a user gives (a text watermark cannot be checked without its key)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.evidence.watermark import DEFAULT_TARGET_FPR, WatermarkResult


def load_text_keys(paths: Sequence[str | Path | Any]) -> list[Any]:
    """Key files (or keys already loaded) -> TextWatermarkKey objects, each named after its
    file. A bad file is a ConfigError naming it, raised before any input is read."""
    from detect.evidence.watermark.text_keys import TextWatermarkKey

    out = []
    for src in paths:
        if isinstance(src, TextWatermarkKey):
            out.append(src)
            continue
        k = TextWatermarkKey.load(src)
        k.name = Path(src).name
        out.append(k)
    return out


def check_item(item: Any, *, target_fpr: float = DEFAULT_TARGET_FPR,
               payloads: Sequence[Any] | None = None, text_keys: Sequence[Any] = (),
               decoder: str = "soft") -> list[WatermarkResult]:
    """Every applicable check; the FPR holds for the item as a whole (corrected for the
    number of payloads or keys tried). ``text_keys`` are key file paths or loaded keys.
    Images are decided by the soft decoder unless ``decoder`` says otherwise ("hard":
    invisible-watermark's bits); soft results keep the hard bits' accuracy and p-value."""
    if item.modality == "image":
        from detect.evidence.watermark.image import verify_image

        return verify_image(item.content, list(payloads) if payloads is not None else None,
                            target_fpr=target_fpr, decoder=decoder, path=item.path)
    if item.modality == "text" and text_keys:
        from detect.evidence.watermark.text import verify_text

        keys = load_text_keys(text_keys)
        return [verify_text(item.content, k, target_fpr=target_fpr, n_tests=len(keys))
                for k in keys]
    return []


def compact(results: Sequence[WatermarkResult]) -> list[dict[str, Any]]:
    """The scan record's form: one small dict per check (``inspect`` keeps the full results)."""
    out = []
    for r in results:
        d = {"scheme": r.scheme, "payload": r.payload, "status": r.status,
             "p_value": r.p_value, "alpha": r.alpha}
        if r.kind == "image" and "decoder" in r.details:
            d["decoder"] = r.details["decoder"]
        for k in ("bit_accuracy", "hard_bit_accuracy", "hard_p_value", "tokens_scored",
                  "green_fraction", "mean", "z"):
            if k in r.statistic:
                d[k] = r.statistic[k]
        out.append(d)
    return out
