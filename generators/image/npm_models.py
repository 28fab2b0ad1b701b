"""Pretrained networks whose weights ship inside npm packages, as generators of real-world
fakes: UpscalerJS's ``esrgan-medium`` (:class:`UpscalerESRGAN`, in fact an RDN), whose aligned
fake is a photo downscaled by the model's scale and super-resolved back.

The packages hold TensorFlow.js *layers* models (model.json: the Keras topology and a weights
manifest; .bin shards: the raw weights). :func:`read_tfjs` reads them and :func:`keras_graph`
runs the topology in torch, for the layer types these models use; no JavaScript is run. The
tarballs come from the npm registry (``npm pack``, scripts/setup.sh) and are unpacked under
``<venv>/share/unmask/npm`` (or ``$UNMASK_NPM_MODELS``); the provenance records package,
version, licence and the weights' sha256.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from generators.base import check_device, torch_device

from .base import file_sha256
from .packaged import SuperResolver

NPM_ENV = "UNMASK_NPM_MODELS"
_DTYPES: dict[str, Any] = {"float32": np.float32, "int32": np.int32}
_QUANTISED: dict[str, Any] = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def npm_folder(package: str) -> Path:
    """Where ``npm pack`` of ``package`` is unpacked: ``$UNMASK_NPM_MODELS/<dir>`` or
    ``<sys.prefix>/share/unmask/npm/<dir>``, ``<dir>`` the name with ``@`` dropped and ``/``
    made ``-`` (``@upscalerjs/esrgan-medium`` -> ``upscalerjs-esrgan-medium``); the tarball's
    ``package/`` folder lies inside."""
    root = os.environ.get(NPM_ENV) or Path(sys.prefix) / "share" / "unmask" / "npm"
    return Path(root) / package.lstrip("@").replace("/", "-")


def read_tfjs(model_json: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(Keras model config, layer weight name -> float32 array) of a TensorFlow.js layers model.
    The shards of each manifest group are concatenated and the weights read in manifest order;
    quantised weights (uint8 / uint16 with ``scale`` and ``min``, float16) are dequantised. A
    ModelError naming the file when it is malformed or the shards' sizes do not add up."""
    try:
        spec = json.loads(model_json.read_text(encoding="utf-8"))
        topology = spec["modelTopology"]
        config = topology.get("model_config", topology)
        config["config"]["layers"]  # noqa: B018 - checked here, used by keras_graph
        return config, _read_weights(model_json, spec["weightsManifest"])
    except OSError as e:
        raise ModelError(f"{model_json}: cannot read it or a weight shard ({e})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"{model_json}: not a TensorFlow.js layers model ({e!r})") from None


def _read_weights(model_json: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        shards = [model_json.parent / p for p in group["paths"]]
        blob, off = b"".join(p.read_bytes() for p in shards), 0
        where = ", ".join(str(p) for p in shards)
        for w in group["weights"]:
            q, shape = w.get("quantization"), tuple(int(d) for d in w["shape"])
            dtype = _QUANTISED.get(q["dtype"]) if q else _DTYPES.get(w["dtype"])
            if dtype is None:
                raise ModelError(f"{model_json}: weight {w['name']} has unsupported dtype "
                                 f"{(q or w)['dtype']!r}")
            n = math.prod(shape)
            size = n * np.dtype(dtype).itemsize
            if off + size > len(blob):
                raise ModelError(f"{where}: {len(blob)} bytes, too short for weight {w['name']} "
                                 f"(needs {off + size})")
            a = np.frombuffer(blob, dtype, n, off).astype(np.float32)
            if q and q["dtype"] != "float16":
                a = a * np.float32(q["scale"]) + np.float32(q["min"])
            weights[w["name"]] = a.reshape(shape)
            off += size
        if off != len(blob):
            raise ModelError(f"{where}: {len(blob) - off} bytes left after the weights listed in "
                             f"{model_json}")
    return weights


def _activation(name: str, where: str) -> Any:
    import torch
    import torch.nn.functional as F

    acts = {"linear": None, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    if name not in acts:
        raise ModelError(f"{where}: activation {name!r} is not supported here")
    return acts[name]


def _depth_to_space(x: Any, r: int) -> Any:
    """TF ``depth_to_space`` (NHWC, channels ordered (row, column, channel)) on an NCHW tensor:
    ``out[n, c, h*r+i, w*r+j] = x[n, (i*r+j)*C + c, h, w]`` (torch's pixel_shuffle orders the
    input channels (c, i, j) instead)."""
    n, rrc, h, w = x.shape
    c = rrc // (r * r)
    return x.view(n, r, r, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * r, w * r)


def keras_graph(config: dict[str, Any], weights: dict[str, np.ndarray], where: str) -> Any:
    """A torch module computing the Keras functional (or Sequential) model ``config`` on NCHW
    tensors, with ``weights`` (each must be used). Layers understood: InputLayer, Conv2D (stride
    1, padding same / valid), Activation, ReLU, LeakyReLU, Add, Concatenate (on channels),
    UpSampling2D (nearest) and UpscalerJS's custom PixelShuffle<r>x (TF depth_to_space); any
    other one, or a malformed config, is a ModelError naming it and ``where``."""
    try:
        return _keras_graph(config["config"], dict(weights), where)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ModelError(f"{where}: malformed Keras topology ({e!r})") from None


def _keras_graph(cfg: dict[str, Any], weights: dict[str, np.ndarray], where: str) -> Any:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    convs, steps, inputs, prev = nn.ModuleDict(), [], [], None
    for layer in cfg["layers"]:
        kind, c = layer["class_name"], layer.get("config", {})
        name, nodes = layer.get("name") or c["name"], layer.get("inbound_nodes")
        if nodes is not None and len(nodes) > 1:
            raise ModelError(f"{where}: layer {name} is shared (called {len(nodes)} times)")
        srcs = [t[0] for t in sum(nodes, [])] if nodes else [prev or "<input>"]  # or Sequential
        prev = name
        if c.get("data_format", "channels_last") != "channels_last":
            raise ModelError(f"{where}: layer {name} is channels_first: not supported here")
        if kind == "InputLayer":
            inputs.append(name)
            continue
        if kind == "Conv2D":
            if tuple(c.get("strides", (1, 1))) != (1, 1) or c["padding"] not in ("same", "valid"):
                raise ModelError(f"{where}: Conv2D {name}: only stride 1 with padding same or "
                                 "valid is supported")
            try:
                k = weights.pop(f"{name}/kernel")
                b = weights.pop(f"{name}/bias") if c.get("use_bias", True) else None
            except KeyError as e:
                raise ModelError(f"{where}: no weight {e} for Conv2D {name}") from None
            conv = nn.Conv2d(k.shape[2], k.shape[3], tuple(k.shape[:2]), padding=c["padding"],
                             dilation=tuple(c.get("dilation_rate", (1, 1))), bias=b is not None)
            with torch.no_grad():  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
                conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
                if b is not None:
                    conv.bias.copy_(torch.from_numpy(b))
            convs[key := f"c{len(convs)}"] = conv
            op: tuple[Any, ...] = ("conv", key, _activation(c.get("activation", "linear"), where))
        elif kind == "Activation":
            op = ("fn", _activation(c["activation"], where))
        elif kind == "ReLU" and not any(c.get(a) for a in ("max_value", "negative_slope",
                                                           "threshold")):
            op = ("fn", F.relu)
        elif kind == "LeakyReLU":
            op = ("fn", lambda x, a=float(c.get("alpha", 0.3)): F.leaky_relu(x, a))
        elif kind in ("Add", "Concatenate") and c.get("axis", -1) in (-1, 3):
            op = (kind.lower(),)
        elif kind == "UpSampling2D" and c.get("interpolation", "nearest") == "nearest":
            op = ("fn", lambda x, s=tuple(c["size"]): F.interpolate(x, scale_factor=s,
                                                                    mode="nearest"))
        elif m := re.fullmatch(r"PixelShuffle(\d+)x", kind):
            op = ("fn", lambda x, r=int(m.group(1)): _depth_to_space(x, r))
        else:
            raise ModelError(f"{where}: layer {name} of type {kind} is not supported here "
                             f"(config {c})")
        steps.append((name, op, srcs))
    if weights:
        raise ModelError(f"{where}: weights no layer uses: {', '.join(sorted(weights))}")
    inputs, outs = inputs or ["<input>"], [t[0] for t in cfg.get("output_layers", [])] or [prev]
    if len(inputs) != 1 or len(outs) != 1:
        raise ModelError(f"{where}: only models with one input and one output are supported")
    return _graph_class()(convs, steps, inputs[0], outs[0])


@functools.cache
def _graph_class() -> Any:
    """The torch module class of :func:`keras_graph` (made on first use, so that importing this
    module does not import torch)."""
    import torch

    class KerasGraph(torch.nn.Module):
        """Runs ``steps`` (name, op, input names) in order, freeing each tensor after its last
        use; NCHW throughout (the Keras model's channels-last axis is dim 1 here)."""

        def __init__(self, convs: Any, steps: list[Any], inp: str, out: str) -> None:
            super().__init__()
            self.convs, self.steps, self.inp, self.out = convs, steps, inp, out
            self.last = {s: i for i, (_, _, srcs) in enumerate(steps) for s in srcs}

        def forward(self, x: Any) -> Any:
            env = {self.inp: x}
            for i, (name, op, srcs) in enumerate(self.steps):
                args = [env[s] for s in srcs]
                if op[0] == "conv":
                    y = self.convs[op[1]](args[0])
                    y = op[2](y) if op[2] else y
                elif op[0] == "fn":
                    y = op[1](args[0]) if op[1] else args[0]
                elif op[0] == "add":
                    y = sum(args[1:], args[0])
                else:
                    y = torch.cat(args, 1)
                for s in srcs:
                    if self.last[s] == i and s != self.out:
                        env.pop(s, None)
                env[name] = y
            return env[self.out]

    return KerasGraph


class UpscalerESRGAN(SuperResolver):
    """UpscalerJS's ``esrgan-medium`` (npm ``@upscalerjs/esrgan-medium`` 1.0.0, MIT): an RDN
    (10 residual dense blocks of 64 channels, nearest upsampling then a 3x3 convolution), one
    model per ``scale`` (2, 3, 4, 8). It takes and gives pixels in 0-255 (UpscalerJS's
    ``inputRange`` / ``outputRange`` for it), clipped to that range. Inputs larger than ``tile``
    pixels run in tiles seeing ``tile_pad`` pixels of their neighbours: enough for its receptive
    field (18 input pixels), so tiling changes nothing but the float rounding."""

    name = "esrgan-medium-x4"
    package, version = "@upscalerjs/esrgan-medium", "1.0.0"
    dist = package
    scales = (2, 3, 4, 8)

    def __init__(self, *, scale: int = 4, kernel: str = "bicubic", tile: int = 128,
                 tile_pad: int = 20, device: str = "cpu"):
        if scale not in self.scales:
            raise ConfigError(f"scale must be one of {self.scales}, got {scale!r}")
        if tile < 8 or tile_pad < 0:
            raise ConfigError(f"tile must be >= 8 and tile_pad >= 0, got {tile}, {tile_pad}")
        self.scale, self.kernel = scale, self._check_kernel(kernel)
        self.tile, self.tile_pad = tile, tile_pad
        self.weights = f"models/x{scale}/model.json"
        self.device = check_device(device, self.name)

    def locate(self) -> Path:
        """model.json of the installed package; a ModelError saying how to install it."""
        dest = npm_folder(self.package)
        path = dest / "package" / self.weights
        if not path.is_file():
            raise ModelError(f"npm package {self.package}@{self.version} is not installed (no "
                             f"{path}; {NPM_ENV} moves it): mkdir -p {dest} && cd {dest} && npm "
                             f"pack {self.package}@{self.version} && tar xzf *.tgz && rm *.tgz "
                             "(scripts/setup.sh does)")
        return path

    def prepare(self) -> UpscalerESRGAN:
        if not hasattr(self, "net_"):
            path = self.locate()
            root = path.parents[2]
            try:
                meta = json.loads((root / "package.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ModelError(f"{root / 'package.json'}: unreadable ({e})") from None
            if meta.get("version") != self.version:
                print(f"unmask: warning: {self.package} {meta.get('version')} installed, not "
                      f"{self.version}", file=sys.stderr)
            config, weights = read_tfjs(path)
            net = keras_graph(config, weights, str(path))
            shards = sorted(path.parent.glob("group*-shard*.bin"))
            shard = shards[0] if len(shards) == 1 else path  # one shard here; else the manifest
            self.checkpoint_sha256_ = file_sha256(shard)
            self.package_ = {"package": self.package, "version": meta.get("version"),
                             "licence": meta.get("license"),
                             "weights": shard.relative_to(root).as_posix()}
            self.net_ = net.eval().to(torch_device(self.device, self.name))
        return self

    def model_params(self) -> dict[str, Any]:
        return {**super().model_params(), "architecture": "rdn"}

    def _run(self, x: Any) -> Any:
        return self.net_(x * 255.0).clamp(0, 255) / 255.0

    def _upscale(self, x: Any) -> Any:
        """x``scale`` of a (1, 3, h, w) tensor in 0-1, whole or in tiles."""
        return self._tiled(x, self._run)
