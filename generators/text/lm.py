"""Causal language models as text generators: small GPT-2s trained here, or any transformers LM.

- :func:`train_tokenizer`: byte-level BPE (GPT-2 style) with the ``tokenizers`` library, wrapped
  as a transformers fast tokenizer (``save_pretrained`` / ``from_pretrained``); deterministic.
- :class:`CausalLM`: a GPT-2 trained here with transformers. ``fit`` is resumable: model,
  optimizer, step and both random streams (batch sampling and dropout) are checkpointed as
  safetensors, so an interrupted fit continued later ends with the weights of an unbroken one.
  ``save`` is ``save_pretrained`` of model and tokenizer plus ``unmask.json``.
- :class:`PretrainedCausalLM`: any transformers causal LM by hub id or folder (nothing trained,
  nothing copied: ``save`` writes a reference with the sha256 of the model's files).

Generation is one prompt at a time, each under its own seed ``sample_seed(seed, index)`` in a
forked torch RNG: sample *i* depends only on (seed, *i*) and the prompt, never on what else is
generated or in which batch, and a batch of prompts of different lengths needs no padding
(padding changes the numbers slightly). On CPU a tiny GPT-2 gains little from batching anyway.
Same thread count, same machine type: same tokens (float reductions may differ otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError
from detect.core.generator_io import load_registered, read_schema_file
from detect.core.params import HasParams
from detect.core.types import Provenance, Sample
from generators.image.base import GENERATOR_SCHEMA, file_sha256, sample_seed

META_FILE = "unmask.json"
EOS = "<|endoftext|>"
# hyperparameters that may differ between an interrupted fit and its continuation (the
# tokenizer is compared by its vocabulary, not by the folder it was read from)
RESUMABLE_CHANGES = ("checkpoint_every", "tokenizer")
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "typical_p", "min_p",
                 "repetition_penalty", "no_repeat_ngram_size")


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE (GPT-2 style) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=EOS)


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # transformers raises OSError/ValueError/... depending on the cause
        raise ModelError(f"{path}: cannot load tokenizer ({e.__class__.__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------
# sampling configurations


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


# ---------------------------------------------------------------------------------------------
# shared generation code


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _DrawPerSample:
    """Last logits processor: draw each row's token from that row's own generator and leave
    only it finite, so transformers' greedy step picks exactly the drawn token."""

    def __init__(self, generators: list[Any]):
        self.generators = generators

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float(), dim=-1)
        pick = torch.cat([torch.multinomial(probs[r], 1, generator=g)
                          for r, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(pick)), pick] = 0.0
        return out


class TextLM(HasParams):
    """Generation, perplexity and provenance shared by trained and pretrained causal LMs."""

    family = "lm"
    modality = "text"
    name = "lm"
    trainable = True
    threads: int | None = 1

    # -- state ------------------------------------------------------------------------------
    def _require(self) -> tuple[Any, Any]:
        if not hasattr(self, "model_"):
            raise ModelError(f"{self.name} is not ready: fit(), prepare() or load() it first")
        return self.model_, self.tokenizer_

    def _start_id(self) -> int:
        tok = self._require()[1]
        sid = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if sid is None:
            raise ModelError(f"{self.name}: tokenizer has neither a bos nor an eos token")
        return int(sid)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (what a continuation extends)."""
        return list(self._require()[1](text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self._require()[1].decode(list(ids), skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False)

    @property
    def max_positions(self) -> int:
        cfg = self._require()[0].config
        return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings",
                                                                1024))

    # -- scoring ----------------------------------------------------------------------------
    def perplexity(self, texts: Sequence[str], *, max_tokens: int | None = None) -> float:
        """exp(mean negative log-likelihood per token) over ``texts`` (each scored from a start
        token, in windows of the model's context; ``max_tokens`` caps each text)."""
        import torch

        model, _ = self._require()
        window = self.max_positions
        nll, n = 0.0, 0
        with _torch_threads(self.threads), torch.inference_mode():
            for t in (x if isinstance(x, str) else x.text for x in texts):
                ids = self.encode(t)
                if max_tokens is not None:
                    ids = ids[:max_tokens]
                seq = [self._start_id(), *ids]
                for a in range(0, len(seq) - 1, window):
                    x = torch.tensor([seq[a:a + window]])
                    y = torch.tensor(seq[a + 1:a + window + 1])
                    logits = model(input_ids=x, attention_mask=torch.ones_like(x)
                                   ).logits[0, :len(y)].float()
                    nll += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                    n += len(y)
        if n == 0:
            raise ConfigError("perplexity needs at least one token of text")
        return math.exp(nll / n)

    def evaluate(self, heldout: Sequence[Any], max_tokens: int | None = None) -> dict[str, Any]:
        """Perplexity on held-out human texts, kept for ``save`` (``heldout_perplexity``)."""
        texts = _texts(heldout)
        self.heldout_ = {"perplexity": self.perplexity(texts, max_tokens=max_tokens),
                         "documents": len(texts),
                         "tokens": sum(len(self.encode(t)[:max_tokens]) for t in texts)}
        return self.heldout_

    # -- generation -------------------------------------------------------------------------
    def _check_watermark(self, key: Any) -> None:
        from detect.evidence.watermark.text import tokenizer_fingerprint

        model, tok = self._require()
        if key.vocab_size is not None and key.vocab_size != model.config.vocab_size:
            raise ConfigError(f"watermark key {key.name or key.fingerprint}: made for vocab_size "
                              f"{key.vocab_size}, {self.name} has {model.config.vocab_size}")
        if key.tokenizer_sha256 and key.tokenizer_sha256 != tokenizer_fingerprint(tok):
            raise ConfigError(f"watermark key {key.name or key.fingerprint}: made for another "
                              f"tokenizer than {self.name}'s; its marks would be undetectable")

    def _processors(self, s: Sampling, watermark: Any, gens: list[Any] | None) -> list[Any]:
        """transformers' own warpers and watermark processor, in the order ``generate`` applies
        them when it samples, then the per-sample draw (None: greedy)."""
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
            model = self._require()[0]
            procs.append(watermark.to_transformers().construct_processor(
                model.config.get_text_config().vocab_size, model.device))
        if gens is not None:
            procs.append(_DrawPerSample(gens))
        return procs

    def generate_batch_ids(self, prompts: Sequence[Sequence[int]], *, sampling: Any = None,
                           seed: int = 0, indices: Sequence[int] | None = None,
                           max_new_tokens: int = 64, min_new_tokens: int | None = None,
                           watermark: Any = None) -> list[list[int]]:
        """New token ids after each prompt (all of one length: no padding); prompt k is sample
        ``indices[k]`` and draws its tokens from its own stream ``sample_seed(seed, index)``.

        ``min_new_tokens`` defaults to ``max_new_tokens``: exactly that many tokens (the end
        token is suppressed), so a length bucket is filled. ``watermark``: a
        ``detect.evidence.watermark.text.TextWatermarkKey``, embedded by the processor its
        ``to_transformers()`` config builds (what ``generate(watermarking_config=...)`` uses).

        transformers' ``generate`` runs greedy decoding over a processor list that reproduces
        its sampling path (penalties, warpers, watermark) and ends in a draw from each sample's
        own torch.Generator: transformers' sampler draws one batch from the global RNG, which
        would tie a sample to its batch-mates.
        """
        import torch
        from transformers import LogitsProcessorList

        model, tok = self._require()
        s = sampling_config(sampling)
        rows = [[int(i) for i in p] or [self._start_id()] for p in prompts]
        if not rows:
            return []
        if len({len(r) for r in rows}) != 1:
            raise ConfigError("generate_batch_ids: prompts of one batch must have one length")
        idx = list(range(len(rows))) if indices is None else [int(i) for i in indices]
        if len(idx) != len(rows):
            raise ConfigError("generate_batch_ids: one index per prompt")
        n_prompt = len(rows[0])
        n_min = max_new_tokens if min_new_tokens is None else min_new_tokens
        if n_prompt + max_new_tokens > self.max_positions:
            raise ConfigError(f"{self.name}: prompt {n_prompt} + {max_new_tokens} new tokens "
                              f"exceed the model's {self.max_positions} positions")
        if watermark is not None:
            self._check_watermark(watermark)
        gens = ([torch.Generator().manual_seed(sample_seed(seed, i)) for i in idx]
                if s.kwargs["do_sample"] else None)
        procs = LogitsProcessorList(self._processors(s, watermark, gens))
        extra = {k: s.kwargs[k] for k in ("repetition_penalty", "no_repeat_ngram_size")
                 if k in s.kwargs}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        x = torch.tensor(rows)
        with _torch_threads(self.threads), torch.random.fork_rng(devices=[]), \
                torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                 num_beams=1, max_new_tokens=max_new_tokens,
                                 min_new_tokens=n_min, pad_token_id=pad,
                                 eos_token_id=tok.eos_token_id, logits_processor=procs, **extra)
        return [r[n_prompt:] for r in out.tolist()]

    def generate_ids(self, prompt_ids: Sequence[int], *, sampling: Any = None, seed: int = 0,
                     index: int = 0, max_new_tokens: int = 64, min_new_tokens: int | None = None,
                     watermark: Any = None) -> list[int]:
        """The new token ids of sample ``index`` after ``prompt_ids`` (generated alone)."""
        return self.generate_batch_ids([prompt_ids], sampling=sampling, seed=seed,
                                       indices=[index], max_new_tokens=max_new_tokens,
                                       min_new_tokens=min_new_tokens, watermark=watermark)[0]

    def provenance(self, index: int, seed: int, sampling: Sampling, *, watermark: Any = None,
                   **params: Any) -> Provenance:
        wm = None if watermark is None else {"scheme": watermark.scheme,
                                             "fingerprint": watermark.fingerprint}
        return Provenance(kind="synthetic", generator=self.name,
                          checkpoint_sha256=getattr(self, "checkpoint_sha256_", None),
                          seed=seed, index=index,
                          params={"family": self.family, "sampling": sampling.to_dict(),
                                  **({"watermark": wm} if wm else {}), **params},
                          watermark_key=None if watermark is None else watermark.fingerprint)

    def generate(self, prompts: Sequence[str | Sequence[int]], *, sampling: Any = None,
                 seed: int = 0, max_new_tokens: int = 64, min_new_tokens: int | None = None,
                 watermark: Any = None, indices: Sequence[int] | None = None,
                 batch_size: int = 1, progress: bool = False) -> list[Sample]:
        """One Sample per prompt: prompt + continuation as text, label 1, with provenance
        (generator, checkpoint sha256, seed, index, sampling name and kwargs, prompt and new
        token counts, watermark key fingerprint). Prompt k is sample ``indices[k]`` (default
        k) and draws from its own seeded stream.

        ``batch_size`` 1 (default) generates each prompt alone: a sample depends only on (seed,
        index) and its prompt. Larger batches (consecutive prompts of equal length) are faster
        and use the same streams, but batched float arithmetic may differ in the last bit and,
        rarely, flip a token; callers that batch must batch the same way every time (the corpus
        recipe uses fixed aligned blocks).
        """
        from tqdm.auto import tqdm

        s = sampling_config(sampling)
        idx = list(range(len(prompts))) if indices is None else [int(i) for i in indices]
        if len(idx) != len(prompts):
            raise ConfigError("generate: one index per prompt")
        pids = [self.encode(p) if isinstance(p, str) else [int(i) for i in p] for p in prompts]
        batches: list[list[int]] = []
        for k in range(len(pids)):
            if batches and len(batches[-1]) < max(1, batch_size) and \
                    len(pids[batches[-1][0]]) == len(pids[k]):
                batches[-1].append(k)
            else:
                batches.append([k])
        out: list[Sample | None] = [None] * len(pids)
        bar = tqdm(total=len(pids), desc=f"generate {self.name}", file=sys.stderr,
                   disable=not progress, leave=False)
        for b in batches:
            news = self.generate_batch_ids([pids[k] for k in b], sampling=s, seed=seed,
                                           indices=[idx[k] for k in b],
                                           max_new_tokens=max_new_tokens,
                                           min_new_tokens=min_new_tokens, watermark=watermark)
            for k, new in zip(b, news, strict=True):
                out[k] = Sample(self.decode(pids[k] + new), "text", 1, self.provenance(
                    idx[k], seed, s, watermark=watermark, prompt_tokens=len(pids[k]),
                    new_tokens=len(new)))
            bar.update(len(b))
        bar.close()
        return [o for o in out if o is not None]

    # -- persistence ------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
                "modality": self.modality, "params": self.get_params()}


def read_meta(directory: Path) -> dict[str, Any]:
    """A saved text generator's unmask.json, checked; errors name the folder."""
    return read_schema_file(directory / META_FILE, "saved text generator")


def load_text_generator(directory: str | Path) -> TextLM:
    """Load a saved text generator by the registry name in its unmask.json."""
    d = Path(directory)
    return load_registered(d, read_meta(d))


def _texts(documents: Sequence[Any]) -> list[str]:
    out = [d if isinstance(d, str) else d.text for d in documents]
    if not out or not any(t.strip() for t in out):
        raise ConfigError("no training text")
    return out


# ---------------------------------------------------------------------------------------------
# GPT-2 trained here


class CausalLM(TextLM):
    """A GPT-2 trained here from scratch on human documents (transformers ``GPT2LMHeadModel``).

    Training samples random ``block``-token windows from the documents joined by the end
    token, AdamW (weight decay 0.01) under a one-cycle learning-rate schedule peaking at ``lr``,
    gradients clipped at 1. ``tokenizer``: a tokenizer folder to use, or None to train a
    byte-level BPE of ``vocab_size`` on the training documents.
    """

    name = "gpt2"

    def __init__(self, *, n_layer: int = 4, n_embd: int = 128, n_head: int = 4,
                 n_positions: int = 512, vocab_size: int = 4096, steps: int = 2000,
                 batch_size: int = 16, block: int = 128, lr: float = 3e-3, seed: int = 0,
                 tokenizer: str | None = None, dropout: float = 0.1, checkpoint_every: int = 200,
                 threads: int | None = 1):
        self.n_layer, self.n_embd, self.n_head = n_layer, n_embd, n_head
        self.n_positions, self.vocab_size = n_positions, vocab_size
        self.steps, self.batch_size, self.block, self.lr = steps, batch_size, block, lr
        self.seed, self.tokenizer, self.dropout = seed, tokenizer, dropout
        self.checkpoint_every, self.threads = checkpoint_every, threads

    # -- model ------------------------------------------------------------------------------
    def _config(self, tok: Any) -> Any:
        from transformers import GPT2Config

        if self.n_embd % self.n_head:
            raise ConfigError(f"{self.name}: n_embd {self.n_embd} is not a multiple of n_head "
                              f"{self.n_head}")
        if self.block > self.n_positions:
            raise ConfigError(f"{self.name}: block {self.block} > n_positions {self.n_positions}")
        d = float(self.dropout)
        return GPT2Config(vocab_size=len(tok), n_positions=self.n_positions, n_embd=self.n_embd,
                          n_layer=self.n_layer, n_head=self.n_head, bos_token_id=tok.eos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
                          resid_pdrop=d, embd_pdrop=d, attn_pdrop=d)

    def _init_model(self, tok: Any) -> Any:
        import torch
        from transformers import GPT2LMHeadModel

        torch.manual_seed(self.seed)
        model = GPT2LMHeadModel(self._config(tok))
        model.generation_config.pad_token_id = tok.eos_token_id
        return model

    def n_params(self) -> int:
        """Parameters of the model (tied embedding counted once)."""
        return sum(p.numel() for p in self._require()[0].parameters())

    def prepare_tokenizer(self, documents: Sequence[Any], workdir: str | Path | None = None
                          ) -> Any:
        """The tokenizer ``fit`` will use: the ``tokenizer`` folder, or a byte-level BPE trained
        on ``documents`` and kept in ``workdir/tokenizer`` (re-used only when it was trained on
        the same texts with the same vocabulary size)."""
        if self.tokenizer:
            return load_tokenizer(self.tokenizer)
        texts = _texts(documents)
        h = hashlib.sha256()
        for t in texts:
            h.update(hashlib.sha256(t.encode("utf-8")).digest())
        made = {"vocab_size": self.vocab_size, "texts_sha256": h.hexdigest()}
        saved = Path(workdir) / "tokenizer" if workdir is not None else None
        if saved is not None and (saved / "tokenizer.json").exists():
            try:
                if json.loads((saved / "unmask-tokenizer.json").read_text()) == made:
                    return load_tokenizer(saved)  # the one an interrupted fit trained
            except (OSError, json.JSONDecodeError):
                pass
        tok = train_tokenizer(texts, self.vocab_size)
        if saved is not None:
            tok.save_pretrained(str(saved))
            (saved / "unmask-tokenizer.json").write_text(json.dumps(made) + "\n")
            tok = load_tokenizer(saved)
        return tok

    # -- training ---------------------------------------------------------------------------
    def fit(self, documents: Sequence[Any], workdir: str | Path | None = None,
            progress: bool = True, heldout: Sequence[Any] | None = None) -> CausalLM:
        """Train on ``documents`` (Documents or strings); resumes from
        ``workdir/train-state.safetensors``. ``heldout``: human texts whose perplexity is
        measured after training and saved with the model."""
        import torch
        from tqdm.auto import tqdm

        if self.steps != 0 and self.steps <= 10:
            raise ConfigError(f"{self.name}: steps must be 0 (untrained) or above 10 (the "
                              f"one-cycle schedule warms up over the first tenth), got "
                              f"{self.steps}")
        texts = _texts(documents)
        wd = Path(workdir) if workdir is not None else None
        tok = self.prepare_tokenizer(texts, wd)
        ids: list[int] = []
        for row in tok(texts, add_special_tokens=False)["input_ids"]:
            ids += row + [tok.eos_token_id]
        data = torch.tensor(ids, dtype=torch.long)
        if len(data) < self.block + 2:
            raise ConfigError(f"{self.name}: {len(data)} training tokens; need more than a block "
                              f"({self.block})")
        data_sha = hashlib.sha256(data.numpy().tobytes()).hexdigest()
        model = self._init_model(tok)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps,
                                                     pct_start=0.1) if self.steps > 0 else None)
        gen = torch.Generator().manual_seed(self.seed)
        state = wd / "train-state.safetensors" if wd is not None else None
        start, loss = 0, torch.tensor(float("nan"))
        if state is not None and state.exists():
            start, loss = self._resume(state, model, opt, gen, data_sha)
            with warnings.catch_warnings():  # the schedule is a pure function of the step
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(start if sched is not None else 0):
                    sched.step()
        bar = tqdm(total=self.steps, initial=start, desc=f"train {self.name}", file=sys.stderr,
                   unit="step", disable=not progress, leave=False)
        with _torch_threads(self.threads):
            model.train()
            for step in range(start, self.steps):
                ix = torch.randint(0, len(data) - self.block - 1, (self.batch_size,),
                                   generator=gen)
                x = torch.stack([data[i:i + self.block] for i in ix.tolist()])
                loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.2f}", refresh=False)
                done = step + 1
                if state is not None and (done % self.checkpoint_every == 0 or
                                          done == self.steps):
                    self._checkpoint(state, done, model, opt, gen, data_sha, loss)
        bar.close()
        model.eval()
        self.model_, self.tokenizer_ = model, tok
        sources = Counter(getattr(d, "source", "text") for d in documents)
        self.train_data_ = {"documents": len(texts), "tokens": len(ids), "sha256": data_sha,
                            "sources": dict(sorted(sources.items())),
                            "final_loss": float(loss.item()) if self.steps else None}
        self.checkpoint_sha256_ = None  # known once saved
        if heldout is not None:
            self.evaluate(heldout)
        return self

    def untrained(self) -> CausalLM:
        """The same architecture and tokenizer at initialisation: the 'learned nothing' anchor."""
        _, tok = self._require()
        other = type(self)(**{**self.get_params(), "steps": 0})
        other.name = self.name
        other.model_ = self._init_model(tok).eval()
        other.tokenizer_ = tok
        return other

    def _checkpoint(self, path: Path, step: int, model: Any, opt: Any, gen: Any,
                    data_sha: str, loss: Any = None) -> None:
        import torch
        from safetensors.torch import save_file

        t: dict[str, Any] = {f"mod.{k}": v for k, v in model.state_dict().items()}
        for pid, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                t[f"opt.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        t["step"] = torch.tensor([step])
        t["loss"] = torch.tensor([float("nan") if loss is None else float(loss.detach())])
        t["rng.torch"] = torch.get_rng_state()  # dropout
        t["rng.data"] = gen.get_state()  # batch windows
        # clone: the tied input/output embedding would otherwise be one shared tensor
        t = {k: v.detach().contiguous().clone() for k, v in t.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        save_file(t, str(tmp), metadata={"params": json.dumps(self.get_params()),
                                         "train_sha256": data_sha})  # ids: tokenizer included
        os.replace(tmp, path)

    def _resume(self, path: Path, model: Any, opt: Any, gen: Any, data_sha: str
                ) -> tuple[int, Any]:
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        params = json.loads(meta.get("params", "{}"))
        mine = self.get_params()
        fixed = [k for k in mine if k not in RESUMABLE_CHANGES]
        if {k: params.get(k) for k in fixed} != {k: mine[k] for k in fixed}:
            raise ConfigError(f"{path}: checkpoint was made with other parameters {params}; "
                              "delete it or use the same recipe")
        if meta.get("train_sha256") != data_sha:
            raise ConfigError(f"{path}: checkpoint was trained on other text; delete it or use "
                              "the same documents")
        t = load_file(str(path))
        model.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("mod.")})
        sd = opt.state_dict()
        st: dict[int, dict[str, Any]] = {}
        for k, v in t.items():
            if k.startswith("opt."):
                pid, key = k[4:].split(".", 1)
                st.setdefault(int(pid), {})[key] = v
        sd["state"] = st
        opt.load_state_dict(sd)
        torch.set_rng_state(t["rng.torch"])
        gen.set_state(t["rng.data"])
        return int(t["step"][0]), t["loss"][0]

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` of model and tokenizer, plus unmask.json (name, params, training
        data, sha256 of the weights, held-out perplexity)."""
        model, tok = self._require()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with _quiet():
            model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
        weights = d / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"{d}: save_pretrained wrote no model.safetensors")
        self.checkpoint_sha256_ = file_sha256(weights)
        meta = {**self._meta(), "n_params": self.n_params(),
                "train_data": getattr(self, "train_data_", None),
                "weights": weights.name, "weights_sha256": self.checkpoint_sha256_,
                "heldout_perplexity": getattr(self, "heldout_", None)}
        (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> CausalLM:
        from transformers import GPT2LMHeadModel

        d = Path(directory)
        meta = read_meta(d)
        obj = cls(**meta["params"])
        obj.name = meta.get("name", cls.name)
        weights = d / meta.get("weights", "model.safetensors")
        if not weights.is_file():
            raise ModelError(f"{d}: {weights.name} is missing")
        sha = file_sha256(weights)
        if meta.get("weights_sha256") and sha != meta["weights_sha256"]:
            raise ModelError(f"{weights}: sha256 differs from unmask.json's (file replaced?)")
        try:
            with _quiet():
                obj.model_ = GPT2LMHeadModel.from_pretrained(str(d)).eval()
        except Exception as e:  # noqa: BLE001 - transformers raises many error types
            raise ModelError(f"{d}: cannot load the model ({e.__class__.__name__}: {e})") from e
        obj.tokenizer_ = load_tokenizer(d)
        obj.checkpoint_sha256_ = sha
        obj.train_data_ = meta.get("train_data")
        obj.heldout_ = meta.get("heldout_perplexity")
        return obj


# ---------------------------------------------------------------------------------------------
# any transformers causal LM


class PretrainedCausalLM(TextLM):
    """Any transformers causal LM by hub id or local folder (``AutoModelForCausalLM``).

    Nothing is trained or copied: the provenance records the model reference and one sha256
    over its files. Remote code is never run (``trust_remote_code`` stays off).
    """

    name = "lm-pretrained"
    trainable = False

    def __init__(self, *, model: str, tokenizer: str | None = None, threads: int | None = 1):
        self.model, self.tokenizer, self.threads = model, tokenizer, threads

    def prepare_tokenizer(self, documents: Sequence[Any] = (), workdir: str | Path | None = None
                          ) -> Any:
        """The model's tokenizer (nothing is trained)."""
        return load_tokenizer(self.tokenizer or self.model)

    def _folder(self) -> Path:
        p = Path(self.model).expanduser()
        if p.is_dir():
            return p
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self.model, local_files_only=True))
        except Exception as e:  # noqa: BLE001 - hub errors vary by version
            raise ModelError(f"{self.model}: not a folder and not in the local hub cache "
                             f"({e.__class__.__name__})") from e

    def prepare(self) -> PretrainedCausalLM:
        from transformers import AutoModelForCausalLM

        from generators.image.pretrained import tree_sha256

        try:
            self.model_ = AutoModelForCausalLM.from_pretrained(self.model).eval()
        except Exception as e:  # noqa: BLE001 - transformers raises many error types
            raise ModelError(f"{self.model}: cannot load causal LM ({e.__class__.__name__}: "
                             f"{e})") from e
        self.tokenizer_ = load_tokenizer(self.tokenizer or self.model)
        self.checkpoint_sha256_ = tree_sha256(self._folder())
        return self

    def save(self, directory: str | Path) -> Path:
        """A reference (unmask.json), not a copy: model name and the sha256 of its files."""
        self._require()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {**self._meta(), "weights_sha256": self.checkpoint_sha256_,
                "heldout_perplexity": getattr(self, "heldout_", None)}
        (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PretrainedCausalLM:
        d = Path(directory)
        meta = read_meta(d)
        obj = cls(**meta["params"]).prepare()
        obj.name = meta.get("name", cls.name)
        obj.heldout_ = meta.get("heldout_perplexity")
        if meta.get("weights_sha256") and meta["weights_sha256"] != obj.checkpoint_sha256_:
            raise ModelError(f"{obj.model}: files changed since {d} was saved (sha256 "
                             f"{obj.checkpoint_sha256_[:12]} != {meta['weights_sha256'][:12]})")
        return obj


# ---------------------------------------------------------------------------------------------
# the quick LM of the text-watermark benchmark (benchmarks/text_watermark.py re-exports these)


def build_lm(out: str | Path, *, vocab_size: int = 1024, n_layer: int = 2, n_embd: int = 64,
             n_head: int = 2, n_positions: int = 512, steps: int = 300, block: int = 64,
             batch: int = 16, lr: float = 3e-3, seed: int = 0, threads: int = 1,
             progress: bool = False) -> Path:
    """Train tokenizer + GPT-2 (:class:`CausalLM`) on the pydoc training paragraphs of
    :func:`~generators.text.sources.split_paragraphs`; ``save_pretrained`` both to ``out``.

    Returns ``out``; load with ``from_pretrained(out)``. Deterministic for a seed. One thread by
    default: a model this small gains nothing from more, and loses badly when another process
    holds the other cores (OpenMP threads then spin against each other).
    """
    import time

    from .sources import split_paragraphs

    out = Path(out)
    t0 = time.perf_counter()
    train, _ = split_paragraphs()
    lm = CausalLM(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                  n_positions=n_positions, steps=steps, block=block, batch_size=batch, lr=lr,
                  seed=seed, threads=threads).fit(train, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet():
        lm.model_.save_pretrained(out)
    lm.tokenizer_.save_pretrained(out)
    (out / "train_info.json").write_text(json.dumps(
        {"train_tokens": lm.train_data_["tokens"], "steps": steps,
         "final_loss": lm.train_data_["final_loss"], "vocab_size": len(lm.tokenizer_),
         "n_layer": n_layer, "n_embd": n_embd, "seed": seed, "threads": threads,
         "train_seconds": time.perf_counter() - t0}) + "\n")
    return out


def generate_batched(model: Any, prompts: list[list[int]], n_new: int, *,
                     watermarking_config: Any, seed: int, batch_size: int = 32,
                     progress: bool = False, desc: str = "generate") -> list[list[int]]:
    """Sample exactly ``n_new`` tokens after each prompt (all prompts the same length, so no
    padding); returns only the generated ids, the part that carries the watermark.

    Pure sampling, batched with one seed per batch (``seed + first index``): fast, but a sample
    depends on its batch. Corpus builds use :meth:`TextLM.generate` (one seed per sample).
    """
    import torch
    from tqdm.auto import tqdm

    outs: list[list[int]] = []
    eos = model.generation_config.eos_token_id
    for b in tqdm(range(0, len(prompts), batch_size), desc=desc, file=sys.stderr,
                  disable=not progress, leave=False):
        chunk = torch.tensor(prompts[b:b + batch_size], dtype=torch.long)
        torch.manual_seed(seed + b)
        with torch.no_grad():
            gen = model.generate(input_ids=chunk, attention_mask=torch.ones_like(chunk),
                                 do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                 max_new_tokens=n_new, min_new_tokens=n_new,
                                 watermarking_config=watermarking_config, pad_token_id=eos)
        outs += gen[:, chunk.shape[1]:].tolist()
    return outs
