"""What every image generator shares, so each family module holds only its own model.

- ``sample_array(indices, seed)``: sample i depends only on (seed, i), never on the batch it
  is drawn in, so a resumed corpus build reproduces exactly the samples it skipped.
- ``generate`` / ``generate_indices`` stamp each Sample with provenance (generator name,
  checkpoint sha256, seed, index, family).
- Trainable generators (``TorchImageGenerator``) share one resumable training loop: every
  module and optimizer state is checkpointed as safetensors, batches and noise come from
  per-step seeds, so an interrupted run continued later ends bit-identical to an unbroken one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.generator_io import GENERATOR_SCHEMA, load_generator, read_config  # noqa: F401 - re-exported
from detect.core.hashing import file_sha256  # noqa: F401 - generators import it from here
from detect.core.params import HasParams
from detect.core.types import Provenance, Sample

# hyperparameters that may differ between an interrupted run and its continuation
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index``: independent streams for every (seed, index)."""
    d = hashlib.sha256(f"unmask-sample:{seed}:{index}".encode()).digest()
    return int.from_bytes(d[:8], "big") >> 1


def noise_for(indices: list[int], seed: int, shape: tuple[int, ...]):  # noqa: ANN201
    """Standard normal noise of ``shape`` per sample, each from its own seeded stream."""
    import torch

    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(
        sample_seed(seed, i))) for i in indices])


def to_uint8(x) -> np.ndarray:  # noqa: ANN001
    """(N, 3, H, W) tensor in [-1, 1] -> (N, H, W, 3) uint8."""
    import torch

    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


class ImageGenerator(HasParams):
    """Base class: parameters, provenance, persistence."""

    family = "image"
    modality = "image"
    name = "generator"
    trainable = True

    # -- sampling ----------------------------------------------------------------------------
    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        raise NotImplementedError

    def sample_batch_size(self) -> int:
        return 256

    def provenance(self, index: int, seed: int) -> Provenance:
        return Provenance(kind="synthetic", generator=self.name,
                          checkpoint_sha256=getattr(self, "checkpoint_sha256_", None),
                          seed=seed, index=index,
                          params={"family": self.family, **self.sampling_params()})

    def sampling_params(self) -> dict[str, Any]:
        return {"size": getattr(self, "size", None)}

    def generate(self, n: int, seed: int, start: int = 0) -> Iterator[tuple[int, Sample]]:
        """Samples ``start .. start+n-1``; each is (index, Sample) and stamped with provenance."""
        return self.generate_indices(range(start, start + n), seed, total=start + n)

    def generate_indices(self, indices: Iterable[int], seed: int,
                         total: int | None = None) -> Iterator[tuple[int, Sample]]:
        """Samples for ``indices``, always computed in the same aligned blocks.

        Batch size can move a sample's pixels by a rounding step, so every index is sampled in
        the block ``[k*B, min((k+1)*B, total))`` whatever was asked: a resumed build then makes
        exactly the bytes an unbroken one made.
        """
        wanted = sorted(set(indices))
        batch = self.sample_batch_size()
        end = total if total is not None else (max(wanted) + 1 if wanted else 0)
        blocks: dict[int, list[int]] = {}
        for i in wanted:
            blocks.setdefault(i // batch, []).append(i)
        for k, want in sorted(blocks.items()):
            block = list(range(k * batch, min((k + 1) * batch, max(end, want[-1] + 1))))
            arrs = self.sample_array(block, seed)
            keep = set(want)
            for i, arr in zip(block, arrs, strict=True):
                if i in keep:
                    yield i, Sample(np.ascontiguousarray(arr), "image", 1,
                                    self.provenance(i, seed))

    # -- persistence -------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
                "params": self.get_params()}

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
    def fit(self, images: np.ndarray, workdir: str | Path | None = None,
            progress: bool = True) -> TorchImageGenerator:
        """Train on (N, size, size, 3) uint8 images; resumes from ``workdir/train-state``."""
        import torch
        from tqdm.auto import tqdm

        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ConfigError(f"{self.name}: training images must be (N,{self.size},{self.size},3),"
                              f" got {images.shape}")
        torch.manual_seed(self.seed)
        mods = self._build()
        opts = self._optimizers(mods)
        start = 0
        state_path = Path(workdir) / "train-state.safetensors" if workdir else None
        if state_path and state_path.exists():
            start = self._resume(state_path, mods, opts)
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
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
            losses = self._train_step(mods, opts, real, gen)
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
            done = step + 1
            if state_path and (done % self.checkpoint_every == 0 or done == self.steps):
                self._checkpoint(state_path, done, mods, opts)
        bar.close()
        for m in mods.values():
            m.eval()
        self.modules_ = mods
        return self

    def untrained(self) -> TorchImageGenerator:
        """The same architecture at initialisation: the 'learned nothing' anchor for quality."""
        import torch

        other = type(self)(**{**self.get_params(), "steps": 0})
        other.name = self.name
        torch.manual_seed(self.seed)
        other.modules_ = other._build()
        for m in other.modules_.values():
            m.eval()
        return other

    def _checkpoint(self, path: Path, step: int, mods: dict[str, Any],
                    opts: dict[str, Any]) -> None:
        import torch
        from safetensors.torch import save_file

        t: dict[str, Any] = {}
        for name, m in mods.items():
            t.update({f"mod.{name}.{k}": v for k, v in m.state_dict().items()})
        for name, opt in opts.items():
            for pid, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    t[f"opt.{name}.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        t["step"] = torch.tensor([step])
        t = {k: v.detach().contiguous().clone() for k, v in t.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        save_file(t, str(tmp), metadata={"params": json.dumps(self.get_params())})
        os.replace(tmp, path)

    def _resume(self, path: Path, mods: dict[str, Any], opts: dict[str, Any]) -> int:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            params = json.loads((f.metadata() or {}).get("params", "{}"))
        mine = self.get_params()
        fixed = [k for k in mine if k not in RESUMABLE_CHANGES]
        if {k: params.get(k) for k in fixed} != {k: mine[k] for k in fixed}:
            raise ConfigError(f"{path}: checkpoint was made with other parameters {params}; "
                              "delete it or use the same recipe")
        t = load_file(str(path))
        for name, m in mods.items():
            pre = f"mod.{name}."
            m.load_state_dict({k[len(pre):]: v for k, v in t.items() if k.startswith(pre)})
        for name, opt in opts.items():
            pre = f"opt.{name}."
            sd = opt.state_dict()
            state: dict[int, dict[str, Any]] = {}
            for k, v in t.items():
                if k.startswith(pre):
                    pid, key = k[len(pre):].split(".", 1)
                    state.setdefault(int(pid), {})[key] = v
            sd["state"] = state
            opt.load_state_dict(sd)
        return int(t["step"][0])

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
        import torch
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = read_config(d)
        try:
            weights = load_file(str(d / "weights.safetensors"))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"{d}: unreadable generator weights ({e})") from None
        obj = cls(**cfg["params"])
        obj.name = cfg.get("name", cls.name)
        torch.manual_seed(obj.seed)
        mods = obj._build()
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
