"""Face forgeries from real faces: self-blended images and face swaps on real skimage faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from generators.faces.forgery import (
    BLEND_RATIOS,
    color_transfer,
    face_mask,
    face_swap,
    self_blend,
)

# MTCNN on the full astronaut image: eyes, nose, mouth corners (x, y); the crop starts at (160, 40).
ASTRONAUT_LANDMARKS = np.array([(205.0, 101.7), (246.8, 103.7), (224.7, 129.0),
                                (201.7, 139.2), (245.3, 141.9)]) - (160.0, 40.0)


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(data.astronaut()[40:200, 160:290]), ASTRONAUT_LANDMARKS.copy()


@pytest.fixture(scope="module")
def lfw() -> np.ndarray:
    """The first 100 LFW faces (25x25 grey in [0, 1]) as uint8 RGB."""
    grey = np.round(data.lfw_subset()[:100] * 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def flipped(face: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A mirrored face is another real, plausibly posed face with known landmarks."""
    out = np.ascontiguousarray(face[:, ::-1])
    pts = lm.copy()
    pts[:, 0] = face.shape[1] - 1 - pts[:, 0]
    return out, pts[[1, 0, 2, 4, 3]]


def lab_mean(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    import cv2

    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.mean(0) if mask is None else lab[mask.reshape(-1) > 0.5].mean(0)


def assert_json(info: dict) -> None:
    assert json.loads(json.dumps(info)) == info


# ---------------------------------------------------------------------------------------------
# face_mask


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_face_mask_range_area_and_info(astronaut, use_landmarks):
    face, lm = astronaut
    for seed in range(8):
        mask, info = face_mask(face.shape[:2], lm if use_landmarks else None,
                               np.random.default_rng(seed))
        assert mask.shape == face.shape[:2] and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert 0.15 <= info["mask_area_fraction"] <= 0.8
        assert info["mask_area_fraction"] == pytest.approx(float(mask.mean()))
        assert info["mode"] == ("landmarks" if use_landmarks else "ellipse")
        assert mask.max() > 0.999 and (mask == 0).any()  # a solid core and an untouched rim
        assert_json(info)


def test_face_mask_covers_landmarks_not_corners(astronaut):
    face, lm = astronaut
    for seed in range(5):
        mask, _ = face_mask(face.shape[:2], lm, np.random.default_rng(seed))
        xy = np.round(lm).astype(int)
        assert (mask[xy[:, 1], xy[:, 0]] > 0.5).all()
        assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0.0


def test_face_mask_tiny_and_fixed_shape(lfw):
    for seed in range(5):
        mask, info = face_mask((25, 25), None, np.random.default_rng(seed))
        assert 0.15 <= info["mask_area_fraction"] <= 0.8
    # Without deformation the shape is fixed: only the edge softness is random.
    a, ia = face_mask((25, 25), None, np.random.default_rng(1), deform=False)
    b, ib = face_mask((25, 25), None, np.random.default_rng(2), deform=False)
    assert ia["axes"] == ib["axes"] and ia["morph"] == ib["morph"] == "none"
    assert ((a >= 0.999) <= (b > 0)).all() or ((b >= 0.999) <= (a > 0)).all()


# ---------------------------------------------------------------------------------------------
# self_blend


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_self_blend_deterministic(astronaut, use_landmarks):
    face, lm = astronaut
    pts = lm if use_landmarks else None
    img1, info1 = self_blend(face, pts, np.random.default_rng(7))
    img2, info2 = self_blend(face, pts, np.random.default_rng(7))
    img3, info3 = self_blend(face, pts, np.random.default_rng(8))
    assert img1.dtype == np.uint8 and img1.shape == face.shape
    assert img1.tobytes() == img2.tobytes() and info1 == info2
    assert img1.tobytes() != img3.tobytes() and info1 != info3
    assert_json(info1)
    assert info1["kind"] == "self_blend" and info1["blend_ratio"] in BLEND_RATIOS
    for key in ("mask", "color", "filter", "warp"):
        assert key in info1


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_self_blend_changes_only_inside_mask(astronaut, use_landmarks):
    face, lm = astronaut
    for seed in range(6):
        img, mask, info = self_blend(face, lm if use_landmarks else None,
                                     np.random.default_rng(seed), return_mask=True)
        assert mask.shape == face.shape[:2]
        assert mask.max() <= info["blend_ratio"] + 1e-6
        diff = np.abs(img.astype(np.int16) - face.astype(np.int16)).sum(-1)
        assert (diff[mask == 0] == 0).all()  # outside the mask the real face is untouched
        inside = diff[mask >= 0.5 * mask.max()].mean()
        assert inside > 3.0
        assert info["mask_area_fraction"] == pytest.approx(float(mask.mean()))
        assert 0.05 <= info["mask_area_fraction"] <= 0.8


def test_self_blend_tiny_lfw(lfw):
    for i in range(10):
        img, mask, info = self_blend(lfw[i], None, np.random.default_rng(i), return_mask=True)
        assert img.shape == (25, 25, 3) and img.dtype == np.uint8
        diff = np.abs(img.astype(np.int16) - lfw[i]).sum(-1)
        assert (diff[mask == 0] == 0).all() and diff[mask > 0].mean() > 0
        assert_json(info)


# ---------------------------------------------------------------------------------------------
# color_transfer


def test_color_transfer_moves_lab_means_to_reference(astronaut):
    face, lm = astronaut
    ref = np.ascontiguousarray(data.chelsea()[60:220, 100:230])  # a real, very different palette
    out = color_transfer(face, ref)
    assert out.dtype == np.uint8 and out.shape == face.shape
    before = np.linalg.norm(lab_mean(face) - lab_mean(ref))
    after = np.linalg.norm(lab_mean(out) - lab_mean(ref))
    assert after < 0.25 * before

    mask, _ = face_mask(face.shape[:2], lm, np.random.default_rng(0))
    out_m = color_transfer(face, ref, mask)
    before_m = np.linalg.norm(lab_mean(face, mask) - lab_mean(ref, mask))
    after_m = np.linalg.norm(lab_mean(out_m, mask) - lab_mean(ref, mask))
    assert after_m < 0.25 * before_m


def test_color_transfer_keeps_grey_faces_grey(lfw):
    out = color_transfer(lfw[0], lfw[1])
    assert np.abs(out.astype(np.int16).max(-1) - out.min(-1)).max() <= 2
    assert abs(lab_mean(out)[0] - lab_mean(lfw[1])[0]) < abs(lab_mean(lfw[0])[0]
                                                               - lab_mean(lfw[1])[0]) + 0.5


# ---------------------------------------------------------------------------------------------
# face_swap


def test_face_swap_alpha_keeps_target_outside_mask(astronaut, lfw):
    face, lm = astronaut
    out, mask, info = face_swap(face, lm, lfw[3], None, np.random.default_rng(0),
                                method="alpha", return_mask=True)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert info["composite"] == "alpha" and info["alignment"]["align"] == "resize"
    diff = np.abs(out.astype(np.int16) - face.astype(np.int16)).sum(-1)
    assert (diff[mask == 0] == 0).all()
    assert diff[mask > 0.9].mean() > 10
    assert 0.15 <= info["mask_area_fraction"] <= 0.8
    assert_json(info)


def test_face_swap_seamless_on_astronaut(astronaut):
    face, lm = astronaut
    src, src_lm = flipped(face, lm)
    out, mask, info = face_swap(face, lm, src, src_lm, np.random.default_rng(3),
                                method="seamless", return_mask=True)
    assert info["composite"] == "seamless" and info["fallback_reason"] is None
    assert info["alignment"]["align"] == "similarity"
    assert info["alignment"]["scale"] == pytest.approx(1.0, abs=0.05)
    diff = np.abs(out.astype(np.int16) - face.astype(np.int16)).sum(-1)
    assert diff[mask > 0.9].mean() > 5
    assert (diff[mask == 0] == 0).all()
    border = np.ones(mask.shape, bool)
    border[3:-3, 3:-3] = False
    assert diff[border].mean() < 1.0
    assert_json(info)


def test_face_swap_falls_back_on_tiny_lfw(lfw):
    out, mask, info = face_swap(lfw[0], None, lfw[1], None, np.random.default_rng(0),
                                method="seamless", return_mask=True)
    assert out.shape == (25, 25, 3)
    assert info["method_chosen"] == "seamless" and info["composite"] == "alpha"
    assert info["fallback_reason"]
    diff = np.abs(out.astype(np.int16) - lfw[0]).sum(-1)
    assert (diff[mask == 0] == 0).all() and diff[mask > 0.9].mean() > 0
    assert_json(info)


def test_face_swap_sizes_and_determinism(astronaut, lfw):
    face, lm = astronaut
    big_on_small, info = face_swap(lfw[5], None, face, lm, np.random.default_rng(1))
    assert big_on_small.shape == (25, 25, 3)
    assert_json(info)
    runs = [face_swap(face, lm, lfw[7], None, np.random.default_rng(s)) for s in (4, 4, 5)]
    assert runs[0][0].tobytes() == runs[1][0].tobytes() and runs[0][1] == runs[1][1]
    assert runs[0][0].tobytes() != runs[2][0].tobytes()


def test_face_swap_auto_draws_both_methods(astronaut, lfw):
    face, lm = astronaut
    chosen = {face_swap(face, lm, lfw[s], None, np.random.default_rng(s))[1]["method_chosen"]
              for s in range(8)}
    assert chosen == {"seamless", "alpha"}


# ---------------------------------------------------------------------------------------------
# validation


def test_invalid_inputs_raise(astronaut, lfw):
    face, lm = astronaut
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="uint8"):
        self_blend(face.astype(np.float32), lm, rng)
    with pytest.raises(ValueError, match="HxWx3"):
        self_blend(face[..., 0], lm, rng)
    with pytest.raises(ValueError, match="HxWx3"):
        face_swap(face, lm, np.dstack([lfw[0], lfw[0][..., :1]]), None, rng)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        self_blend(face, lm[:4], rng)
    with pytest.raises(ValueError, match="source_landmarks"):
        face_swap(face, lm, face, lm.ravel(), rng)
    with pytest.raises(ValueError, match="auto, seamless, alpha"):
        face_swap(face, lm, face, lm, rng, method="poisson")
    with pytest.raises(ValueError, match="shape_hw"):
        face_mask((0, 10), None, rng)
    with pytest.raises(ValueError, match="mask"):
        color_transfer(face, face, np.ones((10, 10), np.float32))
    with pytest.raises(ValueError, match="numpy array"):
        color_transfer(face.tolist(), face)
    with pytest.raises(TypeError, match="Generator"):
        self_blend(face, lm, 0)
