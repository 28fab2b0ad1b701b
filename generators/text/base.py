"""What trained and pretrained causal LMs share: encoding, perplexity, generation, provenance.

Generation follows the :class:`generators.base.Generator` contract: ``sample(indices, seed,
prompts=...)`` continues prompt k as sample ``indices[k]``, each under its own seed
``sample_seed(seed, index)`` in a forked torch RNG: sample *i* depends only on (seed, *i*) and
its prompt, never on what else is generated or in which batch, and a batch of prompts of
different lengths needs no padding (padding changes the numbers slightly). On CPU a tiny GPT-2
gains little from batching anyway. Same thread count, same machine type: same tokens (float
reductions may differ otherwise).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError
from detect.core.generator_io import (
    GENERATOR_SCHEMA,
    TEXT_META_FILE,
    load_registered,
    read_schema_file,
)
from detect.core.types import Provenance, Sample
from generators.base import Generator, sample_seed, torch_device

from .sampling import logits_processors, sampling_config, torch_threads

META_FILE = TEXT_META_FILE


class TextLM(Generator):
    """Generation, perplexity and provenance shared by trained and pretrained causal LMs."""

    family = "lm"
    modality = "text"
    name = "lm"
    trainable = True
    threads: int | None = 1
    device: str = "cpu"

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
        with torch_threads(self.threads), torch.inference_mode():
            for t in (x if isinstance(x, str) else x.text for x in texts):
                ids = self.encode(t)
                if max_tokens is not None:
                    ids = ids[:max_tokens]
                seq = [self._start_id(), *ids]
                for a in range(0, len(seq) - 1, window):
                    x = torch.tensor([seq[a:a + window]], device=model.device)
                    y = torch.tensor(seq[a + 1:a + window + 1], device=model.device)
                    logits = model(input_ids=x, attention_mask=torch.ones_like(x)
                                   ).logits[0, :len(y)].float()
                    nll += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                    n += len(y)
        if n == 0:
            raise ConfigError("perplexity needs at least one token of text")
        return math.exp(nll / n)

    def evaluate(self, heldout: Sequence[Any], max_tokens: int | None = None) -> dict[str, Any]:
        """Perplexity on held-out human texts, kept for ``save`` (``heldout_perplexity``)."""
        texts = texts_of(heldout)
        self.heldout_ = {"perplexity": self.perplexity(texts, max_tokens=max_tokens),
                         "documents": len(texts),
                         "tokens": sum(len(self.encode(t)[:max_tokens]) for t in texts)}
        return self.heldout_

    # -- generation -------------------------------------------------------------------------
    def _check_watermark(self, key: Any) -> None:
        from detect.evidence.watermark.text_keys import tokenizer_fingerprint

        model, tok = self._require()
        if key.vocab_size is not None and key.vocab_size != model.config.vocab_size:
            raise ConfigError(f"watermark key {key.name or key.fingerprint}: made for vocab_size "
                              f"{key.vocab_size}, {self.name} has {model.config.vocab_size}")
        if key.tokenizer_sha256 and key.tokenizer_sha256 != tokenizer_fingerprint(tok):
            raise ConfigError(f"watermark key {key.name or key.fingerprint}: made for another "
                              f"tokenizer than {self.name}'s; its marks would be undetectable")

    def generate_batch_ids(self, prompts: Sequence[Sequence[int]], *, sampling: Any = None,
                           seed: int = 0, indices: Sequence[int] | None = None,
                           max_new_tokens: int = 64, min_new_tokens: int | None = None,
                           watermark: Any = None) -> list[list[int]]:
        """New token ids after each prompt (all of one length: no padding); prompt k is sample
        ``indices[k]`` and draws its tokens from its own stream ``sample_seed(seed, index)``.

        ``min_new_tokens`` defaults to ``max_new_tokens``: exactly that many tokens (the end
        token is suppressed), so a length bucket is filled. ``watermark``: a
        ``detect.evidence.watermark.text_keys.TextWatermarkKey``, embedded by the processor its
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
        procs = LogitsProcessorList(logits_processors(s, model, watermark, gens))
        extra = {k: s.kwargs[k] for k in ("repetition_penalty", "no_repeat_ngram_size")
                 if k in s.kwargs}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        x = torch.tensor(rows, device=model.device)
        with torch_threads(self.threads), torch.random.fork_rng(devices=[]), \
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

    def provenance(self, index: int, seed: int, sampling: Any = None, *,
                   watermark: Any = None, **params: Any) -> Provenance:
        sampling = sampling_config(sampling)
        wm = None if watermark is None else {"scheme": watermark.scheme,
                                             "fingerprint": watermark.fingerprint}
        return Provenance(kind="synthetic", generator=self.name,
                          checkpoint_sha256=getattr(self, "checkpoint_sha256_", None),
                          seed=seed, index=index,
                          params={"family": self.family, "sampling": sampling.to_dict(),
                                  **({"watermark": wm} if wm else {}), **params},
                          watermark_key=None if watermark is None else watermark.fingerprint)

    def sample(self, indices: Sequence[int], seed: int, *,
               prompts: Sequence[str | Sequence[int]], sampling: Any = None,
               max_new_tokens: int = 64, min_new_tokens: int | None = None,
               watermark: Any = None, batch_size: int = 1, progress: bool = False
               ) -> list[Sample]:
        """One Sample per prompt: prompt + continuation as text, label 1, with provenance
        (generator, checkpoint sha256, seed, index, sampling name and kwargs, prompt and new
        token counts, watermark key fingerprint). Prompt k is sample ``indices[k]`` and draws
        from its own seeded stream.

        ``batch_size`` 1 (default) generates each prompt alone: a sample depends only on (seed,
        index) and its prompt. Larger batches (consecutive prompts of equal length) are faster
        and use the same streams, but batched float arithmetic may differ in the last bit and,
        rarely, flip a token; callers that batch must batch the same way every time (the corpus
        recipe uses fixed aligned blocks).
        """
        from tqdm.auto import tqdm

        s = sampling_config(sampling)
        idx = [int(i) for i in indices]
        if len(idx) != len(prompts):
            raise ConfigError("sample: one index per prompt")
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


def texts_of(documents: Sequence[Any]) -> list[str]:
    out = [d if isinstance(d, str) else d.text for d in documents]
    if not out or not any(t.strip() for t in out):
        raise ConfigError("no training text")
    return out


def model_device(lm: Any) -> Any:
    """The torch.device of ``lm.device`` (checked; refused when this machine lacks it)."""
    return torch_device(getattr(lm, "device", "cpu"), lm.name)
