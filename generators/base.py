"""The one contract every generator follows (image models, causal LMs, face forgeries).

- ``fit(data, workdir=None, ...)`` trains and returns ``self``; generators that learn nothing
  (pretrained references, self-blending) only get ready there. A trainable generator resumes
  from ``workdir/train-state.safetensors`` (:mod:`generators.checkpoint`).
- ``sample(indices, seed, ...)`` returns one :class:`~detect.core.types.Sample` per index, in
  the order asked. Sample *i* depends only on (``seed``, *i*) and its inputs, never on the other
  indices asked with it, so a resumed build makes exactly what an unbroken one made.
- ``provenance(index, seed)``: what each Sample records (generator, checkpoint sha256, seed,
  index, family and sampling parameters).
- ``save(dir)`` writes a description (``config.json``, or ``unmask.json`` for text models,
  schema ``unmask.generator/1``) and safetensors weights; ``load(dir)`` reads it back, and
  :func:`load_generator` finds the class by the registry name the description records.
- Torch generators take ``device`` ("cpu" by default, kept in ``get_params``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError
from detect.core.generator_io import GENERATOR_SCHEMA, load_generator  # noqa: F401 - re-exported
from detect.core.params import HasParams
from detect.core.types import Provenance, Sample

_DEVICE = re.compile(r"(cpu|mps|meta|(cuda|xpu)(:\d+)?)")


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index``: independent streams for every (seed, index)."""
    d = hashlib.sha256(f"unmask-sample:{seed}:{index}".encode()).digest()
    return int.from_bytes(d[:8], "big") >> 1


def check_device(device: Any, who: str = "generator") -> str:
    """``device`` as given when it names a torch device ("cpu", "cuda", "cuda:1", "mps", ...);
    anything else is a ConfigError (checked without importing torch)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"{who}: device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu[:N]', "
                          f"got {device!r}")
    return device


def torch_device(device: str, who: str = "generator") -> Any:
    """The torch.device of a checked ``device`` string, refused when this machine lacks it."""
    import torch

    dev = torch.device(check_device(device, who))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{who}: device {device!r} asked for, but torch sees no CUDA device")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{who}: device {device!r} asked for, but MPS is not available")
    return dev


class Generator(HasParams):
    """Base class of every registered generator (see the module docstring for the contract)."""

    name = "generator"
    family = "generator"
    modality = "image"
    trainable = True

    def fit(self, data: Any, workdir: str | Path | None = None, **kwargs: Any) -> Generator:
        """Train on ``data``; the base class learns nothing (pretrained, rule-based ones)."""
        return self

    def sample(self, indices: Sequence[int], seed: int, **inputs: Any) -> list[Sample]:
        raise NotImplementedError

    def sampling_params(self) -> dict[str, Any]:
        return {}

    def provenance(self, index: int, seed: int) -> Provenance:
        return Provenance(kind="synthetic", generator=self.name,
                          checkpoint_sha256=getattr(self, "checkpoint_sha256_", None),
                          seed=seed, index=index,
                          params={"family": self.family, **self.sampling_params()})

    def _config(self) -> dict[str, Any]:
        return {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
                "params": self.get_params()}

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        raise NotImplementedError
