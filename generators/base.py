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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.core.device import parse_device, torch_device  # noqa: F401 - used by generators
from detect.core.generator_io import GENERATOR_SCHEMA, load_generator  # noqa: F401 - re-exported
from detect.core.params import HasParams
from detect.core.types import Provenance, Sample


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index``: independent streams for every (seed, index)."""
    d = hashlib.sha256(f"unmask-sample:{seed}:{index}".encode()).digest()
    return int.from_bytes(d[:8], "big") >> 1


def check_device(device: Any, who: str = "generator") -> str:
    """``device`` as given when torch parses it as a device ("cpu", "cuda:1", "mps", ...); a
    ConfigError otherwise. Whether this machine has it is checked when the network is built
    (:func:`torch_device`), so a config for a GPU machine can be written on a laptop."""
    parse_device(device, who)
    return device


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
