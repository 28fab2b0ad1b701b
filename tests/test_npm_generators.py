"""Pretrained generators whose weights ship in npm packages (generators/image/npm_models.py):
the TensorFlow.js layers-model reader and Keras-graph runner, pinned on a tiny hand-computed
model, and UpscalerJS's esrgan-medium (an RDN) checked against the package's own tfjs outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.core.errors import ConfigError, ModelError
from detect.core.registry import generators
from generators.image import npm_models

PACKAGE = npm_models.npm_folder(npm_models.UpscalerESRGAN.package) / "package"
needs_package = pytest.mark.skipif(
    not (PACKAGE / "models" / "x4" / "model.json").is_file(),
    reason=f"npm package @upscalerjs/esrgan-medium not installed in {PACKAGE} "
           "(scripts/setup.sh installs it with npm)")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-9)))


def _layer(kind: str, name: str, inbound: list[str], **config: object) -> dict:
    return {"class_name": kind, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else []}


def _tiny_model(tmp_path, *, extra_bytes: bytes = b"", last: str = "PixelShuffle2x"):
    """Input (3 channels) -> Conv2D 3x3 same (3 -> 12, ReLU) -> PixelShuffle2x: the bias
    stored first and uint8-quantised (as tfjs writes them), the kernel float32."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 12)).astype(np.float32)  # Keras (kh, kw, in, out)
    q = np.arange(12, dtype=np.uint8) * 10
    bias = q.astype(np.float32) * np.float32(0.05) + np.float32(-2.0)
    layers = [_layer("InputLayer", "LR", [], batch_input_shape=[None, None, None, 3]),
              _layer("Conv2D", "conv", ["LR"], filters=12, kernel_size=[3, 3], strides=[1, 1],
                     padding="same", activation="relu", use_bias=True,
                     data_format="channels_last", dilation_rate=[1, 1]),
              _layer(last, "shuffle", ["conv"])]
    spec = {"format": "layers-model", "modelTopology": {"model_config": {
        "class_name": "Functional", "config": {"name": "tiny", "layers": layers,
                                               "input_layers": [["LR", 0, 0]],
                                               "output_layers": [["shuffle", 0, 0]]}}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [
            {"name": "conv/bias", "shape": [12], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.05, "min": -2.0}},
            {"name": "conv/kernel", "shape": [3, 3, 3, 12], "dtype": "float32"}]}]}
    (tmp_path / "model.json").write_text(json.dumps(spec))
    (tmp_path / "group1-shard1of1.bin").write_bytes(q.tobytes() + kernel.tobytes() + extra_bytes)
    return tmp_path / "model.json", kernel, bias


def test_tfjs_reader_and_graph_match_a_hand_computed_conv_and_depth_to_space(tmp_path):
    import torch

    path, kernel, bias = _tiny_model(tmp_path)
    config, weights = npm_models.read_tfjs(path)
    np.testing.assert_array_equal(weights["conv/kernel"], kernel)
    np.testing.assert_allclose(weights["conv/bias"], bias, rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(5, 4, 3)).astype(np.float32)  # H, W, C
    # by hand, in NHWC as TF computes it: zero-padded 3x3 convolution, bias, ReLU ...
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    conv = np.zeros((5, 4, 12), np.float32)
    for h in range(5):
        for w in range(4):
            conv[h, w] = np.einsum("yxi,yxio->o", xp[h:h + 3, w:w + 3], kernel) + bias
    conv = np.maximum(conv, 0)
    # ... then depth_to_space (block 2): out[2h+i, 2w+j, c] = in[h, w, (2i+j)*3 + c]
    want = np.zeros((10, 8, 3), np.float32)
    for h in range(5):
        for w in range(4):
            for i in range(2):
                for j in range(2):
                    want[2 * h + i, 2 * w + j] = conv[h, w, (2 * i + j) * 3:(2 * i + j + 1) * 3]
    net = npm_models.keras_graph(config, weights, str(path))
    with torch.no_grad():
        got = net(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # torch's pixel_shuffle orders the channels (c, i, j): it would not give TF's answer
    with torch.no_grad():
        conv_t = torch.from_numpy(conv).permute(2, 0, 1)[None]
        wrong = torch.nn.functional.pixel_shuffle(conv_t, 2)[0].permute(1, 2, 0).numpy()
    assert not np.allclose(wrong, want, atol=1e-3)


def test_tfjs_reader_names_the_file_on_size_mismatch_and_bad_layers(tmp_path):
    path, _, _ = _tiny_model(tmp_path, extra_bytes=b"\0" * 8)
    with pytest.raises(ModelError, match="group1-shard1of1.bin: 8 bytes left"):
        npm_models.read_tfjs(path)
    (tmp_path / "group1-shard1of1.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ModelError, match="group1-shard1of1.bin: 100 bytes, too short"):
        npm_models.read_tfjs(path)
    (tmp_path / "model.json").write_text("{\"modelTopology\": 3}")
    with pytest.raises(ModelError, match="model.json: not a TensorFlow.js layers model"):
        npm_models.read_tfjs(path)
    path, _, _ = _tiny_model(tmp_path, last="Lambda")
    config, weights = npm_models.read_tfjs(path)
    with pytest.raises(ModelError, match="layer shuffle of type Lambda is not supported"):
        npm_models.keras_graph(config, weights, str(path))


def test_a_missing_npm_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(npm_models.NPM_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=r"npm pack @upscalerjs/esrgan-medium@1\.0\.0") as e:
        generators.create("esrgan-medium-x4").prepare()
    assert str(tmp_path / "upscalerjs-esrgan-medium") in str(e.value)
    assert "scripts/setup.sh" in str(e.value)
    with pytest.raises(ConfigError, match="scale must be one of"):
        generators.create("esrgan-medium-x4", scale=5)


@needs_package
@pytest.mark.parametrize("scale", [2, 4])
def test_esrgan_medium_reproduces_the_packages_own_tfjs_outputs(scale):
    """The package ships a 128 px fixture and what UpscalerJS (tfjs) made of it: reading the
    weights, layouts or the 0-255 input range wrong breaks this match (an input in 0-1
    instead: up to 20 levels off; the PSNR test below would not see it)."""
    import torch
    from PIL import Image

    fixture = np.asarray(Image.open(PACKAGE / "assets" / "fixture.png").convert("RGB"))
    ref = np.asarray(Image.open(PACKAGE / "assets" / "samples" / f"{scale}x" / "result.png")
                     .convert("RGB")).astype(int)
    gen = generators.create("esrgan-medium-x4", scale=scale).prepare()
    x = torch.from_numpy(fixture.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = (gen._upscale(x) * 255).round().byte()[0].permute(1, 2, 0).numpy().astype(int)
    assert y.shape == ref.shape == (128 * scale, 128 * scale, 3)
    # measured: at most 1 level off (float rounding), on 0.002-0.01 % of the values
    assert np.abs(y - ref).max() <= 2 and np.mean(y != ref) < 0.01


@needs_package
def test_esrgan_medium_reconstructs_astronaut_crops(tmp_path):
    from PIL import Image
    from skimage import data

    img = data.astronaut()
    sr = generators.create("esrgan-medium-x4")
    for crop, bic_db in ((img[0:256, 128:384], 26.07), (img[0:128, 160:288], 25.86)):
        out = sr.reconstruct(crop)
        assert out.shape == crop.shape and out.dtype == np.uint8
        n = crop.shape[0] // 4
        bic = np.asarray(Image.fromarray(crop).resize((n, n), Image.Resampling.BICUBIC)
                         .resize(crop.shape[:2], Image.Resampling.BICUBIC))
        assert _psnr(bic, crop) == pytest.approx(bic_db, abs=0.05)
        # this RDN gives PSNR at bicubic's level, not above: measured 26.25 vs 26.07 dB (256 px
        # crop) and 25.64 vs 25.86 dB (the 128 px face); x2: 30.71 vs 30.78. Mis-read weights
        # give noise far below; the tfjs match above is the exact check.
        assert _psnr(out, crop) > bic_db - 1.0
    # tiles that see 20 input pixels around them cover the receptive field: same picture
    tiled = generators.create("esrgan-medium-x4", tile=16, tile_pad=20).reconstruct(crop)
    assert np.abs(tiled.astype(int) - out.astype(int)).max() <= 1
    s = sr.sample([0], seed=3, images=[img[0:128, 0:128]])[0]
    prov = s.provenance
    assert s.content.shape == (128, 128, 3) and prov.generator == "esrgan-medium-x4"
    assert prov.params["package"] == "@upscalerjs/esrgan-medium"
    assert prov.params["version"] == "1.0.0" and prov.params["licence"] == "MIT"
    assert prov.params["weights"] == "models/x4/group1-shard1of1.bin"
    assert prov.params["scale"] == 4 and len(prov.checkpoint_sha256) == 64
    saved = sr.save(tmp_path / "m")
    assert json.loads((saved / "config.json").read_text())["checkpoint_sha256"] == \
        prov.checkpoint_sha256
    again = type(sr).load(saved)
    assert again.scale == 4 and again.checkpoint_sha256_ == prov.checkpoint_sha256
