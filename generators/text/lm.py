"""A GPT-2 trained here from scratch as a text generator (transformers ``GPT2LMHeadModel``).

- ``fit`` trains a byte-level BPE (:mod:`generators.text.tokenizer`) unless given one, then the
  model; it is resumable through :mod:`generators.checkpoint`: model, optimizer, step and both
  random streams (batch sampling and dropout) are checkpointed as safetensors, so an
  interrupted fit continued later ends with the weights of an unbroken one (on the CPU; on a GPU
  dropout draws from the device's own RNG, which is not saved).
- ``save`` is ``save_pretrained`` of model and tokenizer plus ``unmask.json``.
- Generation and scoring: :class:`generators.text.base.TextLM`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError
from generators import checkpoint
from generators.base import check_device
from generators.image.base import file_sha256

from .base import META_FILE, TextLM, load_text_generator, model_device, read_meta, texts_of
from .sampling import quiet, torch_threads
from .tokenizer import load_tokenizer, train_tokenizer

__all__ = ["CausalLM", "META_FILE", "load_text_generator", "read_meta"]

# hyperparameters that may differ between an interrupted fit and its continuation (the
# tokenizer is compared by its vocabulary, not by the folder it was read from)
RESUMABLE_CHANGES = ("checkpoint_every", "tokenizer")


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
                 threads: int | None = 1, device: str = "cpu"):
        self.n_layer, self.n_embd, self.n_head = n_layer, n_embd, n_head
        self.n_positions, self.vocab_size = n_positions, vocab_size
        self.steps, self.batch_size, self.block, self.lr = steps, batch_size, block, lr
        self.seed, self.tokenizer, self.dropout = seed, tokenizer, dropout
        self.checkpoint_every, self.threads = checkpoint_every, threads
        self.device = check_device(device, self.name)

    # -- model ------------------------------------------------------------------------------
    def _gpt2_config(self, tok: Any) -> Any:
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
        model = GPT2LMHeadModel(self._gpt2_config(tok)).to(model_device(self))
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
        texts = texts_of(documents)
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
        texts = texts_of(documents)
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
        state = wd / checkpoint.FILE if wd is not None else None
        start, loss = 0, torch.tensor(float("nan"))
        if state is not None and state.exists():
            start, saved = checkpoint.load(
                state, modules={"": model}, optimizers={"": opt}, params=self.get_params(),
                resumable=RESUMABLE_CHANGES, rngs={"data": gen},
                expect={"train_sha256": (data_sha, "trained on other text; delete it or use "
                                         "the same documents")})
            loss = saved["loss"][0]
            with warnings.catch_warnings():  # the schedule is a pure function of the step
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(start if sched is not None else 0):
                    sched.step()
        bar = tqdm(total=self.steps, initial=start, desc=f"train {self.name}", file=sys.stderr,
                   unit="step", disable=not progress, leave=False)
        with torch_threads(self.threads):
            model.train()
            for step in range(start, self.steps):
                ix = torch.randint(0, len(data) - self.block - 1, (self.batch_size,),
                                   generator=gen)
                x = torch.stack([data[i:i + self.block] for i in ix.tolist()]).to(model.device)
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
                    checkpoint.save(state, done, modules={"": model}, optimizers={"": opt},
                                    params=self.get_params(), rngs={"data": gen},
                                    tensors={"loss": torch.tensor([float(loss.detach())])},
                                    metadata={"train_sha256": data_sha})  # ids: tokenizer too
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
    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` of model and tokenizer, plus unmask.json (name, params, training
        data, sha256 of the weights, held-out perplexity)."""
        model, tok = self._require()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with quiet():
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
            with quiet():
                obj.model_ = GPT2LMHeadModel.from_pretrained(str(d)).to(model_device(obj)).eval()
        except Exception as e:  # noqa: BLE001 - transformers raises many error types
            raise ModelError(f"{d}: cannot load the model ({e.__class__.__name__}: {e})") from e
        obj.tokenizer_ = load_tokenizer(d)
        obj.checkpoint_sha256_ = sha
        obj.train_data_ = meta.get("train_data")
        obj.heldout_ = meta.get("heldout_perplexity")
        return obj

