"""Labelled face forgeries made from real faces alone.

A face-forgery detector needs fakes whose only tell is the blending itself, not the artefacts
of one particular generator. Self-blended images (SBI, Shiohara & Yamasaki 2022) paste a
slightly altered copy of a face onto itself; classic face swaps paste another real face. Both
need nothing but real crops, so the fakes share the reals' identities, poses and encoders.

Every function takes its randomness from a ``numpy.random.Generator`` and returns an ``info``
dict (plain JSON types) with every parameter it drew and the blend-mask statistics, so a
corpus can record the provenance of each fake and rebuild it from the same seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Blend-ratio multipliers for self_blend; full-strength blends are the most common, as in SBI.
BLEND_RATIOS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.0)
SWAP_METHODS: tuple[str, ...] = ("auto", "seamless", "alpha")
#: Poisson cloning on tiny crops smears the whole face and often fails: alpha-blend below these.
MIN_SEAMLESS_IMAGE = 32
MIN_SEAMLESS_MASK = 8


# ---------------------------------------------------------------------------------------------
# validation


def _check_image(img: Any, name: str = "face") -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB, got dtype {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must have shape HxWx3 (RGB), got {img.shape}")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise ValueError(f"{name} must be at least 8x8 pixels, got {img.shape[:2]}")
    return np.ascontiguousarray(img)


def _check_landmarks(landmarks: Any, name: str = "landmarks") -> np.ndarray | None:
    if landmarks is None:
        return None
    try:
        pts = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a (5, 2) array of (x, y) points: {e}") from None
    if pts.shape != (5, 2):
        raise ValueError(f"{name} must have shape (5, 2) (MTCNN order: eyes, nose, mouth "
                         f"corners), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} must be finite")
    return pts


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_mask(mask: Any, shape_hw: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != tuple(shape_hw):
        raise ValueError(f"mask must have shape {tuple(shape_hw)}, got {m.shape}")
    return np.clip(m, 0.0, 1.0)


def _mask_stats(mask: np.ndarray) -> dict[str, float]:
    """What a provenance record needs to know about a blend mask, without the mask itself."""
    support = mask > 0
    return {
        "mask_area_fraction": float(mask.mean()),
        "mask_support_fraction": float(support.mean()),
        "mask_core_fraction": float((mask >= 0.999).mean()),
        "mask_mean_in_support": float(mask[support].mean()) if support.any() else 0.0,
    }


def _gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    k = 2 * math.ceil(3.0 * sigma) + 1
    return cv2.GaussianBlur(img, (k, k), sigma)


# ---------------------------------------------------------------------------------------------
# masks and colour


def face_mask(shape_hw: tuple[int, int], landmarks: np.ndarray | None, rng: np.random.Generator,
              *, deform: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Soft float32 HxW mask in [0, 1] over the inner face, and how it was drawn.

    With 5 landmarks, the convex hull of the points extrapolated from the eye-mouth distance
    (brows and forehead above the eyes, chin below the mouth); without, an ellipse a little
    above the centre. ``deform`` randomises the shape (extents, dilation or erosion) so a
    detector cannot learn one fixed boundary; the edge softness is random either way.
    """
    import cv2

    if (not isinstance(shape_hw, tuple | list) or len(shape_hw) != 2
            or not all(isinstance(v, int | np.integer) and v > 0 for v in shape_hw)):
        raise ValueError(f"shape_hw must be a (height, width) pair of positive ints, got "
                         f"{shape_hw!r}")
    h, w = int(shape_hw[0]), int(shape_hw[1])
    pts = _check_landmarks(landmarks)
    rng = _check_rng(rng)
    size = min(h, w)
    info: dict[str, Any] = {"deform": bool(deform)}

    if pts is not None:
        le, re, nose, lm, rm = pts
        eye_c, mouth_c = (le + re) / 2, (lm + rm) / 2
        d = float(np.linalg.norm(mouth_c - eye_c))
        if d < 1e-6:
            raise ValueError("landmarks: eyes and mouth coincide, cannot place a face mask")
        down = (mouth_c - eye_c) / d
        across = np.array([-down[1], down[0]])  # perpendicular; orient from left to right eye
        if np.dot(across, re - le) < 0:
            across = -across
        if deform:
            k_up, k_brow = float(rng.uniform(0.7, 1.0)), float(rng.uniform(0.4, 0.65))
            k_side, k_chin = float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.6, 0.9))
        else:
            k_up, k_brow, k_side, k_chin = 0.85, 0.525, 0.475, 0.75
        hull_pts = np.stack([
            eye_c - down * d * k_up,                                   # forehead
            le - across * d * k_side - down * d * k_brow,              # brows
            re + across * d * k_side - down * d * k_brow,
            le - across * d * k_side,                                  # temples
            re + across * d * k_side,
            lm - across * d * k_side * 0.6 + down * d * 0.2,           # jaw
            rm + across * d * k_side * 0.6 + down * d * 0.2,
            mouth_c + down * d * k_chin,                               # chin
            nose,
        ])
        hull = cv2.convexHull(np.round(hull_pts * 16).astype(np.int32))
        binary = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(binary, hull, 1, lineType=cv2.LINE_8, shift=4)
        info.update(mode="landmarks", eye_mouth_distance=d, k_forehead=k_up, k_brow=k_brow,
                    k_side=k_side, k_chin=k_chin)
        scale = d
    else:
        if deform:
            ax = float(rng.uniform(0.30, 0.42)) * w
            ay = float(rng.uniform(0.38, 0.50)) * h
            dx = float(rng.uniform(-0.03, 0.03)) * w
            dy = float(rng.uniform(-0.03, 0.03)) * h
        else:
            ax, ay, dx, dy = 0.36 * w, 0.44 * h, 0.0, 0.0
        cx, cy = (w - 1) / 2 + dx, (h - 1) * 0.45 + dy
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        binary = ((((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2) <= 1.0).astype(np.uint8)
        info.update(mode="ellipse", center=[cx, cy], axes=[ax, ay])
        scale = float(size) * 0.4

    morph, radius = "none", 0
    if deform:
        morph = ("none", "dilate", "erode")[int(rng.integers(3))]
        radius = int(rng.integers(1, max(1, round(0.04 * size)) + 1))
        if morph != "none":
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
            op = cv2.dilate if morph == "dilate" else cv2.erode
            binary = op(binary, kernel)
    info.update(morph=morph, morph_radius=radius if morph != "none" else 0)

    # Edge softness relative to the face, floored so tiny crops still get a soft seam.
    sigma = max(0.5, float(rng.uniform(0.03, 0.12)) * scale)
    mask = np.clip(_gaussian(binary.astype(np.float32), sigma), 0.0, 1.0)
    info["blur_sigma"] = sigma
    info.update(_mask_stats(mask))
    return mask.astype(np.float32), info


def _lab(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _weighted_stats(lab: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    flat = lab.reshape(-1, 3).astype(np.float64)
    if weights is None or float(weights.sum()) < 1e-6:
        return flat.mean(0), flat.std(0)
    wts = weights.reshape(-1, 1).astype(np.float64)
    mean = (flat * wts).sum(0) / wts.sum()
    std = np.sqrt(((flat - mean) ** 2 * wts).sum(0) / wts.sum())
    return mean, std


def color_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard colour transfer: match src's per-channel LAB mean/std to ref's.

    A pasted face with the wrong skin tone is a trivial tell; matching the statistics inside
    the face mask (when given) removes it without touching the texture. The whole of src is
    transformed, the caller decides where to paste it. Greyscale inputs stay consistent: a
    channel with (almost) no spread is only shifted, never amplified.
    """
    import cv2

    src = _check_image(src, "src")
    ref = _check_image(ref, "ref")
    m = None
    if mask is not None:
        m = _check_mask(mask, src.shape[:2])
        if ref.shape[:2] != src.shape[:2]:
            raise ValueError(f"with a mask, ref must have src's size {src.shape[:2]}, "
                             f"got {ref.shape[:2]}")
    s_lab, r_lab = _lab(src), _lab(ref)
    s_mean, s_std = _weighted_stats(s_lab, m)
    r_mean, r_std = _weighted_stats(r_lab, m)
    gain = np.where(s_std > 1e-2, r_std / np.maximum(s_std, 1e-2), 1.0)
    gain = np.clip(gain, 0.25, 4.0)  # a near-flat channel must not blow up into noise
    out = (s_lab - s_mean.astype(np.float32)) * gain.astype(np.float32) + r_mean.astype(
        np.float32)
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# self-blended images


def _jitter_colour(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Float32 RGB in [0, 1] with a random colour shift, so the blend seam shows in colour."""
    import cv2

    mode = ("hsv", "rgb_gain")[int(rng.integers(2))]
    info: dict[str, Any] = {"mode": mode}
    if mode == "hsv":
        hue = float(rng.uniform(-10.0, 10.0))
        sat = float(rng.uniform(0.75, 1.25))
        val = float(rng.uniform(0.85, 1.15))
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
        hsv[..., 2] = np.clip(hsv[..., 2] * val, 0.0, 1.0)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        info.update(hue_shift_deg=hue, saturation_gain=sat, value_gain=val)
    else:
        gains = [float(g) for g in rng.uniform(0.9, 1.1, size=3)]
        img = img * np.asarray(gains, np.float32)
        info["channel_gains"] = gains
    contrast = float(rng.uniform(0.85, 1.15))
    brightness = float(rng.uniform(-0.05, 0.05))
    mean = float(img.mean())
    img = (img - mean) * contrast + mean + brightness
    info.update(contrast=contrast, brightness=brightness)
    return np.clip(img, 0.0, 1.0).astype(np.float32), info


def _filter(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Random blur or sharpen, so the pasted face differs from its host in frequency content."""
    kind = ("none", "blur", "sharpen")[int(rng.integers(3))]
    info: dict[str, Any] = {"kind": kind}
    if kind == "blur":
        sigma = float(rng.uniform(0.4, 1.2))
        img = _gaussian(img, sigma)
        info["sigma"] = sigma
    elif kind == "sharpen":
        amount = float(rng.uniform(0.3, 1.0))
        img = img + amount * (img - _gaussian(img, 1.0))
        info.update(sigma=1.0, amount=amount)
    return np.clip(img, 0.0, 1.0).astype(np.float32), info


def _warp(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Small similarity warp: the landmark misalignment every real face swap leaves behind."""
    import cv2

    h, w = img.shape[:2]
    scale = float(rng.uniform(0.95, 1.05))
    tx = float(rng.uniform(-0.03, 0.03)) * w
    ty = float(rng.uniform(-0.03, 0.03)) * h
    rotate = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-3.0, 3.0)) if rotate else 0.0
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    m[:, 2] += (tx, ty)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out, {"scale": scale, "tx": tx, "ty": ty, "angle_deg": angle,
                 "matrix": [[float(v) for v in row] for row in m]}


def self_blend(face: np.ndarray, landmarks: np.ndarray | None, rng: np.random.Generator, *,
               return_mask: bool = False
               ) -> tuple[np.ndarray, dict] | tuple[np.ndarray, np.ndarray, dict]:
    """SBI fake: a colour-jittered, filtered, slightly warped copy of the face blended onto it.

    Returns ``(image, info)``, or ``(image, mask, info)`` with ``return_mask``; the mask is the
    effective per-pixel weight of the altered copy (face mask times the blend ratio), so pixels
    where it is 0 are the original's exactly.
    """
    face = _check_image(face, "face")
    pts = _check_landmarks(landmarks)
    rng = _check_rng(rng)
    mask, mask_info = face_mask(face.shape[:2], pts, rng)
    src = face.astype(np.float32) / 255.0
    src, colour_info = _jitter_colour(src, rng)
    src, filter_info = _filter(src, rng)
    src, warp_info = _warp(src, rng)
    ratio = float(BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))])
    m = (mask * np.float32(ratio))[..., None]
    out = m * (src * 255.0) + (1.0 - m) * face.astype(np.float32)
    img = np.clip(np.round(out), 0, 255).astype(np.uint8)
    info: dict[str, Any] = {"kind": "self_blend", "mask": mask_info, "color": colour_info,
                            "filter": filter_info, "warp": warp_info, "blend_ratio": ratio}
    info.update(_mask_stats(m[..., 0]))
    if return_mask:
        return img, m[..., 0], info
    return img, info


# ---------------------------------------------------------------------------------------------
# face swaps


def _align(target_hw: tuple[int, int], source: np.ndarray, src_pts: np.ndarray | None,
           dst_pts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Source warped onto the target frame, the mask of pixels it really covers, and how."""
    import cv2

    h, w = target_hw
    if src_pts is not None and dst_pts is not None:
        m, _ = cv2.estimateAffinePartial2D(src_pts.astype(np.float32),
                                           dst_pts.astype(np.float32), method=cv2.LMEDS)
        if m is not None and np.all(np.isfinite(m)):
            aligned = cv2.warpAffine(source, m, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
            ones = np.ones(source.shape[:2], np.float32)
            valid = cv2.warpAffine(ones, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            scale = float(math.hypot(m[0, 0], m[1, 0]))
            angle = float(math.degrees(math.atan2(m[1, 0], m[0, 0])))
            return aligned, np.clip(valid, 0.0, 1.0), {
                "align": "similarity", "matrix": [[float(v) for v in row] for row in m],
                "scale": scale, "angle_deg": angle}
    interp = cv2.INTER_AREA if source.shape[0] * source.shape[1] > h * w else cv2.INTER_LINEAR
    aligned = cv2.resize(source, (w, h), interpolation=interp)
    return aligned, np.ones((h, w), np.float32), {
        "align": "resize", "scale": [w / source.shape[1], h / source.shape[0]]}


def _seamless(aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
              ) -> tuple[np.ndarray | None, dict]:
    """Poisson clone, or None and the reason when it cannot or should not run."""
    import cv2

    h, w = target.shape[:2]
    if min(h, w) < MIN_SEAMLESS_IMAGE:
        return None, {"fallback_reason": f"image smaller than {MIN_SEAMLESS_IMAGE} px"}
    binary = (mask >= 0.5).astype(np.uint8) * 255
    border = 2  # seamlessClone needs the mask off the image border to keep its ROI inside
    binary[:border], binary[-border:], binary[:, :border], binary[:, -border:] = 0, 0, 0, 0
    x, y, bw, bh = cv2.boundingRect(binary)
    if bw < MIN_SEAMLESS_MASK or bh < MIN_SEAMLESS_MASK:
        return None, {"fallback_reason": f"mask smaller than {MIN_SEAMLESS_MASK} px"}
    # OpenCV places the mask's bounding box centred on `center` (top-left = center - size // 2),
    # so this centre pastes the face exactly where the mask is.
    center = (x + bw // 2, y + bh // 2)
    fraction = float((binary > 0).mean())
    try:  # OpenCV edits the mask buffer in place: hand it a copy
        out = cv2.seamlessClone(aligned, target, binary.copy(), center, cv2.NORMAL_CLONE)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
        return None, {"fallback_reason": f"cv2.error: {msg[:200]}"}
    return out, {"seamless_center": [int(center[0]), int(center[1])],
                 "seamless_mask_fraction": fraction}


def face_swap(target: np.ndarray, target_landmarks: np.ndarray | None, source: np.ndarray,
              source_landmarks: np.ndarray | None, rng: np.random.Generator, *,
              method: str = "auto", return_mask: bool = False
              ) -> tuple[np.ndarray, dict] | tuple[np.ndarray, np.ndarray, dict]:
    """Classic face swap: the source's inner face, aligned and colour-matched, on the target.

    Alignment is a similarity fitted on the landmark pairs when both exist, else a resize.
    ``method`` picks the composite: Poisson ``"seamless"`` cloning, ``"alpha"`` blending with
    the soft mask, or ``"auto"`` (drawn from rng). Seamless falls back to alpha on tiny crops
    or cv2 errors; ``info["composite"]`` is the one actually used. Output has the target's size
    and is the target exactly wherever the returned mask is 0.
    """
    if method not in SWAP_METHODS:
        raise ValueError(f"method must be one of {', '.join(SWAP_METHODS)}, got {method!r}")
    target = _check_image(target, "target")
    source = _check_image(source, "source")
    t_pts = _check_landmarks(target_landmarks, "target_landmarks")
    s_pts = _check_landmarks(source_landmarks, "source_landmarks")
    rng = _check_rng(rng)
    h, w = target.shape[:2]

    aligned, valid, align_info = _align((h, w), source, s_pts, t_pts)
    mask, mask_info = face_mask((h, w), t_pts, rng)
    mask = mask * valid  # never paste the reflected padding around a warped source
    chosen = method if method != "auto" else ("seamless", "alpha")[int(rng.integers(2))]
    aligned = color_transfer(aligned, target, mask)

    info: dict[str, Any] = {"kind": "face_swap", "method_requested": method,
                            "method_chosen": chosen, "fallback_reason": None,
                            "target_size": [h, w], "source_size": list(source.shape[:2]),
                            "alignment": align_info, "mask": mask_info}
    out = None
    if chosen == "seamless":
        out, seam_info = _seamless(aligned, target, mask)
        info.update(seam_info)
        if out is not None:
            # Poisson solving may nudge pixels across its ROI; keep the rest of the target intact.
            out = np.where((mask > 0)[..., None], out, target)
    if out is None:
        m = mask[..., None]
        blend = m * aligned.astype(np.float32) + (1.0 - m) * target.astype(np.float32)
        out = np.clip(np.round(blend), 0, 255).astype(np.uint8)
        info["composite"] = "alpha"
    else:
        info["composite"] = "seamless"
    info.update(_mask_stats(mask))
    out = np.ascontiguousarray(out, dtype=np.uint8)
    if return_mask:
        return out, mask.astype(np.float32), info
    return out, info
