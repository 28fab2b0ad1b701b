"""Face forgeries as registered generators (``sbi``, ``face-swap``): the
:class:`generators.base.Generator` contract over real face crops.

They learn nothing (``fit`` is a no-op) and draw from nothing but the crops they are given:
``sample(indices, seed, faces=[FaceInput, ...])`` forges ``faces[k]`` as sample
``indices[k]`` with its own stream ``sample_seed(seed, index)``. :meth:`FaceForgery.forge`
is the step underneath, on one input and a ``numpy.random.Generator``; the face recipe calls
it with the stream it also draws the crop's jitter (and the swap's source) from, so its corpora
keep their bytes. The image work is :mod:`generators.faces.forgery`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.generator_io import read_config
from detect.core.types import Provenance, Sample
from generators.base import Generator, sample_seed

from .forgery import SWAP_METHODS, face_swap, self_blend


@dataclass(frozen=True)
class FaceInput:
    """A face crop (H, W, 3 uint8 RGB) and its five landmarks in crop pixels (or None), plus,
    for a swap, the source face pasted onto it."""

    face: np.ndarray
    landmarks: np.ndarray | None = None
    source: np.ndarray | None = None
    source_landmarks: np.ndarray | None = None


class FaceForgery(Generator):
    """What both methods share: no training, provenance, a config-only save."""

    family = "face-forgery"
    modality = "image"
    trainable = False
    needs_faces = True  # made from given crops, not from noise: image recipes cannot use it
    method = "forgery"

    @property
    def generator_name(self) -> str:
        """The provenance name face corpora have always recorded ("face-sbi", "face-swap")."""
        return f"face-{self.method}"

    def forge(self, item: FaceInput, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def provenance(self, index: int, seed: int, info: dict[str, Any] | None = None,
                   **params: Any) -> Provenance:
        """``params`` (the recipe's target, source, crop) then the forgery's ``info``."""
        extra = {} if info is None else {"forgery": info}
        return Provenance(kind="synthetic", generator=self.generator_name, seed=seed,
                          index=index, params={**params, **extra})

    def sample(self, indices: Sequence[int], seed: int, *,
               faces: Sequence[FaceInput]) -> list[Sample]:
        idx = [int(i) for i in indices]
        if len(idx) != len(faces):
            raise ConfigError(f"{self.name}: sample needs one face per index")
        out = []
        for i, item in zip(idx, faces, strict=True):
            img, info = self.forge(item, np.random.default_rng(sample_seed(seed, i)))
            out.append(Sample(img, "image", 1, self.provenance(
                i, seed, info, method=self.method)))
        return out

    def save(self, directory: str | Path) -> Path:
        """config.json only: a rule-based method has no weights."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self._config(), indent=2) + "\n",
                                       encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> FaceForgery:
        cfg = read_config(Path(directory))
        obj = cls(**cfg["params"])
        obj.name = cfg.get("name", cls.name)
        return obj


class SelfBlend(FaceForgery):
    """Self-blended images (SBI, Shiohara & Yamasaki 2022): a face blended with a colour-,
    filter- and warp-altered copy of itself (:func:`~generators.faces.forgery.self_blend`)."""

    name = "sbi"
    method = "sbi"

    def __init__(self) -> None:
        pass

    def forge(self, item: FaceInput, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return self_blend(item.face, item.landmarks, rng)


class FaceSwap(FaceForgery):
    """Classic face swap: another face aligned on the landmarks, colour-matched and cloned in
    (:func:`~generators.faces.forgery.face_swap`); ``blend`` is auto, seamless or alpha."""

    name = "face-swap"
    method = "swap"

    def __init__(self, *, blend: str = "auto"):
        if blend not in SWAP_METHODS:
            raise ConfigError(f"face-swap: blend must be one of {', '.join(SWAP_METHODS)}, got "
                              f"{blend!r}")
        self.blend = blend

    def forge(self, item: FaceInput, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if item.source is None:
            raise ConfigError("face-swap: every input needs a source face")
        return face_swap(item.face, item.landmarks, item.source, item.source_landmarks, rng,
                         method=self.blend)
