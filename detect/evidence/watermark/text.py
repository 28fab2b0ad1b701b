"""Text watermark verification from text: KGW green lists and SynthID-Text g-values.

Both schemes are keyed pseudo-random functions of the token sequence. Text written without
the key hits them at a known rate (``gamma`` green tokens for KGW, g-values that are fair coins
for SynthID), so the evidence is a count of hits among independent trials and the decision is
an exact binomial tail at a stated false-positive rate. The keyed functions are transformers'
own logits processors, called on the token ids, so what we score is by construction what
``generate(..., watermarking_config=...)`` embedded.

Three things decide whether detection can work at all, and the key file records all of them:
the scheme parameters, the tokenizer (a different vocabulary gives different ids: the
``tokenizer_sha256`` fingerprint notices), and for KGW the model's vocabulary size and the
device the green lists were drawn on (``torch.randperm`` differs between CPU and CUDA).

Keys and tokenizers are in :mod:`detect.evidence.watermark.text_keys`, the per-token evidence
and its statistics in :mod:`detect.evidence.watermark.text_stats`. ``import detect`` stays
light: torch, transformers and scipy load inside the functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from detect.core.errors import ConfigError
from detect.evidence.watermark import (
    DEFAULT_TARGET_FPR,
    WatermarkResult,
    binomial_sf,
    corrected_alpha,
    decide,
)
from detect.evidence.watermark.text_keys import (
    KeyMismatchWarning,
    TextWatermarkKey,
    as_id_list,
    encode,
    key_differences,
    resolve_tokenizer,
    tokenizer_fingerprint,
)
from detect.evidence.watermark.text_stats import (
    Evidence,
    kgw_evidence,
    kgw_min_tokens,
    normal_sf,
    synthid_evidence,
    synthid_layer_weights,
    synthid_min_tokens,
)


def _prepare(key: TextWatermarkKey, scheme: str, tokenizer: Any,
             overrides: Mapping[str, Any] | None, need_tokenizer: bool
             ) -> tuple[TextWatermarkKey, Any, list[str]]:
    """The detection key (key + overrides), the tokenizer, and the mismatch warnings."""
    if key.scheme != scheme:
        raise ConfigError(f"key {key.name or ''!s} is a {key.scheme!r} key, not {scheme!r}")
    dkey = key.replace(**dict(overrides)) if overrides else key
    dkey.validate("detection settings")
    tok = resolve_tokenizer(tokenizer, key) if (need_tokenizer or tokenizer is not None) \
        else None
    notes = []
    if tok is not None:
        fp = tokenizer_fingerprint(tok)
        if dkey.tokenizer_sha256 != fp and "tokenizer_sha256" not in (overrides or {}):
            dkey = dkey.replace(tokenizer_sha256=fp)
        if key.vocab_size is not None and len(tok) > key.vocab_size:
            notes.append(f"vocab_size: the tokenizer has {len(tok)} tokens but the key's model "
                         f"vocabulary is {key.vocab_size}; ids beyond it can never be green")
    if scheme == "kgw" and dkey.vocab_size is None:
        if tok is None:
            raise ConfigError("KGW detection needs the model's vocab_size: set it in the key")
        dkey = dkey.replace(vocab_size=len(tok))
        notes.append(f"vocab_size: the key does not record the model's vocabulary size; "
                     f"assuming len(tokenizer) = {len(tok)}")
    if dkey.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"the key's green lists were drawn on {dkey.device!r}, which is not "
                              "available here; CPU draws differ, so detection cannot reproduce "
                              "them")
    msgs = key_differences(key, dkey) + notes
    for m in msgs:
        warnings.warn(f"text watermark detection differs from its key: {m}", KeyMismatchWarning,
                      stacklevel=3)
    return dkey, tok, msgs


def _window_test(hits: float, n_counted: int, ev: Evidence) -> dict[str, Any]:
    trials = n_counted * ev.trials
    p0 = ev.p0
    if trials == 0:
        return {"z": None, "p_binomial": 1.0, "p_normal": 1.0}
    z = (hits - p0 * trials) / math.sqrt(trials * p0 * (1 - p0))
    return {"z": z, "p_binomial": binomial_sf(math.ceil(hits), trials, p0),
            "p_normal": normal_sf(z)}


def _result(scheme: str, key: TextWatermarkKey, p: float | None, target_fpr: float, n_tests: int,
            statistic: dict[str, Any], details: dict[str, Any]) -> WatermarkResult:
    status, alpha = decide(p, target_fpr, n_tests)
    return WatermarkResult(kind="text", scheme=scheme, payload=key.name or "user", status=status,
                           p_value=p, alpha=alpha, target_fpr=target_fpr, n_tests=n_tests,
                           statistic=statistic, details=details)


def _check_kgw(ids: list[int], dkey: TextWatermarkKey, msgs: list[str], target_fpr: float,
               n_tests: int, min_tokens: int | None, ignore_repeated_ngrams: bool,
               p_method: str, extra: dict[str, Any]) -> WatermarkResult:
    alpha = corrected_alpha(target_fpr, n_tests)
    mt = min_tokens if min_tokens is not None else kgw_min_tokens(dkey.greenlist_ratio, alpha,
                                                                   p_method)
    ev = kgw_evidence(ids, dkey, ignore_repeated_ngrams)
    n, green = int(ev.counted.sum()), float(ev.hits.sum())
    t = _window_test(green, n, ev)
    stat = {"tokens": len(ids), "tokens_scored": n, "green": int(green),
            "green_fraction": green / n if n else None, "gamma": float(dkey.greenlist_ratio),
            "z": t["z"], "p_binomial": t["p_binomial"], "p_normal": t["p_normal"],
            "min_tokens": mt}
    p = None if n < mt else (t["p_binomial"] if p_method == "binomial" else t["p_normal"])
    details = {"key_fingerprint": dkey.fingerprint, "seeding_scheme": dkey.seeding_scheme,
               "context_width": dkey.context_width, "ignore_repeated_ngrams":
               ignore_repeated_ngrams, "p_method": p_method, "warnings": msgs, **extra}
    if n < mt:
        details["reason"] = (f"{n} scored tokens; at least {mt} are needed before even an "
                             f"all-green text could reach alpha={alpha:g}")
    return _result("kgw", dkey, p, target_fpr, n_tests, stat, details)


def verify_kgw_ids(ids: Any, key: TextWatermarkKey, *, target_fpr: float = DEFAULT_TARGET_FPR,
                   n_tests: int = 1, min_tokens: int | None = None,
                   ignore_repeated_ngrams: bool = True, p_method: str = "binomial",
                   overrides: Mapping[str, Any] | None = None, tokenizer: Any = None
                   ) -> WatermarkResult:
    """KGW check on token ids (the generated part only: a prompt was not watermarked).

    Each scored token is green with probability ``gamma`` in text written without the key, so
    the green count is Binomial(n, gamma) and the p-value is its exact upper tail (the normal
    tail of the z-score, which transformers reports, understates it 3-40x near 1e-6 because the
    binomial is skewed at gamma=0.25; ``p_method="normal"`` gives it, and both are in
    ``statistic``). transformers' green list holds int(V * gamma) tokens, so the true null rate
    is at most gamma: testing against gamma is exact or conservative. Repeated (context, token)
    n-grams are scored once (``ignore_repeated_ngrams``; off by default in transformers): a
    repeat repeats its colour, and counting it again would make repetitive human text look
    watermarked. A ``tokenizer``, if given, is checked against the key's fingerprint.
    """
    if p_method not in ("binomial", "normal"):
        raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {p_method!r}")
    dkey, _, msgs = _prepare(key, "kgw", tokenizer, overrides, need_tokenizer=False)
    return _check_kgw(as_id_list(ids), dkey, msgs, target_fpr, n_tests, min_tokens,
                      ignore_repeated_ngrams, p_method, {})


def verify_kgw(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
               target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
               min_tokens: int | None = None, ignore_repeated_ngrams: bool = True,
               p_method: str = "binomial", overrides: Mapping[str, Any] | None = None
               ) -> WatermarkResult:
    """Is ``text`` KGW-watermarked under ``key``? Tokenises (no special tokens) and scores.

    ``tokenizer`` is an object, a path or a hub id; by default the one the key names.
    ``min_tokens`` defaults to :func:`kgw_min_tokens` at the corrected alpha; ``overrides``
    (e.g. ``{"greenlist_ratio": 0.5}``) change detection settings and raise a
    KeyMismatchWarning listing what differs from the key. See :func:`verify_kgw_ids`.
    """
    if p_method not in ("binomial", "normal"):
        raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {p_method!r}")
    dkey, tok, msgs = _prepare(key, "kgw", tokenizer, overrides, need_tokenizer=True)
    ids, _ = encode(text, tok)
    return _check_kgw(ids, dkey, msgs, target_fpr, n_tests, min_tokens, ignore_repeated_ngrams,
                      p_method, {"chars": len(text)})


def _check_synthid(ids: list[int], dkey: TextWatermarkKey, msgs: list[str], target_fpr: float,
                   n_tests: int, min_tokens: int | None, score: str, eos_token_id: int | None,
                   vocab: int | None, extra: dict[str, Any]) -> WatermarkResult:
    if score not in ("mean", "weighted"):
        raise ConfigError(f"SynthID score must be 'mean' or 'weighted', got {score!r}")
    alpha = corrected_alpha(target_fpr, n_tests)
    depth = len(dkey.keys)
    ev, g = synthid_evidence(ids, dkey, eos_token_id)
    q = ev.p0
    n = int(ev.counted.sum())
    w = synthid_layer_weights(depth)
    s1, s2 = sum(w), sum(x * x for x in w)
    if min_tokens is None:
        if score == "mean":
            min_tokens = synthid_min_tokens(depth, alpha, q)
        else:  # all-one g-values: z = sqrt(n (1-q)/q) * s1 / sqrt(s2) must reach z_alpha
            from scipy.stats import norm

            min_tokens = max(1, math.ceil(norm.isf(alpha) ** 2 * q / (1 - q) * s2 / s1**2))
    t = _window_test(float(ev.hits.sum()), n, ev)
    wsum = float((g * [w]).sum())
    z_w = (wsum - q * n * s1) / math.sqrt(n * q * (1 - q) * s2) if n else None
    p_w = normal_sf(z_w) if z_w is not None else 1.0
    stat = {"tokens": len(ids), "tokens_scored": n, "depth": depth, "null_mean": q,
            "mean": float(ev.hits.sum()) / (n * depth) if n else None,
            "weighted_mean": wsum / (n * depth) if n else None, "z": t["z"],
            "p_binomial": t["p_binomial"], "z_weighted": z_w, "p_weighted": p_w,
            "min_tokens": min_tokens}
    p = None if n < min_tokens else (t["p_binomial"] if score == "mean" else p_w)
    # transformers' expected_mean_g_value: one layer, a uniform LM over the vocabulary
    ideal = 0.5 + 0.25 * (1 - 1 / vocab) if vocab else 0.75
    details = {"key_fingerprint": dkey.fingerprint, "ngram_len": dkey.ngram_len, "score": score,
               "ideal_watermarked_mean": ideal, "warnings": msgs, **extra}
    if n < min_tokens:
        details["reason"] = (f"{n} scored tokens; at least {min_tokens} are needed before even "
                             f"all-one g-values could reach alpha={alpha:g}")
    return _result("synthid", dkey, p, target_fpr, n_tests, stat, details)


def verify_synthid_ids(ids: Any, key: TextWatermarkKey, *,
                       target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                       min_tokens: int | None = None, score: str = "mean",
                       eos_token_id: int | None = None,
                       overrides: Mapping[str, Any] | None = None, tokenizer: Any = None
                       ) -> WatermarkResult:
    """SynthID-Text check on token ids, without a trained detector.

    Under no watermark every unmasked g-value is an independent Bernoulli(q) coin, q = the
    sampling table's mean (see ``synthid_evidence``), so ``score="mean"`` uses the exact
    binomial tail of the g-value sum over tokens x layers. ``score="weighted"`` uses the
    SynthID paper's layer weights (10 -> 1), which follow the signal's decay over tournament
    layers, with a normal tail of the weighted sum (symmetric bits: the approximation is close).
    Both scores are in ``statistic`` whichever decides. Masks as transformers' detector:
    repeated contexts, and everything from the first EOS on.
    """
    dkey, tok, msgs = _prepare(key, "synthid", tokenizer, overrides, need_tokenizer=False)
    if eos_token_id is None and tok is not None:
        eos_token_id = getattr(tok, "eos_token_id", None)
    vocab = dkey.vocab_size or (len(tok) if tok is not None else None)
    return _check_synthid(as_id_list(ids), dkey, msgs, target_fpr, n_tests, min_tokens, score,
                          eos_token_id, vocab, {})


def verify_synthid(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
                   target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                   min_tokens: int | None = None, score: str = "mean",
                   overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """Is ``text`` SynthID-watermarked under ``key``? Tokenises (no special tokens) and scores;
    see :func:`verify_synthid_ids`."""
    dkey, tok, msgs = _prepare(key, "synthid", tokenizer, overrides, need_tokenizer=True)
    ids, _ = encode(text, tok)
    return _check_synthid(ids, dkey, msgs, target_fpr, n_tests, min_tokens, score,
                          getattr(tok, "eos_token_id", None), dkey.vocab_size or len(tok),
                          {"chars": len(text)})


def verify_text(text: str, key: TextWatermarkKey, tokenizer: Any = None, **kwargs: Any
                ) -> WatermarkResult:
    """Dispatch on the key's scheme (one front door for scan/CLI code)."""
    fn = verify_kgw if key.scheme == "kgw" else verify_synthid
    return fn(text, key, tokenizer, **kwargs)


# ---------------------------------------------------------------------------------------------
# windowed scan


def _windows(n_tokens: int, sizes: Sequence[int], stride: int | None) -> list[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for w in sizes:
        if w >= n_tokens:
            continue
        s = max(1, stride if stride is not None else w // 4)
        starts = list(range(0, n_tokens - w + 1, s))
        if starts[-1] != n_tokens - w:
            starts.append(n_tokens - w)  # cover the tail too
        out.update((a, a + w) for a in starts)
    out.add((0, n_tokens))  # the whole text is one of the tests
    return sorted(out)


def _scan(text: str, key: TextWatermarkKey, scheme: str, tokenizer: Any, window: Any,
          stride: int | None, target_fpr: float, n_tests: int, min_tokens: int | None,
          overrides: Mapping[str, Any] | None, ignore_repeated_ngrams: bool) -> WatermarkResult:
    import numpy as np

    dkey, tok, msgs = _prepare(key, scheme, tokenizer, overrides, need_tokenizer=True)
    ids, offsets = encode(text, tok)
    if scheme == "kgw":
        ev = kgw_evidence(ids, dkey, ignore_repeated_ngrams)
    else:
        ev, _ = synthid_evidence(ids, dkey, getattr(tok, "eos_token_id", None))
    sizes = [window] if isinstance(window, int) else list(window)
    wins = _windows(len(ids), sizes, stride)
    m = len(wins)
    alpha_all = corrected_alpha(target_fpr, n_tests * m)
    if min_tokens is None:
        min_tokens = (kgw_min_tokens(dkey.greenlist_ratio, alpha_all) if scheme == "kgw"
                      else synthid_min_tokens(len(dkey.keys), alpha_all, ev.p0))
    c_cnt = np.concatenate([[0], np.cumsum(ev.counted)])
    c_hit = np.concatenate([[0.0], np.cumsum(ev.hits)])
    best: dict[str, Any] | None = None
    for a, b in wins:
        n = int(c_cnt[b] - c_cnt[a])
        if n < min_tokens:
            continue
        hits = float(c_hit[b] - c_hit[a])
        t = _window_test(hits, n, ev)
        if best is None or (t["p_binomial"], -(t["z"] or 0)) < (best["p"], -(best["z"] or 0)):
            best = {"tokens": (a, b), "tokens_scored": n, "hits": hits, "z": t["z"],
                    "p": t["p_binomial"]}
    whole_n = int(ev.counted.sum())
    whole = _window_test(float(ev.hits.sum()), whole_n, ev)
    stat: dict[str, Any] = {
        "tokens": len(ids), "windows_tested": m, "window_sizes": sizes,
        "stride": stride if stride is not None else "window/4",
        "whole_text": {"tokens_scored": whole_n, "z": whole["z"], "p": whole["p_binomial"]},
    }
    details = {"key_fingerprint": dkey.fingerprint, "chars": len(text), "warnings": msgs,
               "correction": (f"Bonferroni over the {m} windows tested (all sizes and offsets, the "
                              "whole text included): a window is significant when m * p <= "
                              "target_fpr / n_tests; conservative, as overlapping windows are "
                              "positively correlated"), "min_tokens_per_window": min_tokens}
    p = None
    if best is not None:
        a, b = best["tokens"]
        if offsets is not None:
            span = (int(offsets[a][0]), int(offsets[b - 1][1]))
        else:
            span = (len(tok.decode(ids[:a])), len(tok.decode(ids[:b])))
        frac_key = "green_fraction" if scheme == "kgw" else "mean"
        stat["best_window"] = {
            "token_span": [a, b], "char_span": list(span), "tokens_scored": best["tokens_scored"],
            frac_key: best["hits"] / (best["tokens_scored"] * ev.trials), "z": best["z"],
            "p": best["p"], "p_corrected": min(1.0, best["p"] * m)}
        p = best["p"]
    else:
        details["reason"] = (f"no window has {min_tokens} scored tokens, the fewest at which the "
                             f"corrected alpha={alpha_all:g} is reachable")
    return _result(scheme, dkey, p, target_fpr, n_tests * m, stat, details)


def scan_kgw(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
             window: int | Sequence[int] = (32, 64, 128, 256), stride: int | None = None,
             target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
             min_tokens: int | None = None, ignore_repeated_ngrams: bool = True,
             overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """Find a KGW-watermarked passage inside longer, mostly human text.

    A pasted watermarked paragraph is diluted in a whole-text test; scoring sliding windows
    (several sizes, default stride a quarter window, the whole text included) finds it. The
    best window's exact binomial p-value is Bonferroni-corrected for every window tried, so the
    false-positive rate on a clean text stays at ``target_fpr``: ``n_tests`` in the result is
    ``n_tests * windows``. ``statistic["best_window"]`` has its token and character span.
    """
    return _scan(text, key, "kgw", tokenizer, window, stride, target_fpr, n_tests, min_tokens,
                 overrides, ignore_repeated_ngrams)


def scan_synthid(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
                 window: int | Sequence[int] = (32, 64, 128, 256), stride: int | None = None,
                 target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                 min_tokens: int | None = None,
                 overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """The windowed scan of :func:`scan_kgw` on SynthID g-values (exact binomial per window)."""
    return _scan(text, key, "synthid", tokenizer, window, stride, target_fpr, n_tests,
                 min_tokens, overrides, True)
