"""Spectrum detector: upsampling in GAN generators and diffusion decoders leaves periodic peaks
and a distorted high-frequency fall-off in the Fourier spectrum. An azimuthal average of the
log power spectrum, plus the spectra along the two frequency axes (where transposed-convolution
checkerboards concentrate), feed a standardised logistic regression
(``core.linear.LinearHead``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from detect.core.detector import Tags
from detect.core.linear import LinearHead, head_attribute
from detect.image.patch import PatchDetector


def spectrum_features(patches: np.ndarray, bins: int) -> np.ndarray:
    """(N, P, P, 3) uint8 -> (N, 3*bins) log-power features."""
    x = patches.astype(np.float64) / 255.0
    gray = x @ np.array([0.299, 0.587, 0.114])
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    p = gray.shape[1]
    f = np.fft.fftshift(np.fft.fft2(gray), axes=(1, 2))
    logp = np.log(np.abs(f) ** 2 + 1e-8)
    c = p // 2
    yy, xx = np.mgrid[:p, :p]
    r = np.hypot(yy - c, xx - c) / (c * np.sqrt(2))
    ridx = np.minimum((r * bins).astype(int), bins - 1)
    counts = np.bincount(ridx.ravel(), minlength=bins).astype(np.float64)
    counts[counts == 0] = 1
    flat = logp.reshape(len(logp), -1)
    az = np.stack([np.bincount(ridx.ravel(), weights=row, minlength=bins) for row in flat]) / counts
    # 1-D spectra along the horizontal and vertical frequency axes, binned to `bins`
    axis_idx = np.minimum((np.abs(np.arange(p) - c) / max(c, 1) * bins).astype(int), bins - 1)
    axc = np.bincount(axis_idx, minlength=bins).astype(np.float64)
    axc[axc == 0] = 1

    def axis_bins(v: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(axis_idx, weights=row, minlength=bins) for row in v]) / axc

    horiz = axis_bins(logp[:, c, :])
    vert = axis_bins(logp[:, :, c])
    return np.concatenate([az, horiz, vert], axis=1)


class SpectrumDetector(PatchDetector):
    tags = Tags(modality="image", needs_fit=True, min_size=8)

    def __init__(self, *, patch: int = 32, bins: int = 24, C: float = 1.0,
                 max_tiles: int = 64, target_fpr: float = 0.01, seed: int = 0):
        self.patch, self.bins, self.C = patch, bins, C
        self.max_tiles, self.target_fpr, self.seed = max_tiles, target_fpr, seed

    coef_ = head_attribute("coef")
    intercept_ = head_attribute("intercept")

    def _fit_patches(self, patches: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator) -> None:
        feats = spectrum_features(patches, self.bins)
        self.head_ = LinearHead(C=self.C, max_iter=2000).fit(feats, labels)

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        return self.head_.decision(spectrum_features(patches, self.bins))

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.head_.tensors(), {}

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        where = getattr(self, "model_dir_", None) or self.name
        self.head_ = LinearHead(C=self.C, max_iter=2000).load_tensors(tensors, where=where)
