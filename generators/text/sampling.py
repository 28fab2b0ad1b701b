"""Sampling configurations and the per-sample draw of text generation.

- :class:`Sampling` / :func:`sampling_config`: a named, fully explicit set of transformers
  ``generate`` kwargs (what a corpus records is what ran).
- :func:`logits_processors`: transformers' own warpers and watermark processor in the order
  ``generate`` applies them when it samples, ending in :class:`DrawPerSample`, which draws each
  row's token from that row's own ``torch.Generator`` (so sample *i* depends only on its own
  seed stream, never on its batch-mates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from detect.core.errors import ConfigError

SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "typical_p", "min_p",
                 "repetition_penalty", "no_repeat_ngram_size")


@dataclass(frozen=True)
class Sampling:
    """A named set of transformers ``generate`` kwargs (everything explicit, so the recorded
    config is what ran: unspecified sampling knobs are off, not transformers' defaults)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


def sampling_config(cfg: dict[str, Any] | Sampling | None) -> Sampling:
    """Normalise ``{"name": ..., "do_sample"/"greedy", "temperature", "top_k", "top_p",
    "repetition_penalty", ...}``; unknown keys are a ConfigError naming them."""
    if isinstance(cfg, Sampling):
        return cfg
    cfg = dict(cfg or {})
    name = cfg.pop("name", None)
    greedy = cfg.pop("greedy", None)
    unknown = sorted(set(cfg) - set(SAMPLING_KEYS))
    if unknown:
        raise ConfigError(f"sampling config {name or cfg}: unknown key(s) {unknown} (allowed: "
                          f"name, greedy, {', '.join(SAMPLING_KEYS)})")
    if greedy is not None:
        if "do_sample" in cfg and bool(cfg["do_sample"]) == bool(greedy):
            raise ConfigError(f"sampling config {name}: greedy and do_sample contradict")
        cfg["do_sample"] = not greedy
    do_sample = bool(cfg.get("do_sample", True))
    kw: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        kw.update(temperature=1.0, top_k=0, top_p=1.0)
        kw.update({k: v for k, v in cfg.items() if k != "do_sample"})
        if float(kw["temperature"]) <= 0:
            raise ConfigError(f"sampling config {name}: temperature must be > 0")
    else:
        bad = sorted(k for k in cfg if k in ("temperature", "top_k", "top_p", "typical_p",
                                             "min_p"))
        if bad:
            raise ConfigError(f"sampling config {name}: {bad} mean nothing without sampling")
        kw.update({k: v for k, v in cfg.items() if k != "do_sample"})
    if float(kw.get("repetition_penalty", 1.0)) <= 0:
        raise ConfigError(f"sampling config {name}: repetition_penalty must be > 0")
    if name is None:  # from what was asked, not the filled-in defaults
        given = "-".join(f"{k}{v}" for k, v in sorted(cfg.items()) if k != "do_sample")
        name = ("greedy" if not do_sample else "sample") + (f"-{given}" if given else "")
    return Sampling(str(name), kw)



@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No "Writing model shards" / "Loading weights" bars for a one-file model."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)



class DrawPerSample:
    """Last logits processor: draw each row's token from that row's own generator and leave
    only it finite, so transformers' greedy step picks exactly the drawn token."""

    def __init__(self, generators: list[Any]):
        self.generators = generators

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        # drawn on the CPU, where the generators live: the same tokens on every device
        probs = torch.softmax(scores.float(), dim=-1).cpu()
        pick = torch.cat([torch.multinomial(probs[r], 1, generator=g)
                          for r, g in enumerate(self.generators)]).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(pick), device=scores.device), pick] = 0.0
        return out


def logits_processors(s: Sampling, model: Any, watermark: Any = None,
                      gens: list[Any] | None = None) -> list[Any]:
    """transformers' own warpers and ``watermark``'s processor (a ``TextWatermarkKey``), in the
    order ``generate`` applies them when it samples, then the per-sample draw from ``gens``
    (None: greedy)."""
    from transformers import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    kw = s.kwargs
    procs: list[Any] = []
    if kw["do_sample"]:
        if float(kw.get("temperature", 1.0)) != 1.0:
            procs.append(TemperatureLogitsWarper(float(kw["temperature"])))
        if int(kw.get("top_k", 0) or 0) != 0:
            procs.append(TopKLogitsWarper(int(kw["top_k"])))
        if float(kw.get("top_p", 1.0)) < 1.0:
            procs.append(TopPLogitsWarper(float(kw["top_p"])))
        if kw.get("min_p") is not None:
            procs.append(MinPLogitsWarper(float(kw["min_p"])))
        if float(kw.get("typical_p", 1.0)) < 1.0:
            procs.append(TypicalLogitsWarper(float(kw["typical_p"])))
    if watermark is not None:
        procs.append(watermark.to_transformers().construct_processor(
            model.config.get_text_config().vocab_size, model.device))
    if gens is not None:
        procs.append(DrawPerSample(gens))
    return procs
