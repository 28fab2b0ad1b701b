"""The quick LM of the text-watermark benchmark: train one and sample from it in batches.

Benchmark helpers, not library code (``benchmarks/text_watermark.py`` and the test fixtures
import them): corpus builds use :meth:`generators.text.base.TextLM.sample` instead, one seed per
sample.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from generators.text.lm import CausalLM
from generators.text.sampling import quiet
from generators.text.sources import split_paragraphs


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

    out = Path(out)
    t0 = time.perf_counter()
    train, _ = split_paragraphs()
    lm = CausalLM(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                  n_positions=n_positions, steps=steps, block=block, batch_size=batch, lr=lr,
                  seed=seed, threads=threads).fit(train, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    with quiet():
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
    depends on its batch. Corpus builds use :meth:`TextLM.sample` (one seed per sample).
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
