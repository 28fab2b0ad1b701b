"""Video clips for face corpora: a virtual camera over a real photograph with a face.

Each clip follows one camera path over one picture: a window around the face that pans,
zooms and shakes a little from frame to frame, rendered with ``cv2.warpAffine`` and encoded
by OpenCV (MJPEG, MPEG-4 part 2, or H.264 where the OpenCV build has an encoder). A forged
clip renders one contiguous stretch of its frames from a copy of the picture whose face was
forged (self-blended or swapped with another real face), so the forgery moves with the
camera like a real one would. Labels: per frame (``params.frame_labels``) and per clip (1 if
any frame is forged). Half the clips are forged; each clip's split is drawn from its seed.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.types import Provenance, Sample
from detect.face.find import Face

VIDEO_DEFAULTS: dict[str, Any] = {
    "source": "photos",  # pictures the clips are filmed from (faces found in them)
    "clips": 24,
    "frames": 16,
    "fps": 8.0,
    "width": 160,
    "height": 128,
    "codec": "mjpeg",
    "forged_fraction": [0.3, 1.0],  # share of a forged clip's frames that show the forgery
    "methods": ["sbi", "swap"],
    "face_width": [0.22, 0.4],  # face width as a share of the frame width
    "splits": {"calib": 0.5, "test": 0.5},
}


def check(video: dict[str, Any], where: str) -> None:
    unknown = sorted(set(video) - set(VIDEO_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: [video] has unknown field(s) {unknown} "
                          f"(known: {', '.join(VIDEO_DEFAULTS)})")
    cfg = {**VIDEO_DEFAULTS, **video}
    if cfg["clips"] < 2 or cfg["frames"] < 2:
        raise ConfigError(f"{where}: [video] needs clips >= 2 and frames >= 2")
    bad = set(cfg["methods"]) - {"sbi", "swap"}
    if bad:
        raise ConfigError(f"{where}: [video] methods {sorted(bad)} unknown (sbi, swap)")
    lo, hi = cfg["forged_fraction"]
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"{where}: [video] forged_fraction must be 0 < lo <= hi <= 1")
    if abs(sum(cfg["splits"].values()) - 1) > 1e-6:
        raise ConfigError(f"{where}: [video] splits must sum to 1")


def _forged_picture(picture: np.ndarray, face: Face, method: str, partner: Any,
                    rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The picture with its face forged at native resolution (a square around the face is
    cut out, forged and put back; only the blend mask's pixels change)."""
    import cv2

    from detect.core.registry import generators

    from .methods import FaceInput
    from .recipe import METHODS

    x0, y0, x1, y1 = face.box
    side = face.size * 1.6
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = picture.shape[:2]
    bx0, by0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    bx1, by1 = min(w, int(cx + side / 2)), min(h, int(cy + side / 2))
    region = np.ascontiguousarray(picture[by0:by1, bx0:bx1])
    lm = None if face.landmarks is None else face.landmarks - np.array([bx0, by0])
    forger = generators.create(METHODS[method])
    if method == "sbi":
        forged, info = forger.forge(FaceInput(region, lm), rng)
    else:
        src_img, src_lm = partner
        rh, rw = region.shape[:2]
        scale = np.array([rw / src_img.shape[1], rh / src_img.shape[0]])
        src = cv2.resize(src_img, (rw, rh), interpolation=cv2.INTER_CUBIC)
        forged, info = forger.forge(FaceInput(region, lm, src, None if src_lm is None
                                              else src_lm * scale), rng)
    out = picture.copy()
    out[by0:by1, bx0:bx1] = forged
    return out, {"method": method, "region": [bx0, by0, bx1 - bx0, by1 - by0], "forgery": info}


def camera_path(face: Face, shape_hw: tuple[int, int], cfg: dict[str, Any],
                rng: np.random.Generator) -> dict[str, Any]:
    """Start and end window (centre, width) in picture pixels plus a shake amplitude."""
    lo, hi = cfg["face_width"]
    width0 = face.size / rng.uniform(lo, hi)
    zoom = rng.uniform(0.85, 1.15)
    x0, y0, x1, y1 = face.box
    c0 = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-0.15, 0.15, 2) * width0
    pan = rng.uniform(-0.12, 0.12, 2) * width0
    return {"centre0": c0.round(2).tolist(), "centre1": (c0 + pan).round(2).tolist(),
            "width0": round(float(width0), 2), "width1": round(float(width0 * zoom), 2),
            "shake": round(float(rng.uniform(0, 1.5)), 3),
            "shake_phase": rng.uniform(0, 2 * math.pi, 2).round(4).tolist()}


def render(picture: np.ndarray, path: dict[str, Any], t: float, frame: int,
           size_wh: tuple[int, int]) -> np.ndarray:
    """Frame ``frame`` at time fraction ``t`` in [0, 1] of a camera path."""
    import cv2

    out_w, out_h = size_wh
    c = (1 - t) * np.array(path["centre0"]) + t * np.array(path["centre1"])
    width = (1 - t) * path["width0"] + t * path["width1"]
    ph = path["shake_phase"]
    c = c + path["shake"] * np.array([math.sin(1.7 * frame + ph[0]), math.sin(2.3 * frame + ph[1])])
    s = out_w / width
    m = np.array([[s, 0, out_w / 2 - s * c[0]], [0, s, out_h / 2 - s * c[1]]])
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(picture, m, (out_w, out_h), flags=interp,
                          borderMode=cv2.BORDER_REFLECT_101)


def build_clips(video: dict[str, Any], writer: Any, faces: list[Any], finder: Any,
                face_cfg: dict[str, Any], seed: int, *, progress: bool = True) -> dict[str, Any]:
    """Add the recipe's clips to ``writer``; returns the header summary."""
    from tqdm.auto import tqdm

    from detect.io.video_encode import encode_video

    from .sources import real_faces

    cfg = {**VIDEO_DEFAULTS, **video}
    scenes = [f for f in real_faces(cfg["source"], finder) if f.face.landmarks is not None]
    if not scenes:
        raise ConfigError(f"[video] source {cfg['source']!r}: no picture with a face (and "
                          "landmarks) found")
    partners = [f for f in faces if f.face.landmarks is not None] or scenes
    fractions = {s: float(v) for s, v in cfg["splits"].items()}
    n, n_frames, fps = int(cfg["clips"]), int(cfg["frames"]), float(cfg["fps"])
    bar = tqdm(total=n, desc="clips", file=sys.stderr, disable=not progress, leave=False)
    for i in range(n):
        bar.update(1)
        key = f"video:{i}"
        if writer.has(key):
            continue
        rng = np.random.default_rng([seed, 303, i])
        scene = scenes[i % len(scenes)]
        path = camera_path(scene.face, scene.image.shape[:2], cfg, rng)
        forged = i % 2 == 1
        labels = [0] * n_frames
        params: dict[str, Any] = {"camera": path, "fps": fps, "codec": cfg["codec"],
                                  "size": [cfg["width"], cfg["height"]], "frames": n_frames}
        fake_picture = None
        if forged:
            method = str(cfg["methods"][int(rng.integers(len(cfg["methods"])))])
            partner = partners[int(rng.integers(len(partners)))]
            pimg = _partner_crop(partner, face_cfg)
            fake_picture, info = _forged_picture(scene.image, scene.face, method, pimg, rng)
            lo, hi = cfg["forged_fraction"]
            k = max(1, round(n_frames * rng.uniform(lo, hi)))
            start = int(rng.integers(0, n_frames - k + 1))
            labels = [int(start <= f < start + k) for f in range(n_frames)]
            params["forgery"] = {**info, **({"partner": partner.name} if method == "swap"
                                            else {})}
        frames = [render(fake_picture if labels[f] else scene.image, path,
                         f / max(1, n_frames - 1), f, (cfg["width"], cfg["height"]))
                  for f in range(n_frames)]
        params["frame_labels"] = labels
        data = encode_video(frames, codec=cfg["codec"], fps=fps)
        u = np.random.default_rng([seed, 404, i]).random()
        acc, split = 0.0, list(fractions)[-1]
        for s, fr in fractions.items():
            acc += fr
            if u < acc:
                split = s
                break
        prov = Provenance(kind="synthetic" if forged else "real",
                          generator=f"face-{params['forgery']['method']}" if forged else None,
                          source=scene.name, seed=seed, index=i, params=params)
        writer.add(Sample(data, "video", int(forged), prov, group=f"clip:{i}"), split, key)
    bar.close()
    return {"clips": n, "frames": n_frames, "codec": cfg["codec"], "fps": fps,
            "scenes": sorted({s.name for s in scenes})}


def _partner_crop(rf: Any, face_cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """A swap partner: its face cut square (landmarks in the cut's coordinates)."""
    from detect.face.find import crop_face

    c = crop_face(rf.image, rf.face, int(face_cfg["work_size"]) * 2, margin=0.3)
    return c.pixels, c.landmarks
