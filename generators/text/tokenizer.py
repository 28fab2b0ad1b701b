"""Byte-level BPE tokenizers (GPT-2 style) trained with the ``tokenizers`` library and wrapped
as transformers fast tokenizers (``save_pretrained`` / ``from_pretrained``); deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detect.core.errors import ModelError

EOS = "<|endoftext|>"


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

