"""One forward pass per scoring model, shared by every zero-shot text detector.

Likelihood, log-rank, entropy, GLTR's rank buckets, Fast-DetectGPT's analytic sampling
discrepancy and Binoculars' cross-perplexity all read the same two things: the log-probability
of each token the text actually has, and the model's whole next-token distribution at that
position. ``TokenStats`` keeps, per token, what each statistic needs (so the distribution itself,
vocabulary-sized, is reduced on the spot and never stored):

- ``logp``: log p(actual token);
- ``rank``: 1 + how many tokens the model preferred to it;
- ``entropy``: H of the next-token distribution;
- ``mu`` / ``var``: mean and variance of log p(x) for x drawn from the *reference* distribution
  (the model itself, or the performer when there are two): Fast-DetectGPT's analytic terms;
- ``xent``: cross-entropy of the performer's distribution under the observer, Binoculars'
  denominator (only with a performer).

Scorers are named ``shipped:NAME`` (a folder under ``detect/models``), a local folder saved with
``save_pretrained``, or a hub id (for users with internet). Texts longer than the model's context
are scored in overlapping windows (every token keeps at least half a context of history), up
to ``max_tokens``; the cut is recorded. Results are cached per (scorer, text), so a scan that
runs six detectors on one file makes one pass per model.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.device import torch_device
from detect.core.errors import ModelError

SHIPPED_PREFIX = "shipped:"


def models_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "models"


def resolve_model_ref(ref: str, base: str | Path | None = None) -> str:
    """The folder (or hub id) an LM reference names, as a string for ``from_pretrained``: the
    grammar and the resolver are :func:`detect.core.models.resolve_ref`'s."""
    from detect.core.models import resolve_ref

    return str(resolve_ref(ref, base))


@dataclass
class TokenStats:
    """Per-token evidence for one text (scored tokens only: the first token has no context)."""

    n_tokens: int  # tokens of the text before any cap
    truncated: bool
    logp: np.ndarray
    rank: np.ndarray
    entropy: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    xent: np.ndarray | None = None
    offsets: list[tuple[int, int]] = field(default_factory=list)  # char span of each scored token

    @property
    def n_scored(self) -> int:
        return int(self.logp.shape[0])


@functools.lru_cache(maxsize=4)
def load_lm(ref: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) by folder or hub id; eval mode, float32, on ``device``, cached per
    process and device."""
    import torch

    dev = torch_device(device, f"language model {ref}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a scan's stderr is for its own progress and errors
    try:
        tok = AutoTokenizer.from_pretrained(ref)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32)
    except Exception as e:  # transformers raises OSError/ValueError/... depending on the cause
        raise ModelError(f"{ref}: cannot load a causal language model "
                         f"({e.__class__.__name__}: {e})") from e
    finally:
        if was:
            hf_logging.enable_progress_bar()
    model.eval()
    return model.to(dev), tok


def vocab_fingerprint(tok: Any) -> str:
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(repr(vocab).encode("utf-8")).hexdigest()[:16]


class LMScorer:
    """Token statistics from an observer LM and, optionally, a performer sharing its tokenizer."""

    def __init__(self, observer: str, performer: str | None = None, *, max_tokens: int = 1024,
                 batch_size: int = 8, base: str | Path | None = None, cache_size: int = 256,
                 device: str = "cpu"):
        self.observer_ref, self.performer_ref = observer, performer
        self.max_tokens, self.batch_size = int(max_tokens), int(batch_size)
        self.device = torch_device(device, "LMScorer")
        self.model, self.tok = load_lm(resolve_model_ref(observer, base), device)
        self.performer = None
        if performer:
            self.performer, ptok = load_lm(resolve_model_ref(performer, base), device)
            if vocab_fingerprint(ptok) != vocab_fingerprint(self.tok):
                raise ModelError(f"observer {observer!r} and performer {performer!r} use "
                                 "different tokenizers; Binoculars compares their next-token "
                                 "distributions token by token, so they must share one")
        self.context = int(getattr(self.model.config, "n_positions", None)
                           or getattr(self.model.config, "max_position_embeddings", 1024))
        self._cache: OrderedDict[str, TokenStats] = OrderedDict()
        self._cache_size = cache_size

    @property
    def key(self) -> str:
        return f"{self.observer_ref}|{self.performer_ref or ''}|{self.max_tokens}"

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def stats(self, texts: list[str], progress: bool = False) -> list[TokenStats]:
        """TokenStats per text, batched by similar length, cached per text."""
        out: list[TokenStats | None] = [None] * len(texts)
        todo: list[tuple[int, str, list[int], list[tuple[int, int]]]] = []
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()
            if h in self._cache:
                self._cache.move_to_end(h)
                out[i] = self._cache[h]
                continue
            ids, offs = self.encode(t)
            todo.append((i, h, ids, offs))
        # windows of every pending text, scored in length-sorted batches
        jobs: list[tuple[int, int, list[int]]] = []  # (todo index, first scored pos, window ids)
        per: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for j, (_, _, ids, _) in enumerate(todo):
            ids = ids[:self.max_tokens]
            for start, lo in self._windows(len(ids)):
                jobs.append((j, lo, ids[start:start + self.context]))
                per.setdefault(j, [])
        order = sorted(range(len(jobs)), key=lambda k: len(jobs[k][2]))
        from tqdm.auto import tqdm

        batches = [order[b:b + self.batch_size] for b in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="lm score", unit="batch", file=sys.stderr,
                          disable=not progress, leave=False):
            results = self._score_windows([jobs[k][2] for k in batch])
            for k, res in zip(batch, results, strict=True):
                j, lo, _ = jobs[k]
                per[j].append((lo, {name: arr[lo:] for name, arr in res.items()}))
        for j, (i, h, ids, offs) in enumerate(todo):
            parts = sorted(per.get(j, []), key=lambda x: x[0])
            n = min(len(ids), self.max_tokens)

            def cat(name: str, parts=parts) -> np.ndarray:
                arrs = [p[name] for _, p in parts if name in p]
                return np.concatenate(arrs) if arrs else np.zeros(0)

            ts = TokenStats(n_tokens=len(ids), truncated=len(ids) > self.max_tokens,
                            logp=cat("logp"), rank=cat("rank"), entropy=cat("entropy"),
                            mu=cat("mu"), var=cat("var"),
                            xent=cat("xent") if self.performer is not None else None,
                            offsets=list(offs[1:n]))
            out[i] = ts
            self._cache[h] = ts
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out  # type: ignore[return-value]

    def _windows(self, n: int) -> list[tuple[int, int]]:
        """(start, first position to keep, relative to the window) of each window.

        Position p of a window predicts token p + 1; the first window keeps everything, later
        ones only the tokens past the previous window's end, each with >= context/2 history."""
        ctx = self.context
        if n <= ctx:
            return [(0, 0)]
        hop = max(1, ctx // 2)
        out = [(0, 0)]
        start = hop
        while True:
            end_prev = start - hop + ctx  # the previous window covered tokens < end_prev
            out.append((start, end_prev - start - 1))
            if start + ctx >= n:
                break
            start += hop
        return out

    def _score_windows(self, windows: list[list[int]]) -> list[dict[str, np.ndarray]]:
        """Per-position statistics for a batch of token windows (right-padded)."""
        import torch

        L = max(len(w) for w in windows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(windows), L), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), L), dtype=torch.long)
        for r, w in enumerate(windows):
            ids[r, :len(w)] = torch.tensor(w, dtype=torch.long)
            mask[r, :len(w)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            lo = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                                   .float(), dim=-1)
            target = ids[:, 1:]
            logp = lo.gather(-1, target[..., None])[..., 0]
            rank = (lo > logp[..., None]).sum(-1) + 1
            p_obs = lo.exp()
            entropy = -(p_obs * lo).sum(-1)
            if self.performer is not None:
                lp = torch.log_softmax(self.performer(input_ids=ids, attention_mask=mask)
                                       .logits[:, :-1].float(), dim=-1)
                ref = lp.exp()
                xent = -(ref * lo).sum(-1)
            else:
                ref, xent = p_obs, None
            mu = (ref * lo).sum(-1)
            var = (ref * lo.square()).sum(-1) - mu.square()
        logp, rank, entropy, mu, var = (t.cpu() for t in (logp, rank, entropy, mu, var))
        xent = xent.cpu() if xent is not None else None
        out = []
        for r, w in enumerate(windows):
            k = len(w) - 1
            d = {"logp": logp[r, :k].numpy().astype(np.float64),
                 "rank": rank[r, :k].numpy().astype(np.float64),
                 "entropy": entropy[r, :k].numpy().astype(np.float64),
                 "mu": mu[r, :k].numpy().astype(np.float64),
                 "var": var[r, :k].clamp_min(0).numpy().astype(np.float64)}
            if xent is not None:
                d["xent"] = xent[r, :k].numpy().astype(np.float64)
            out.append(d)
        return out


# -- statistics from TokenStats (higher = more likely machine-written) -------------------------

GLTR_EDGES = (10, 100, 1000)  # GLTR's colour buckets: top-10, top-100, top-1000, the rest


def statistic(ts: TokenStats, name: str, sl: slice | None = None) -> float:
    """One zero-shot statistic over the scored tokens (or a slice of them)."""
    s = sl or slice(None)
    lp = ts.logp[s]
    if lp.size == 0:
        return float("nan")
    if name == "likelihood":
        return float(lp.mean())
    if name == "logrank":
        return float(-np.log(ts.rank[s]).mean())
    if name == "entropy":
        return float(-ts.entropy[s].mean())
    if name == "fastdetect":
        v = float(ts.var[s].sum())
        return float((lp.sum() - ts.mu[s].sum()) / np.sqrt(max(v, 1e-12)))
    if name == "binoculars":
        if ts.xent is None:
            raise ModelError("binoculars needs a performer model beside the observer")
        # B = log-perplexity / cross-perplexity (both in nats); low B = machine -> score = -B
        return float(lp.mean() / max(float(ts.xent[s].mean()), 1e-12))
    if name == "lrr":  # DetectLLM's log-likelihood / log-rank ratio: machine text ranks low
        return float(-lp.mean() / max(float(np.log(ts.rank[s]).mean()), 1e-6))
    raise ModelError(f"unknown zero-shot statistic {name!r}")


def gltr_features(ts: TokenStats, sl: slice | None = None) -> np.ndarray:
    """Fractions of tokens in GLTR's rank buckets (top-10, -100, -1000, rest)."""
    r = ts.rank[sl or slice(None)]
    if r.size == 0:
        return np.full(len(GLTR_EDGES) + 1, np.nan)
    edges = (0, *GLTR_EDGES, np.inf)
    return np.array([float(((r > a) & (r <= b)).mean()) for a, b in zip(edges[:-1], edges[1:],
                                                                        strict=True)])


STATISTICS = ("likelihood", "logrank", "entropy", "fastdetect", "binoculars", "lrr", "gltr")
