"""DCGAN (Radford et al. 2016): a generator of strided transposed convolutions, whose uneven
kernel overlap leaves the checkerboard traces that spectrum detectors look for.

Training is resumable (generator, discriminator and both Adam states are checkpointed as
safetensors), deterministic for a seed (per-step seeded noise and batches), and sampling is
deterministic per sample index: sample i depends only on (seed, i).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from detect.errors import ConfigError, ModelError
from detect.types import Provenance, Sample

GENERATOR_SCHEMA = "unmask.generator/1"


def _nets(size: int, nz: int, width: int):  # noqa: ANN202
    import torch.nn as nn

    n_up = int(math.log2(size // 4))
    if 4 * 2**n_up != size or size < 8:
        raise ConfigError(f"DCGAN size must be a power of two >= 8, got {size}")
    g: list[nn.Module] = []
    ch = width * 2 ** (n_up - 1)
    g += [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(n_up - 1):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2),
              nn.ReLU(True)]
        ch //= 2
    g += [nn.ConvTranspose2d(ch, 3, 4, 2, 1, bias=False), nn.Tanh()]
    d: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    ch = width
    for _ in range(n_up - 1):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
              nn.LeakyReLU(0.2, True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
    G, D = nn.Sequential(*g), nn.Sequential(*d)
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return G, D


def _opt_tensors(prefix: str, opt) -> dict[str, Any]:  # noqa: ANN001
    import torch

    out = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _load_opt(prefix: str, opt, tensors: dict[str, Any]) -> None:  # noqa: ANN001
    sd = opt.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DCGAN:
    family = "gan"
    modality = "image"
    name = "dcgan"

    def __init__(self, *, size: int = 32, nz: int = 64, width: int = 64, steps: int = 3000,
                 batch_size: int = 64, lr: float = 2e-4, checkpoint_every: int = 250,
                 seed: int = 0):
        self.size, self.nz, self.width = size, nz, width
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.checkpoint_every, self.seed = checkpoint_every, seed

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("size", "nz", "width", "steps", "batch_size", "lr",
                                              "checkpoint_every", "seed")}

    # -- training ----------------------------------------------------------------------------
    def fit(self, images: np.ndarray, workdir: str | Path | None = None,
            progress: bool = True) -> DCGAN:
        """Train on (N, size, size, 3) uint8 patches; resumes from ``workdir/train-state``."""
        import torch
        from tqdm.auto import tqdm

        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ConfigError(f"{self.name}: training images must be (N,{self.size},{self.size},3),"
                              f" got {images.shape}")
        torch.manual_seed(self.seed)
        G, D = _nets(self.size, self.nz, self.width)
        optG = torch.optim.Adam(G.parameters(), lr=self.lr, betas=(0.5, 0.999))
        optD = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.5, 0.999))
        start = 0
        state_path = Path(workdir) / "train-state.safetensors" if workdir else None
        if state_path and state_path.exists():
            start = self._resume(state_path, G, D, optG, optD)
        data = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        n = len(data)
        bar = tqdm(total=self.steps, initial=start, desc=f"train {self.name}", file=sys.stderr,
                   unit="step", disable=not progress, leave=False)
        G.train()
        D.train()
        for step in range(start, self.steps):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            idx = torch.randint(0, n, (self.batch_size,), generator=gen)
            real = data[idx]
            flip = torch.rand(self.batch_size, generator=gen) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
            z = torch.randn(self.batch_size, self.nz, 1, 1, generator=gen)
            fake = G(z)
            ones = torch.full((self.batch_size,), 0.9)  # one-sided label smoothing
            zeros = torch.zeros(self.batch_size)
            lossD = loss_fn(D(real).view(-1), ones) + loss_fn(D(fake.detach()).view(-1), zeros)
            optD.zero_grad(set_to_none=True)
            lossD.backward()
            optD.step()
            lossG = loss_fn(D(fake).view(-1), torch.ones(self.batch_size))
            optG.zero_grad(set_to_none=True)
            lossG.backward()
            optG.step()
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(D=f"{lossD.item():.2f}", G=f"{lossG.item():.2f}")
            done = step + 1
            if state_path and (done % self.checkpoint_every == 0 or done == self.steps):
                self._checkpoint(state_path, done, G, D, optG, optD)
        bar.close()
        G.eval()
        self.G_ = G
        self.steps_done_ = self.steps
        return self

    def _checkpoint(self, path: Path, step: int, G, D, optG, optD) -> None:  # noqa: ANN001
        import torch
        from safetensors.torch import save_file

        t = {f"G.{k}": v for k, v in G.state_dict().items()}
        t.update({f"D.{k}": v for k, v in D.state_dict().items()})
        t.update(_opt_tensors("optG", optG))
        t.update(_opt_tensors("optD", optD))
        t["step"] = torch.tensor([step])
        t = {k: v.detach().contiguous().clone() for k, v in t.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        save_file(t, str(tmp), metadata={"params": json.dumps(self.get_params())})
        os.replace(tmp, path)

    def _resume(self, path: Path, G, D, optG, optD) -> int:  # noqa: ANN001
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            params = json.loads((f.metadata() or {}).get("params", "{}"))
        same = ("size", "nz", "width", "batch_size", "lr", "seed")  # steps may grow: train longer
        if {k: params.get(k) for k in same} != {k: getattr(self, k) for k in same}:
            raise ConfigError(f"{path}: checkpoint was made with other parameters {params}; "
                              "delete it or use the same recipe")
        t = load_file(str(path))
        G.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("D.")})
        _load_opt("optG", optG, t)
        _load_opt("optD", optD, t)
        return int(t["step"][0])

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sd = {k: v.contiguous() for k, v in self.G_.state_dict().items()}
        save_file(sd, str(d / "weights.safetensors"))
        cfg = {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
               "params": self.get_params()}
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        self.checkpoint_sha256_ = file_sha256(d / "weights.safetensors")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> DCGAN:
        from safetensors.torch import load_file

        d = Path(directory)
        try:
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
            weights = load_file(str(d / "weights.safetensors"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{d}: not a saved generator ({e})") from None
        obj = cls(**cfg["params"])
        obj.name = cfg.get("name", cls.name)
        G, _ = _nets(obj.size, obj.nz, obj.width)
        G.load_state_dict(weights)
        G.eval()
        obj.G_ = G
        obj.checkpoint_sha256_ = file_sha256(d / "weights.safetensors")
        return obj

    # -- sampling ----------------------------------------------------------------------------
    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        """Images for the given sample indices; each depends only on (seed, index)."""
        import torch

        z = torch.stack([torch.randn(self.nz, 1, 1, generator=torch.Generator().manual_seed(
            (seed * 2_147_483_647 + i) % (2**63))) for i in indices])
        with torch.inference_mode():
            x = self.G_(z)
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()

    def generate(self, n: int, seed: int, start: int = 0) -> Iterator[tuple[int, Sample]]:
        """Samples ``start .. start+n-1``; each is (index, Sample) and stamped with provenance."""
        return self.generate_indices(range(start, start + n), seed)

    def generate_indices(self, indices: Iterable[int], seed: int,
                         batch: int = 256) -> Iterator[tuple[int, Sample]]:
        idx = list(indices)
        for b in range(0, len(idx), batch):
            chunk = idx[b:b + batch]
            for i, arr in zip(chunk, self.sample_array(chunk, seed), strict=True):
                prov = Provenance(kind="synthetic", generator=self.name,
                                  checkpoint_sha256=getattr(self, "checkpoint_sha256_", None),
                                  seed=seed, index=i,
                                  params={"family": self.family, "size": self.size})
                yield i, Sample(np.ascontiguousarray(arr), "image", 1, prov)
