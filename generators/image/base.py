"""What every image generator shares, so each family module holds only its own model.

- ``sample(indices, seed, total=None)`` (the :class:`generators.base.Generator` contract): one
  Sample per index, stamped with provenance (generator name, checkpoint sha256, seed, index,
  family). Sample i depends only on (seed, i): it is always computed in the same aligned block
  of ``sample_batch_size()`` indices, so a resumed corpus build reproduces exactly the samples
  it skipped. ``sample_array(indices, seed)`` is the raw (N, H, W, 3) uint8 batch underneath.
- Trainable generators (``TorchImageGenerator``) share one resumable training loop: every
  module and optimizer state is checkpointed as safetensors (:mod:`generators.checkpoint`),
  batches and noise come from per-step seeds, so an interrupted run continued later ends
  bit-identical to an unbroken one. They run on ``device`` ("cpu" by default).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.generator_io import GENERATOR_SCHEMA, load_generator, read_config  # noqa: F401 - re-exported
from detect.core.hashing import file_sha256  # noqa: F401 - generators import it from here
from detect.core.types import Sample
from generators import checkpoint
from generators.base import Generator, sample_seed, torch_device

# hyperparameters that may differ between an interrupted run and its continuation
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def noise_for(indices: list[int], seed: int, shape: tuple[int, ...], device: Any = "cpu"):  # noqa: ANN201
    """Standard normal noise of ``shape`` per sample, each from its own seeded stream (drawn on
    the CPU, so a sample's noise is the same on every device)."""
    import torch

    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(
        sample_seed(seed, i))) for i in indices]).to(device)


def to_uint8(x) -> np.ndarray:  # noqa: ANN001
    """(N, 3, H, W) tensor in [-1, 1] -> (N, H, W, 3) uint8."""
    import torch

    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class ImageGenerator(Generator):
    """Base class: parameters, provenance, aligned-block sampling."""

    family = "image"
    modality = "image"
    name = "generator"
    trainable = True
    #: True when sample_array computes each sample alone (no block needed for determinism)
    per_sample = False

    # -- sampling ----------------------------------------------------------------------------
    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        raise NotImplementedError

    def sample_batch_size(self) -> int:
        return 256

    def sampling_params(self) -> dict[str, Any]:
        return {"size": getattr(self, "size", None)}

    def sample(self, indices: Sequence[int], seed: int, total: int | None = None
               ) -> list[Sample]:
        """One Sample per index (in the order given), each computed in its aligned block.

        Batch size can move a sample's pixels by a rounding step, so index i is always sampled
        in the block ``[k*B, (k+1)*B)`` (``B = sample_batch_size()``, ``k = i // B``), cut at
        ``total`` when given: whatever else is asked, sample i comes out the same bytes. (A
        corpus build passes its item count as ``total``, so its last block is not padded.)
        """
        wanted = [int(i) for i in indices]
        if any(i < 0 for i in wanted) or (total is not None and wanted and
                                          max(wanted) >= total):
            raise ConfigError(f"{self.name}: sample indices must be in [0, total)")
        batch = self.sample_batch_size()
        blocks: dict[int, set[int]] = {}
        for i in wanted:
            blocks.setdefault(i // batch, set()).add(i)
        got: dict[int, np.ndarray] = {}
        for k, want in sorted(blocks.items()):
            if self.per_sample:
                block = sorted(want)
            else:
                stop = (k + 1) * batch if total is None else min((k + 1) * batch, total)
                block = list(range(k * batch, stop))
            for i, arr in zip(block, self.sample_array(block, seed), strict=True):
                if i in want:
                    got[i] = np.ascontiguousarray(arr)
        out, seen = [], set()
        for i in wanted:  # an index asked twice gets its own copy of the pixels
            out.append(Sample(got[i].copy() if i in seen else got[i], "image", 1,
                              self.provenance(i, seed)))
            seen.add(i)
        return out

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> ImageGenerator:
        raise NotImplementedError


class TorchImageGenerator(ImageGenerator):
    """A generator trained here with torch. Subclasses define the networks and one step.

    Hooks: ``_build() -> dict[str, Module]``, ``_optimizers(mods) -> dict[str, Optimizer]``,
    ``_train_step(mods, opts, real, gen) -> dict[str, float]``, ``_sample(mods, indices, seed)
    -> Tensor in [-1, 1]``, and ``inference_modules`` (what a saved model keeps).
    """

    inference_modules: tuple[str, ...] = ("G",)
    size: int
    steps: int
    batch_size: int
    seed: int
    checkpoint_every: int

    def _build(self) -> dict[str, Any]:
        raise NotImplementedError

    def _optimizers(self, mods: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _train_step(self, mods: dict[str, Any], opts: dict[str, Any], real: Any,
                    gen: Any) -> dict[str, float]:
        raise NotImplementedError

    def _sample(self, mods: dict[str, Any], indices: list[int], seed: int) -> Any:
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------
    def _built(self) -> dict[str, Any]:
        """``_build()`` under ``torch.manual_seed(seed)``, moved to ``device``."""
        import torch

        dev = torch_device(getattr(self, "device", "cpu"), self.name)
        torch.manual_seed(self.seed)
        return {k: m.to(dev) for k, m in self._build().items()}

    def fit(self, images: np.ndarray, workdir: str | Path | None = None,
            progress: bool = True) -> TorchImageGenerator:
        """Train on (N, size, size, 3) uint8 images; resumes from ``workdir/train-state``."""
        import torch
        from tqdm.auto import tqdm

        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ConfigError(f"{self.name}: training images must be (N,{self.size},{self.size},3),"
                              f" got {images.shape}")
        mods = self._built()
        opts = self._optimizers(mods)
        start = 0
        state_path = Path(workdir) / checkpoint.FILE if workdir else None
        if state_path and state_path.exists():
            start, _ = checkpoint.load(state_path, modules=mods, optimizers=opts,
                                       params=self.get_params(), resumable=RESUMABLE_CHANGES)
        dev = torch_device(self.device, self.name)
        data = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        n = len(data)
        bar = tqdm(total=self.steps, initial=start, desc=f"train {self.name}", file=sys.stderr,
                   unit="step", disable=not progress, leave=False)
        for m in mods.values():
            m.train()
        for step in range(start, self.steps):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            idx = torch.randint(0, n, (self.batch_size,), generator=gen)
            real = data[idx]
            flip = torch.rand(self.batch_size, generator=gen) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real).to(dev)
            losses = self._train_step(mods, opts, real, gen)
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
            done = step + 1
            if state_path and (done % self.checkpoint_every == 0 or done == self.steps):
                checkpoint.save(state_path, done, modules=mods, optimizers=opts,
                                params=self.get_params())
        bar.close()
        for m in mods.values():
            m.eval()
        self.modules_ = mods
        return self

    def untrained(self) -> TorchImageGenerator:
        """The same architecture at initialisation: the 'learned nothing' anchor for quality."""
        other = type(self)(**{**self.get_params(), "steps": 0})
        other.name = self.name
        other.modules_ = other._built()
        for m in other.modules_.values():
            m.eval()
        return other

    # -- sampling ----------------------------------------------------------------------------
    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        import torch

        if not hasattr(self, "modules_"):
            raise ModelError(f"{self.name} is not trained: call fit() or load a saved model")
        with torch.inference_mode():
            return to_uint8(self._sample(self.modules_, list(indices), seed))

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sd = {}
        for name in self.inference_modules:
            # a single saved module keeps bare keys (the layout DCGAN checkpoints always had)
            pre = "" if len(self.inference_modules) == 1 else f"{name}."
            sd.update({f"{pre}{k}": v.contiguous()
                       for k, v in self.modules_[name].state_dict().items()})
        save_file(sd, str(d / "weights.safetensors"))
        (d / "config.json").write_text(json.dumps(self._config(), indent=2) + "\n",
                                       encoding="utf-8")
        self.checkpoint_sha256_ = file_sha256(d / "weights.safetensors")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TorchImageGenerator:
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = read_config(d)
        try:
            weights = load_file(str(d / "weights.safetensors"))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"{d}: unreadable generator weights ({e})") from None
        obj = cls(**cfg["params"])
        obj.name = cfg.get("name", cls.name)
        mods = obj._built()
        for name in obj.inference_modules:
            pre = "" if len(obj.inference_modules) == 1 else f"{name}."
            try:
                mods[name].load_state_dict({k[len(pre):]: v for k, v in weights.items()
                                            if k.startswith(pre)})
            except RuntimeError as e:
                raise ModelError(f"{d}: weights do not fit {obj.name}: {e}") from None
        for m in mods.values():
            m.eval()
        obj.modules_ = mods
        obj.checkpoint_sha256_ = file_sha256(d / "weights.safetensors")
        return obj


def sample_in_blocks(gen: ImageGenerator, indices: Sequence[int], seed: int,
                     total: int) -> Iterator[tuple[int, Sample]]:
    """``gen.sample`` one aligned block at a time, as (index, Sample) in index order: what a
    corpus build writes as it goes (same samples as one call, a block in memory at a time)."""
    batch = gen.sample_batch_size()
    blocks: dict[int, list[int]] = {}
    for i in sorted(set(indices)):
        blocks.setdefault(i // batch, []).append(i)
    for _, want in sorted(blocks.items()):
        yield from zip(want, gen.sample(want, seed, total=total), strict=True)


def reconstructions(gen: Any, indices: Sequence[int], seed: int,
                    images: Sequence[np.ndarray] | Mapping[int, np.ndarray] | None
                    ) -> list[Sample]:
    """``gen.reconstruct(images[i])`` for each index (a list, or a mapping index -> image), as
    synthetic samples: what a generator that makes its fakes from real images returns from
    ``sample``; ``seed`` is recorded in the provenance."""
    if images is None:
        raise ConfigError(f"{gen.name} reconstructs images: pass images=[...]")
    out = []
    for i in indices:
        try:
            img = images[i]
        except (IndexError, KeyError):
            raise ConfigError(f"{gen.name}: no image given for index {i}") from None
        out.append(Sample(gen.reconstruct(img), "image", 1, gen.provenance(i, seed)))
    return out
