"""CNN detector: a timm backbone trained here from scratch on patches (no pretrained weights
exist offline). Inference tiles the image at native resolution and averages patch logits, so
resampling never erases the high-frequency traces the network keys on. Training adds
CNNDetection-style blur and JPEG augmentation (applied to both classes) when asked."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from detect.core.detector import Tags
from detect.core.device import load_module, module_tensors, torch_device
from detect.core.errors import ConfigError
from detect.image.patch import PatchDetector
from detect.image.residuals import npr_residual


def _augment(patch: np.ndarray, rng: np.random.Generator, blur_prob: float,
             jpeg_prob: float) -> np.ndarray:
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if blur_prob <= 0 and jpeg_prob <= 0:
        return patch
    from detect.attacks import blur, jpeg

    if rng.random() < blur_prob:
        patch = blur(patch, float(rng.uniform(0.1, 1.5)))
    if rng.random() < jpeg_prob:
        patch = jpeg(patch, int(rng.integers(60, 96)))
    return patch


RESIDUALS = ("none", "npr")


class CNNDetector(PatchDetector):
    tags = Tags(modality="image", needs_fit=True, min_size=8)

    def __init__(self, *, arch: str = "resnet10t", timm_kwargs: dict[str, Any] | None = None,
                 residual: str = "none", patch: int = 32, epochs: int = 8,
                 batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
                 blur_prob: float = 0.0, jpeg_prob: float = 0.0, max_tiles: int = 64,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        if residual not in RESIDUALS:
            raise ConfigError(f"residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")
        torch_device(device, type(self).__name__)  # a bad device fails here, named
        self.device = device
        self.arch, self.timm_kwargs, self.residual = arch, timm_kwargs, residual
        self.patch, self.epochs, self.batch_size = patch, epochs, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.blur_prob, self.jpeg_prob = blur_prob, jpeg_prob
        self.max_tiles, self.target_fpr, self.seed = max_tiles, target_fpr, seed

    def _build(self):  # noqa: ANN202
        import timm

        try:
            return timm.create_model(self.arch, pretrained=False, num_classes=1, in_chans=3,
                                     **(self.timm_kwargs or {}))
        except (RuntimeError, TypeError) as e:
            raise ConfigError(f"{self.name}: timm has no model {self.arch!r} ({e})") from None

    def _device(self):  # noqa: ANN202
        return torch_device(self.device, self.name)

    def _to_tensor(self, patches: np.ndarray):  # noqa: ANN202
        import torch

        x = torch.from_numpy(np.ascontiguousarray(patches)).to(self._device())
        x = x.permute(0, 3, 1, 2).float()
        x = (x / 255.0 - 0.5) / 0.25
        if self.residual == "npr":
            x = npr_residual(x)
        return x

    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        import torch
        from tqdm.auto import tqdm

        from detect.image.patch import random_crops

        torch.manual_seed(self.seed)
        model = self._build().to(self._device())
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = len(images)
        steps_per_epoch = max(1, n // self.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr,
                                                    total_steps=self.epochs * steps_per_epoch)
        y_all = torch.from_numpy(labels.astype(np.float32)).to(self._device())
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        bar = tqdm(total=self.epochs * steps_per_epoch, desc=f"train {self.name}",
                   file=sys.stderr, unit="step", leave=False)
        for _epoch in range(self.epochs):
            order = rng.permutation(n)
            for s in range(steps_per_epoch):
                idx = order[s * self.batch_size:(s + 1) * self.batch_size]
                crops = random_crops([images[i] for i in idx], self.patch, rng)
                batch = np.stack([_augment(p, rng, self.blur_prob, self.jpeg_prob) for p in crops])
                logits = model(self._to_tensor(batch)).squeeze(1)
                loss = loss_fn(logits, y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        model.eval()
        self.model_ = model.to(self._device())

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        import torch

        model = self.model_
        out = []
        with torch.inference_mode():
            for i in range(0, len(patches), 256):
                logits = model(self._to_tensor(patches[i:i + 256])).squeeze(1)
                out.append(logits.double().cpu().numpy())
        return np.concatenate(out)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return module_tensors(self.model_), {}

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model_ = load_module(self._build(), tensors, self._device(),
                                  f"{self.name}: weights do not match architecture {self.arch}")
