"""Face finding, face corpora, the face-forgery detector and video verdicts, end to end with the
real classes at tiny sizes (MTCNN from the facenet-pytorch wheel, OpenCV cascades, MJPEG)."""

from __future__ import annotations

import json
from pathlib import Path

import facenet_pytorch  # noqa: F401  (installed by scripts/setup.sh: missing is a failure)
import numpy as np
import pytest

from detect.core.errors import ConfigError
from detect.face.find import Face, FaceFinder, crop_face

FACE_RECIPE = Path(__file__).parent.parent / "datasets" / "recipes" / "faces-tiny-test.toml"


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_mtcnn_finds_the_astronaut_with_landmarks(astronaut):
    faces = FaceFinder("mtcnn").find(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.backend == "mtcnn" and f.score > 0.99
    assert _iou(f.box, (181, 62, 268, 172)) > 0.8
    assert f.landmarks.shape == (5, 2)
    (lx, _), (rx, _) = f.landmarks[:2]
    assert lx < rx  # image-left eye first


def test_haar_fallback_agrees_with_mtcnn(astronaut):
    m = FaceFinder("mtcnn").find(astronaut)[0]
    h = FaceFinder("haar").find(astronaut)
    assert h and h[0].backend == "haar"
    assert _iou(h[0].box, m.box) > 0.5


def test_no_face_in_a_photo_without_one():
    from skimage import data

    assert FaceFinder("mtcnn").find(data.coffee()) == []
    assert FaceFinder("mtcnn").find(np.zeros((10, 10, 3), np.uint8)) == []  # below min_face


def test_finder_errors():
    with pytest.raises(ConfigError, match="backend"):
        FaceFinder("dlib")
    with pytest.raises(ConfigError, match="not found"):
        FaceFinder("haar", cascade="nope.xml").find(np.zeros((64, 64, 3), np.uint8))


def test_crop_is_aligned_and_reproducible_from_its_record(astronaut):
    import cv2

    face = FaceFinder("mtcnn").find(astronaut)[0]
    crop = crop_face(astronaut, face, 64, margin=0.1)
    assert crop.pixels.shape == (64, 64, 3)
    (lx, ly), (rx, ry) = crop.landmarks[:2]
    assert abs(ly - ry) < 0.5  # eyes level after alignment
    assert 0 < lx < rx < 64
    rec = json.loads(json.dumps(crop.record))  # JSON-able, as stored in provenance
    matrix = np.array(rec["matrix"])
    assert matrix.shape == (2, 3) and rec["interpolation"] == "area"  # 64 px from a ~100 px box
    # The stored matrix is the crop's own, rounded to 6 decimals: it maps the face's landmarks
    # onto the crop's to within that rounding (5e-7 x coordinates of a few hundred px, < 1e-3).
    pts = np.c_[face.landmarks, np.ones(len(face.landmarks))]
    np.testing.assert_allclose(pts @ matrix.T, crop.landmarks, atol=1e-3)
    # Re-warping from the record redoes the crop. Not bit for bit: OpenCV's warp quantises
    # source coordinates to 1/32 px in fixed point, so the 1e-6 rounding can move a pixel into
    # the next sub-pixel bin and change it by a few grey levels at a sharp edge (2 seen here
    # and elsewhere; how many and where depends on the build). What must hold: almost every
    # value is within one level. Measured here: mean 0.002, 99th percentile 0, 0.05% above 1
    # level, and no worse for any matrix within the rounding; a matrix off by only 1/4 px
    # gives mean 3.9, 99th percentile 26 and 63% above one level, so these bounds still tell a
    # faithful record from a wrong one.
    interp = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}[rec["interpolation"]]
    again = cv2.warpAffine(astronaut, matrix, (64, 64), flags=interp,
                           borderMode=cv2.BORDER_REFLECT_101)
    diff = np.abs(again.astype(int) - crop.pixels)
    assert diff.mean() < 0.1, diff.mean()
    assert np.percentile(diff, 99) <= 1, np.percentile(diff, 99)
    assert (diff > 1).mean() < 0.01, (diff > 1).mean()
    # a face at the picture's edge still gives a full crop (mirrored border)
    edge = Face((-10.0, -10.0, 40.0, 40.0), 1.0, "test")
    assert crop_face(astronaut, edge, 32).pixels.shape == (32, 32, 3)


# --------------------------------------------------------------------------- corpus


def test_face_corpus_splits_by_identity(tiny_face_corpus):
    c = tiny_face_corpus
    assert c.header["faces"]["size"] == 32 and c.header["faces"]["grey"] is True
    split_of_group: dict[str, set[str]] = {}
    for r in c.records:
        if r.modality == "image":
            split_of_group.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of_group.values())  # no face in two splits
    swaps = [r for r in c.records if r.provenance.get("generator") == "face-swap"
             and r.modality == "image"]
    assert swaps and {r.split for r in swaps} == {"test"}  # held out
    for r in swaps:
        assert r.provenance["params"]["source"] != r.provenance["params"]["target"]
    sbi = [r for r in c.records if r.provenance.get("generator") == "face-sbi"
           and r.modality == "image"]
    assert {r.split for r in sbi} == {"train", "calib", "test"}
    assert "mask" in sbi[0].provenance["params"]["forgery"]
    # every item is a 32 px crop
    img = next(iter(c.filter(lambda r: r.modality == "image").iter_items()))
    assert img.content.shape == (32, 32, 3)


def test_face_corpus_clips_are_labelled_per_frame(tiny_face_corpus):
    from detect.io.video import decoded

    clips = tiny_face_corpus.filter(lambda r: r.modality == "video")
    assert len(clips) == 6
    for r, item in zip(clips.records, clips.iter_items(), strict=True):
        labels = r.provenance["params"]["frame_labels"]
        assert len(labels) == 6 and r.label == int(any(labels))
        v = decoded(item)
        assert len(v.frames) == 6 and v.frames[0].shape == (96, 128, 3)
    assert sorted(r.label for r in clips.records) == [0, 0, 0, 1, 1, 1]


def test_face_corpus_is_reproducible(tiny_face_corpus, tmp_path):
    from generators.recipe import build


    again = build(FACE_RECIPE, tmp_path / "again", progress=False)
    assert again.content_hash == tiny_face_corpus.content_hash


def test_face_recipe_errors(tmp_path):
    from generators.recipe import load_recipe


    text = FACE_RECIPE.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('method = "sbi"', 'method = "morph"'))
    with pytest.raises(ConfigError, match="unknown method 'morph'"):
        load_recipe(bad)
    bad.write_text(text.replace('held_out = ["swap"]', 'held_out = ["sbi", "swap"]'))
    with pytest.raises(ConfigError, match="every forgery"):
        load_recipe(bad)
    bad.write_text(text.replace("[face]", "[face]\ncolor = 1"))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['color'\]"):
        load_recipe(bad)


# --------------------------------------------------------------------------- detector


def test_face_detector_learns(tiny_face_corpus):
    """Enough epochs on the tiny corpus separate its train faces: the network and the crops
    carry the signal (held-out performance is the benchmark's job, on a real-size corpus)."""
    from benchmarks.metrics import auroc
    from detect.core.registry import detectors

    det = detectors.create("face-test", epochs=60, timm_kwargs={"width": 8}).fit(
        tiny_face_corpus)
    train = tiny_face_corpus.split("train").filter(lambda r: r.modality == "image")
    crops = np.stack([it.content for it in train.iter_items()])
    assert auroc(train.labels, det.score_crops(crops)) > 0.8  # chance: 0.5 +- 0.07


def test_face_model_saves_and_loads(face_model, tiny_face_corpus):
    from detect.core.detector import load_detector

    det = load_detector(face_model)
    cfg = json.loads((face_model / "config.json").read_text())
    assert cfg["state"]["grey"] is True and "video_calibration" in cfg["state"]
    assert det.video_calibration_.n_real + det.video_calib_faceless_ >= 1
    crops = np.stack([it.content for it in tiny_face_corpus.split("calib").filter(
        lambda r: r.modality == "image").iter_items()])
    np.testing.assert_allclose(det.score_crops(crops), det.calib_scores_, atol=1e-5)


def _png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


def test_scan_photo_with_and_without_a_face(face_model, trained_models, astronaut, tmp_path):
    from skimage import data

    from detect.app.scan import ScanOptions, scan_item
    from detect.core.models import load_detectors
    from detect.io.media import load

    dets = load_detectors(model_dirs=[face_model, trained_models["spectrum-test"]])
    # the tiny models' calibration splits hold tens of reals: at 1% the face rule abstains,
    # says why and steps aside; at an FPR both rules support, the face detector decides
    at_1 = scan_item(load(_png(tmp_path / "a.png", astronaut)), dets,
                     ScanOptions(watermarks=False))
    assert at_1.detectors["face-test"]["decides"] is False
    assert "real samples" in at_1.detectors["face-test"]["reason"]
    fpr = max(d.calibration_for().supports_fpr for d in dets)
    assert fpr < 0.5, fpr
    f = scan_item(load(tmp_path / "a.png"), dets, ScanOptions(target_fpr=fpr, watermarks=False))
    res = f.detectors["face-test"]
    assert f.decided_by == "face-test" and f.verdict == res["verdict"]
    assert res["n_faces"] == 1 and len(res["faces"]) == 1
    face = res["faces"][0]
    assert _iou(face["box"], (181, 62, 268, 172)) > 0.8
    assert face["verdict"] in ("synthetic", "real", "uncertain")

    g = scan_item(load(_png(tmp_path / "c.png", data.coffee())), dets,
                  ScanOptions(target_fpr=fpr, watermarks=False))
    res = g.detectors["face-test"]
    assert res["reason"] == "no face found" and res["verdict"] == "uncertain"
    assert res["score"] is None and g.error is None
    assert g.decided_by == "spectrum-test"  # the image detectors decide instead

    only_faces = load_detectors(model_dirs=[face_model])
    h = scan_item(load(tmp_path / "c.png"), only_faces, ScanOptions(watermarks=False))
    assert h.verdict == "uncertain" and h.error is None  # never "error", never "real"


def test_scan_and_inspect_a_video(face_model, tiny_face_corpus, tmp_path, capsys):
    import shutil

    from detect.cli import main

    clip = next(r for r in tiny_face_corpus.records
                if r.modality == "video" and "astronaut" in r.provenance["source"])
    video = tmp_path / "clip.avi"
    shutil.copy(tiny_face_corpus.root / clip.path, video)
    bad = tmp_path / "broken.avi"
    bad.write_bytes(video.read_bytes()[: len(video.read_bytes()) * 2 // 5])
    from detect.core.detector import load_detector

    # the tiny corpus has a handful of calib clips: scan at an FPR its video rule supports
    fpr = load_detector(face_model).video_calibration_for().supports_fpr
    assert fpr < 1, fpr
    code = main(["-q", "scan", str(video), str(bad), "-m", str(face_model), "--frames", "4",
                 "--fail-on", "never", "--target-fpr", f"{min(0.99, fpr * 1.01):.4f}"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 2 and len(lines) == 2  # one input could not be scanned, nothing flagged
    rec, err = lines
    assert rec["modality"] == "video" and rec["decided_by"] == "face-test"
    res = rec["detectors"]["face-test"]
    assert res["calibration"]["rule"] == "video" and len(res["frames"]) == 4
    assert res["frames_with_face"] >= 3 and rec["verdict"] in ("synthetic", "real", "uncertain")
    assert [e["index"] for e in res["frames"]] == [0, 2, 3, 5]
    assert err["verdict"] == "error" and "broken.avi" in err["error"]

    png = tmp_path / "timeline.png"
    assert main(["inspect", str(video), "-m", str(face_model), "--timeline", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timeline"] == str(png) and png.stat().st_size > 5000
    assert report["meta"]["codec"] == "MJPG" and report["meta"]["frame_count"] == 6
    assert len(report["detectors"]["face-test"]["frames"]) == 16 or \
        len(report["detectors"]["face-test"]["frames"]) == 6  # every frame of a 6-frame clip


def test_image_detectors_on_a_video_average_its_frames(trained_models, tiny_face_corpus):
    from detect.core.detector import load_detector
    from detect.io.media import Limits
    from detect.io.video import FrameSampling, decode_item

    det = load_detector(trained_models["spectrum-test"])
    clips = tiny_face_corpus.filter(lambda r: r.modality == "video")
    item = decode_item(next(iter(clips.iter_items())), Limits(), FrameSampling(n=3))
    assert det.applies_to(item)
    per_frame = det.score(item.content.frames)
    assert det.score([item])[0] == pytest.approx(per_frame.mean())


def test_real_faces_from_a_users_folder(astronaut, tmp_path):
    from generators.faces.sources import real_faces

    _png(tmp_path / "me.png", astronaut)
    _png(tmp_path / "empty.png", np.full((64, 64, 3), 128, np.uint8))
    faces = real_faces(f"folder:{tmp_path}", FaceFinder("mtcnn"))
    assert len(faces) == 1 and faces[0].group.endswith("me.png")
    assert faces[0].face.landmarks is not None
    with pytest.raises(ConfigError, match="unknown real-face source"):
        real_faces("celeba", FaceFinder("mtcnn"))
