"""Any transformers causal LM by hub id or local folder as a text generator: nothing trained,
nothing copied (``save`` writes a reference with the sha256 of the model's files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.errors import ModelError
from generators.base import check_device

from .base import META_FILE, TextLM, model_device, read_meta
from .tokenizer import load_tokenizer


class PretrainedCausalLM(TextLM):
    """Any transformers causal LM by hub id or local folder (``AutoModelForCausalLM``).

    Nothing is trained or copied: the provenance records the model reference and one sha256
    over its files. Remote code is never run (``trust_remote_code`` stays off).
    """

    name = "lm-pretrained"
    trainable = False

    def __init__(self, *, model: str, tokenizer: str | None = None, threads: int | None = 1,
                 device: str = "cpu"):
        self.model, self.tokenizer, self.threads = model, tokenizer, threads
        self.device = check_device(device, self.name)

    def fit(self, data: Any = None, workdir: str | Path | None = None,
            **kwargs: Any) -> PretrainedCausalLM:
        """Nothing to learn: loads the model (:meth:`prepare`)."""
        return self.prepare()

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

        dev = model_device(self)
        try:
            self.model_ = AutoModelForCausalLM.from_pretrained(self.model).to(dev).eval()
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

