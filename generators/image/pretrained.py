"""Any diffusers pipeline, by hub id or local folder, as a corpus generator.

Nothing is trained: the pipeline is loaded with ``DiffusionPipeline.from_pretrained`` (extra
loading options such as ``add_watermarker`` pass through unchanged, so a pipeline's own invisible
watermark stays as the user sets it: SDXL embeds one by default). Prompts come from a text file,
one per line; sample i uses prompt i mod n and its own seeded generator, so it is reproducible
alone. The provenance records the model, the sha256 of its files, the prompt, and whether the
pipeline carries a watermarker.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.types import Provenance
from generators.base import check_device, torch_device

from .base import GENERATOR_SCHEMA, ImageGenerator, file_sha256, read_config, sample_seed


def tree_sha256(root: Path) -> str:
    """One digest for a model folder: sha256 over (relative path, file sha256), sorted."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            h.update(f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def read_prompts(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read prompts ({e})") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"{p}: no prompts (one per line; # starts a comment)")
    return prompts


class PretrainedPipeline(ImageGenerator):
    name = "pretrained"
    trainable = False
    per_sample = True  # one pipeline call per sample: no aligned block needed

    def __init__(self, *, model: str, prompts: str | None = None,
                 negative_prompt: str | None = None, size: int | None = None,
                 sample_steps: int = 25,
                 guidance_scale: float | None = None, batch_size: int = 4,
                 family: str = "diffusion", pipeline_kwargs: dict[str, Any] | None = None,
                 seed: int = 0, device: str = "cpu"):
        self.model, self.prompts, self.negative_prompt = model, prompts, negative_prompt
        self.size, self.sample_steps, self.guidance_scale = size, sample_steps, guidance_scale
        self.batch_size, self.family = batch_size, family
        self.pipeline_kwargs, self.seed = pipeline_kwargs, seed
        self.device = check_device(device, self.name)

    def fit(self, data: Any = None, workdir: str | Path | None = None,
            progress: bool = True) -> PretrainedPipeline:
        """Nothing to learn: loads the pipeline (:meth:`prepare`)."""
        return self.prepare()

    # -- loading -----------------------------------------------------------------------------
    def prepare(self) -> PretrainedPipeline:
        """Load the pipeline (from the hub cache or a folder) and fingerprint its files."""
        import inspect

        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(self.model, **(self.pipeline_kwargs or {}))
        except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad model
            raise ModelError(f"cannot load diffusers pipeline {self.model!r}: {e}") from None
        pipe.set_progress_bar_config(disable=True)
        if self.device != "cpu":
            pipe.to(torch_device(self.device, self.name))
        self.pipe_ = pipe
        self.call_params_ = set(inspect.signature(pipe.__call__).parameters)
        local = Path(self.model)
        if not local.is_dir():
            try:
                from huggingface_hub import snapshot_download

                local = Path(snapshot_download(self.model, local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache under that id
                local = None  # type: ignore[assignment]
        self.checkpoint_sha256_ = tree_sha256(local) if local else None
        self.pipeline_class_ = type(pipe).__name__
        self.watermarker_ = any(getattr(pipe, a, None) is not None
                                for a in ("watermark", "watermarker"))
        self.prompt_list_ = read_prompts(self.prompts) if self.prompts else None
        if "prompt" in self.call_params_ and not self.prompt_list_:
            raise ConfigError(f"{self.model}: {self.pipeline_class_} takes prompts; give a "
                              "prompts file (one prompt per line)")
        return self

    def _prompt(self, i: int) -> str | None:
        return self.prompt_list_[i % len(self.prompt_list_)] if self.prompt_list_ else None

    def sampling_params(self) -> dict[str, Any]:
        return {"model": self.model, "pipeline": getattr(self, "pipeline_class_", None),
                "sample_steps": self.sample_steps, "guidance_scale": self.guidance_scale,
                "watermarker": getattr(self, "watermarker_", None), "size": self.size}

    def provenance(self, index: int, seed: int) -> Provenance:
        prov = super().provenance(index, seed)
        if self.prompt_list_:
            prov.params["prompt"] = self._prompt(index)
        return prov

    def sample_batch_size(self) -> int:
        return self.batch_size

    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        import torch

        if not hasattr(self, "pipe_"):
            self.prepare()
        kw: dict[str, Any] = {"num_inference_steps": self.sample_steps, "output_type": "np"}
        gens = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]
        kw["generator"] = gens
        if "prompt" in self.call_params_:
            kw["prompt"] = [self._prompt(i) for i in indices]
            if self.negative_prompt and "negative_prompt" in self.call_params_:
                kw["negative_prompt"] = [self.negative_prompt] * len(indices)
        elif "batch_size" in self.call_params_:
            kw["batch_size"] = len(indices)
        if self.size and "height" in self.call_params_:
            kw["height"] = kw["width"] = self.size
        if self.guidance_scale is not None and "guidance_scale" in self.call_params_:
            kw["guidance_scale"] = self.guidance_scale
        # one call per sample: batched pipelines share latents' shapes but not always their
        # numerics, and per-sample determinism matters more here than speed
        out = []
        for j in range(len(indices)):
            one = {k: (v[j:j + 1] if isinstance(v, list) else v) for k, v in kw.items()}
            if "batch_size" in one:
                one["batch_size"] = 1
            img = np.asarray(self.pipe_(**one).images[0])
            out.append(self._to_uint8(img))
        return np.stack(out)

    def _to_uint8(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[..., :3]
        if self.size:
            h, w = img.shape[:2]
            if h < self.size or w < self.size:
                raise ConfigError(f"{self.model} makes {w}x{h} images, smaller than size "
                                  f"{self.size}; lower the recipe's size")
            y, x = (h - self.size) // 2, (w - self.size) // 2  # centre crop, never resample
            img = img[y:y + self.size, x:x + self.size]
        return np.ascontiguousarray(img)

    # -- persistence: a reference to the pipeline, never a copy of its weights ------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
               "params": self.get_params(), "checkpoint_sha256": self.checkpoint_sha256_,
               "pipeline": self.pipeline_class_, "watermarker": self.watermarker_}
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PretrainedPipeline:
        cfg = read_config(Path(directory))
        obj = cls(**cfg["params"]).prepare()
        if cfg.get("checkpoint_sha256") and obj.checkpoint_sha256_ != cfg["checkpoint_sha256"]:
            print(f"unmask: warning: {obj.model} changed since {directory} was written "
                  "(its files hash differently)", file=sys.stderr)
        return obj
