"""NPR detector: a CNN on neighbouring-pixel relationships (Tan et al., CVPR 2024).

Generators upsample (transposed convolutions, nearest or bilinear resizes inside the network),
and an upsampled image's neighbouring pixels are related in ways a camera pipeline's are not.
The residual below keeps that relation and drops the scene, so a small network trained on it
learns the trace of upsampling rather than what the picture shows: the one cue this project's
benchmarks found to carry from GANs to an unseen diffusion family (``benchmarks/results/lofo``).
Training, tiling, calibration and saving are the CNN detector's.
"""

from __future__ import annotations

from typing import Any

from detect.image.cnn import CNNDetector
from detect.image.residuals import npr_residual

__all__ = ["NPRDetector", "npr_residual"]


class NPRDetector(CNNDetector):
    """``CNNDetector`` with ``residual="npr"`` as its default input."""

    def __init__(self, *, arch: str = "resnet10t", timm_kwargs: dict[str, Any] | None = None,
                 residual: str = "npr", patch: int = 32, epochs: int = 8,
                 batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
                 blur_prob: float = 0.0, jpeg_prob: float = 0.0, max_tiles: int = 64,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        super().__init__(arch=arch, timm_kwargs=timm_kwargs, residual=residual, patch=patch,
                         epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, blur_prob=blur_prob, jpeg_prob=jpeg_prob,
                         max_tiles=max_tiles, target_fpr=target_fpr, seed=seed,
                         device=device)
