"""A simple, honest quality figure for image generators trained here.

No Inception weights exist offline, so FID proper is out of reach. Instead: the Fréchet distance
between real and generated patches in a fixed, hand-made feature space (colour moments, gradient
and Laplacian energy, the log-power spectrum). It is reported with two anchors: the untrained
generator (what "learned nothing" scores) and a second set of real patches (what "as good as
real" scores), so one number says how far training moved the generator toward the data.
"""

from __future__ import annotations

import numpy as np


def patch_features(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, F) features that respond to colour, texture and upsampling."""
    from detect.image.spectrum import spectrum_features

    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(1, 2))
    std = x.std(axis=(1, 2))
    gray = x @ np.array([0.299, 0.587, 0.114])
    gx, gy = np.diff(gray, axis=2), np.diff(gray, axis=1)
    grad = np.stack([np.log(np.mean(gx**2, axis=(1, 2)) + 1e-6),
                     np.log(np.mean(gy**2, axis=(1, 2)) + 1e-6)], axis=1)
    lap = gray[:, 1:-1, 1:-1] * 4 - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] \
        - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
    lap_e = np.log(np.mean(lap**2, axis=(1, 2)) + 1e-6)[:, None]
    sat = (x.max(axis=3) - x.min(axis=3)).mean(axis=(1, 2))[:, None]
    spec = spectrum_features(images, 12)
    return np.concatenate([mean, std, grad, lap_e, sat, spec], axis=1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as in FID)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    eps = 1e-6 * np.eye(a.shape[1])  # keeps sqrtm stable when a feature is constant
    s1, s2 = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def quality_report(real_a: np.ndarray, real_b: np.ndarray, fake: np.ndarray,
                   untrained: np.ndarray) -> dict[str, float]:
    """FD(fake, real) with its anchors; ``learned`` is 1 at real-vs-real, 0 at untrained."""
    ref = patch_features(real_a)
    fd_fake = frechet_distance(patch_features(fake), ref)
    fd_real = frechet_distance(patch_features(real_b), ref)
    fd_untrained = frechet_distance(patch_features(untrained), ref)
    learned = (fd_untrained - fd_fake) / max(fd_untrained - fd_real, 1e-9)
    return {"fd_generated": round(fd_fake, 3), "fd_real_vs_real": round(fd_real, 3),
            "fd_untrained": round(fd_untrained, 3), "learned_fraction": round(learned, 4),
            "n": int(len(fake))}


def image_grid(images: np.ndarray, cols: int = 8, upscale: int = 4) -> np.ndarray:
    """Tile images into one array for a sample-grid PNG (nearest upscaling keeps artifacts)."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    pad = np.zeros((rows * cols - n, h, w, c), dtype=images.dtype)
    g = np.concatenate([images, pad]).reshape(rows, cols, h, w, c)
    g = g.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    return g.repeat(upscale, axis=0).repeat(upscale, axis=1)
