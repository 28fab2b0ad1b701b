"""Text watermark evidence and its statistics: per-token hits from transformers' own logits
processors (KGW green lists, SynthID-Text g-values), their null rates, and the fewest tokens at
which a decision is possible. torch, transformers and scipy load inside the functions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from detect.core.errors import ConfigError
from detect.evidence.watermark.text_keys import TextWatermarkKey

# SynthID-paper weighting of tournament layers: linear 10 -> 1, normalised to sum to the depth
_SYNTHID_WEIGHT_RANGE = (10.0, 1.0)


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def kgw_min_tokens(greenlist_ratio: float, alpha: float, method: str = "binomial") -> int:
    """Fewest scored tokens at which even an all-green text reaches ``alpha``.

    Below it no outcome can be significant, so "absent" would be an empty statement and the
    status is "insufficient". Exact test: gamma**n <= alpha, so n = ceil(log alpha / log gamma)
    (gamma 0.25, alpha 1e-6: 10 tokens). Normal test: z_max = sqrt(n (1-gamma)/gamma) >=
    z_alpha, so n = ceil(z_alpha**2 gamma / (1-gamma)) (8 tokens: the normal tail is too
    optimistic that far out, which is why the exact test is the default).
    """
    g = float(greenlist_ratio)
    if method == "binomial":
        return max(1, math.ceil(math.log(alpha) / math.log(g) - 1e-9))
    if method == "normal":
        from scipy.stats import norm

        return max(1, math.ceil(norm.isf(alpha) ** 2 * g / (1 - g) - 1e-9))
    raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {method!r}")


def synthid_min_tokens(depth: int, alpha: float, null_mean: float = 0.5) -> int:
    """Fewest scored tokens at which g-values all equal to 1 reach ``alpha`` under the exact
    binomial null on ``depth`` bits per token: ceil(log alpha / (depth log q))."""
    return max(1, math.ceil(math.log(alpha) / (depth * math.log(null_mean)) - 1e-9))


@dataclass
class Evidence:
    """Per-token evidence: counted[i] says token i is scored, hits[i] how many of its
    ``trials`` keyed bits came out 1 (green for KGW; g-values summed over layers for SynthID),
    under the null each bit being Bernoulli(p0) and independent."""

    counted: Any  # np.ndarray[bool], one per token
    hits: Any  # np.ndarray[float]
    trials: int
    p0: float


@functools.lru_cache(maxsize=8)
def _kgw_processor(vocab_size: int, device: str, greenlist_ratio: float, hashing_key: int,
                   seeding_scheme: str, context_width: int) -> Any:
    """transformers' processor for these settings; cached because building it draws a
    permutation of a million entries. ``_get_greenlist_ids`` reseeds its generator on every
    call, so a shared instance gives the same lists (not thread-safe: one thread at a time)."""
    from transformers.generation.logits_process import WatermarkLogitsProcessor

    return WatermarkLogitsProcessor(vocab_size=vocab_size, device=device,
                                    greenlist_ratio=greenlist_ratio, hashing_key=hashing_key,
                                    seeding_scheme=seeding_scheme, context_width=context_width)


def kgw_evidence(ids: list[int], key: TextWatermarkKey, ignore_repeated_ngrams: bool
                  ) -> Evidence:
    """Green/not green for every token, exactly as WatermarkLogitsProcessor drew the lists."""
    import numpy as np
    import torch

    proc = _kgw_processor(int(key.vocab_size), key.device, float(key.greenlist_ratio),
                          int(key.hashing_key), key.seeding_scheme, int(key.context_width))
    selfhash = key.seeding_scheme == "selfhash"
    # the same n-gram layout as transformers' WatermarkDetector: the scored token and the
    # context_width tokens before it (selfhash seeds on the token itself, so one fewer)
    n = int(key.context_width) + 1 - int(selfhash)
    counted = np.zeros(len(ids), dtype=bool)
    hits = np.zeros(len(ids), dtype=float)
    greenlists: dict[tuple[int, ...], set[int]] = {}
    seen: set[tuple[int, ...]] = set()
    for i in range(n - 1, len(ids)):
        ngram = tuple(ids[i - n + 1:i + 1])
        prefix = ngram if selfhash else ngram[:-1]
        if prefix not in greenlists:
            t = torch.tensor(prefix, dtype=torch.long, device=key.device)
            greenlists[prefix] = set(proc._get_greenlist_ids(t).tolist())
        hits[i] = float(ngram[-1] in greenlists[prefix])
        # a repeated (context, token) n-gram repeats its colour: it is not a new coin flip
        counted[i] = not (ignore_repeated_ngrams and ngram in seen)
        seen.add(ngram)
    hits[~counted] = 0.0
    return Evidence(counted=counted, hits=hits, trials=1, p0=float(key.greenlist_ratio))


def synthid_evidence(ids: list[int], key: TextWatermarkKey, eos_token_id: int | None
                      ) -> tuple[Evidence, Any]:
    """g-values of every scored token (transformers' processor), its repetition and EOS masks,
    and the null rate q = the fraction of ones in the keyed sampling table."""
    import numpy as np
    import torch
    from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

    proc = SynthIDTextWatermarkLogitsProcessor(
        ngram_len=int(key.ngram_len), keys=list(key.keys),
        sampling_table_size=int(key.sampling_table_size),
        sampling_table_seed=int(key.sampling_table_seed),
        context_history_size=int(key.context_history_size), device=key.device)
    depth, n = len(key.keys), int(key.ngram_len)
    # Null: a g-value is sampling_table[h mod size], h an LCG hash of (n-gram, layer key).
    # For text that does not depend on the key, h mod size is ~uniform, so each g-value is
    # Bernoulli(q) with q the table's mean (0.5 up to sampling noise, taken exactly here).
    # Layers use distinct keys -> distinct table slots; distinct n-grams -> distinct hashes;
    # repeated contexts (which would repeat g-values) are masked below, as the reference does.
    q = float(proc.sampling_table.double().mean())
    counted = np.zeros(len(ids), dtype=bool)
    hits = np.zeros(len(ids), dtype=float)
    g_full = np.zeros((len(ids), depth), dtype=float)
    if len(ids) >= n:
        t = torch.tensor([ids], dtype=torch.long, device=key.device)
        with torch.no_grad():
            g = proc.compute_g_values(t)[0].cpu().numpy().astype(float)  # [L-n+1, depth]
            mask = proc.compute_context_repetition_mask(t)[0].cpu().numpy().astype(bool)
            if eos_token_id is not None:
                eos = proc.compute_eos_token_mask(t, int(eos_token_id))[0, n - 1:]
                mask &= eos.cpu().numpy().astype(bool)
        counted[n - 1:] = mask
        g_full[n - 1:] = g * mask[:, None]
        hits = g_full.sum(axis=1)
    return Evidence(counted=counted, hits=hits, trials=depth, p0=q), g_full


def synthid_layer_weights(depth: int) -> list[float]:
    """SynthID's weighted-mean layer weights: linear from 10 (first tournament layer, which
    carries the most signal) down to 1, normalised to sum to ``depth``."""
    hi, lo = _SYNTHID_WEIGHT_RANGE
    w = [hi - (hi - lo) * i / (depth - 1) for i in range(depth)] if depth > 1 else [1.0]
    s = sum(w)
    return [x * depth / s for x in w]
