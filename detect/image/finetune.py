"""The pretrained encoder fine-tuned end to end on native-resolution tiles.

The linear probe (``detect.image.foundation``) keeps the ImageNet features as they are; this
member lets the later stages adapt to the traces that tell a decoder's output from a camera
photo, while the stem and the first ``freeze_stages`` stages stay frozen (they keep their
ImageNet filters: the low-level statistics a few thousand tiles cannot re-learn, and half the
backward cost). Every batch-norm layer of the backbone keeps ImageNet's running statistics
(batches of a few dozen tiles would make them noisy); their scales and shifts do train.

The head reads every stage, as the probe does: the per-channel means of the stem, the seven
block stages and the head convolution, batch-normalised, into one linear unit. It starts from
zero weights, so the first steps train the head on the pretrained features (a probe) before the
backbone moves. The saved weights are the whole network (config.json + weights.safetensors),
with the sha256 of the pretrained weights it started from, in half precision (9 MB): the
model is rounded to it before calibration, so the threshold is the shipped weights' own.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from detect.core.detector import Tags
from detect.core.device import load_module, module_tensors, torch_device
from detect.core.errors import ConfigError, ModelError
from detect.core.types import Modality
from detect.image.foundation import (
    BACKBONES,
    SHARED_BLOCKS,
    backbone_weights,
    encoder,
    fold_batchnorm,
)
from detect.image.patch import PatchDetector

_NETS: dict[str, Any] = {}


def _module(name: str, n_stages: int) -> Any:
    """The backbone + head module (architecture only; weights are loaded by the caller)."""
    import torch
    from torch import nn

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError("efficientnet-lite-pytorch is not installed (scripts/setup.sh "
                         "installs it)") from None

    class TunedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = EfficientNet.from_name(name)
            repeats = [b.num_repeat for b in self.net._blocks_args]
            self.stage_ends = [int(e) for e in np.cumsum(repeats) - 1]
            widths = [self.net._bn0.num_features]
            widths += [self.net._blocks[e]._bn2.num_features for e in self.stage_ends]
            widths.append(self.net._bn1.num_features)
            self.norm = nn.BatchNorm1d(sum(widths))
            self.fc = nn.Linear(sum(widths), 1)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)
            self.n_frozen_blocks = 0 if n_stages <= 0 else self.stage_ends[n_stages - 1] + 1

        def features(self, x: torch.Tensor) -> torch.Tensor:
            net = self.net
            h = net._swish(net._bn0(net._conv_stem(x)))
            return self.features_from([h], h, 0)

        def features_from(self, maps: list[torch.Tensor], h: torch.Tensor, start: int
                          ) -> torch.Tensor:
            """The features given the stem's and completed stages' maps and the activation
            after the first ``start`` blocks (computed elsewhere: see _score_patches)."""
            net = self.net
            parts = [m.mean(dim=(2, 3)) for m in maps]
            ends = set(self.stage_ends)
            for i in range(start, len(net._blocks)):
                h = net._blocks[i](h)
                if i in ends:
                    parts.append(h.mean(dim=(2, 3)))
            parts.append(net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3)))
            return torch.cat(parts, dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.norm(self.features(x))).squeeze(1)

        def frozen(self) -> list[nn.Module]:
            net = self.net
            if self.n_frozen_blocks == 0:
                return []
            return [net._conv_stem, net._bn0, *net._blocks[:self.n_frozen_blocks]]

        def backbone_to_eval(self) -> None:
            """Batch-norm layers of the backbone keep their running statistics."""
            for m in self.net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()

    return TunedNet()


def _augment(patch: np.ndarray, rng: np.random.Generator, blur_prob: float,
             jpeg_prob: float) -> np.ndarray:
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < blur_prob:
        from detect.attacks import blur

        patch = blur(np.ascontiguousarray(patch), float(rng.uniform(0.2, 1.2)))
    if rng.random() < jpeg_prob:
        from detect.attacks import jpeg

        patch = jpeg(np.ascontiguousarray(patch), int(rng.integers(60, 101)))
    return np.ascontiguousarray(patch)


class FineTunedEncoder(PatchDetector):
    """EfficientNet-Lite0, ImageNet-pretrained, fine-tuned on tiles (stem and early stages
    frozen), one logit per tile; the image score is the mean tile logit."""

    tags = Tags(modality=Modality.IMAGE, needs_fit=True, min_size=8)

    def __init__(self, *, backbone: str = "efficientnet-lite0", patch: int = 192,
                 max_tiles: int = 8, freeze_stages: int = 2, epochs: int = 4,
                 batch_size: int = 24, lr: float = 2e-4, head_lr: float = 2e-3,
                 weight_decay: float = 1e-4, blur_prob: float = 0.1, jpeg_prob: float = 0.2,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        if backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if patch < 32 or patch % 32:
            raise ConfigError(f"patch must be a multiple of 32 (the encoder's stride), "
                              f"got {patch}")
        if not 0 <= freeze_stages <= 7:
            raise ConfigError(f"freeze_stages must be 0..7 (the encoder has 7 block stages), "
                              f"got {freeze_stages}")
        if epochs < 1 or batch_size < 2:
            raise ConfigError(f"epochs must be >= 1 and batch_size >= 2, got {epochs}, "
                              f"{batch_size}")
        torch_device(device, type(self).__name__)
        self.backbone, self.patch, self.max_tiles = backbone, patch, max_tiles
        self.freeze_stages, self.epochs, self.batch_size = freeze_stages, epochs, batch_size
        self.lr, self.head_lr, self.weight_decay = lr, head_lr, weight_decay
        self.blur_prob, self.jpeg_prob = blur_prob, jpeg_prob
        self.target_fpr, self.seed, self.device = target_fpr, seed, device

    def _device(self) -> Any:
        return torch_device(self.device, self.name)

    def _to_tensor(self, patches: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(patches)).to(self._device())
        return (x.permute(0, 3, 1, 2).float() - 127.0) / 128.0  # the Lite models' input

    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        import torch
        from tqdm.auto import tqdm

        from detect.core.hashing import file_sha256
        from detect.image.patch import random_crops

        torch.manual_seed(self.seed)
        path = backbone_weights(self.backbone)
        model = _module(self.backbone, self.freeze_stages)
        # a state dict of tensors only: weights_only refuses anything else in the file
        model.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.pretrained_sha256_ = file_sha256(path)
        model = model.to(self._device())
        frozen = {id(p) for m in model.frozen() for p in m.parameters()}
        for m in model.frozen():
            for p in m.parameters():
                p.requires_grad_(False)
        head = [p for p in (*model.norm.parameters(), *model.fc.parameters())]
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if id(p) not in frozen and id(p) not in head_ids]
        opt = torch.optim.AdamW([{"params": body, "lr": self.lr},
                                 {"params": head, "lr": self.head_lr}],
                                weight_decay=self.weight_decay)
        n = len(images)
        bs = min(self.batch_size, n)
        steps_per_epoch = max(1, n // bs)
        total = self.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[self.lr, self.head_lr],
                                                    total_steps=total, pct_start=0.15)
        y_all = torch.from_numpy(labels.astype(np.float32)).to(self._device())
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        model.backbone_to_eval()
        bar = tqdm(total=total, desc=f"train {self.name}", file=sys.stderr, unit="step",
                   leave=False)
        for _epoch in range(self.epochs):
            order = rng.permutation(n)
            for s in range(steps_per_epoch):
                idx = order[s * bs:(s + 1) * bs]
                crops = random_crops([images[i] for i in idx], self.patch, rng)
                batch = np.stack([_augment(p, rng, self.blur_prob, self.jpeg_prob)
                                  for p in crops])
                loss = loss_fn(model(self._to_tensor(batch)), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        # the weights ship in half precision: round to it now, so the threshold calibrated
        # next is the one of the weights that ship
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
        self.model_ = model.eval()

    def _inference_net(self) -> tuple[Any, int]:
        """(a copy of the trained module with its batch norms folded (see fold_batchnorm),
        the number of its first blocks that are the frozen pretrained ones of the shared
        encoder, or 0), made once per set of weights; ``model_`` stays as trained and saved.
        Those blocks are then computed once for both wild-line members (Encoder.prefix): in
        float32 from the pretrained file rather than from their half-precision copy here:
        on the shipped model's 32 held-out test views that moved image logits by at most 0.027
        (they span -16.7 to 14.5; threshold -3.69; no decision changed)."""
        import copy

        import torch

        if getattr(self, "_folded", (None,))[0] is not self.model_:
            folded = copy.deepcopy(self.model_).eval()
            folded.net = fold_batchnorm(folded.net)
            shared = self.model_.n_frozen_blocks if self.model_.n_frozen_blocks == SHARED_BLOCKS \
                else 0
            if shared:
                pre = torch.load(backbone_weights(self.backbone), map_location="cpu",
                                 weights_only=True)
                own = self.model_.net.state_dict()
                names = [k for k in own if k.startswith(("_conv_stem.", "_bn0."))
                         or any(k.startswith(f"_blocks.{i}.") for i in range(shared))]
                if not all(torch.equal(own[k].cpu(), pre[k].half().float()
                                       if pre[k].is_floating_point() else pre[k])
                           for k in names):
                    shared = 0  # not the pretrained weights: compute them here
            self._folded = (self.model_, folded, shared)
        return self._folded[1], self._folded[2]

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        import torch

        out = []
        net, shared = self._inference_net()
        with torch.inference_mode():
            for i in range(0, len(patches), 32):
                batch = patches[i:i + 32]
                if shared:
                    maps, h = encoder(self.backbone, self.device).prefix(batch, shared)
                    logit = net.fc(net.norm(net.features_from(list(maps), h, shared)))
                else:
                    x = self._to_tensor(batch).contiguous(memory_format=torch.channels_last)
                    logit = net.fc(net.norm(net.features(x)))
                out.append(logit.squeeze(1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = {k: v.astype(np.float16) if v.dtype == np.float32 else v
                   for k, v in module_tensors(self.model_).items()}  # 9 MB, not 19
        return tensors, {"pretrained_sha256": self.pretrained_sha256_}

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        where = getattr(self, "model_dir_", self.name)
        tensors = {k: v.astype(np.float32) if v.dtype == np.float16 else v
                   for k, v in tensors.items()}
        self.model_ = load_module(_module(self.backbone, self.freeze_stages), tensors,
                                  self._device(),
                                  f"{where}: weights do not match {self.backbone}").eval()
        self.pretrained_sha256_ = meta.get("pretrained_sha256")
