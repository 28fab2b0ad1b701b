"""Autoencoders whose reconstructions are "aligned" fakes: a real photograph through a decoder.

A latent-diffusion image is drawn by its autoencoder's decoder; a GAN's by its upsampling
stack. A real photo passed through such an encoder/decoder pair keeps its content, size and
format and gains only the decoder's traces, so a detector trained on (photo, reconstruction)
pairs has nothing to learn but those traces. Each family here differs only in how its decoder
upsamples, the component real generators share:

- ``kl``: diffusers' ``AutoencoderKL`` in Stable Diffusion's layout (downsampling factor 8, 4
  latent channels, nearest-neighbour resize + 3x3 convolution in the decoder), KL-regularised;
- ``transpose``: transposed convolutions (DCGAN / StyleGAN-1 style checkerboards);
- ``nearest`` / ``bilinear``: resize then convolve;
- ``pixelshuffle``: sub-pixel convolution (ESPCN, many super-resolution decoders).

The networks are fully convolutional: trained on small crops of the real train photos, they
reconstruct an image of any size whose sides are multiples of 8. ``sample(indices, seed,
images=...)`` returns the reconstructions of the given images (the generator's input, as face
forgeries take faces); ``reconstruct(array)`` does one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, ModelError
from detect.core.types import Sample
from generators.base import check_device

from .base import TorchImageGenerator, reconstructions, to_uint8

DECODERS = ("kl", "transpose", "nearest", "bilinear", "pixelshuffle")
FACTOR = 8  # three 2x stages: Stable Diffusion's latent grid


def _plain(decoder: str, width: int, latent: int) -> Any:
    """A small encoder/decoder pair with the given upsampling (factor 8, ``latent`` channels)."""
    import torch.nn as nn

    act = nn.SiLU
    enc = [nn.Conv2d(3, width, 3, 1, 1), act()]
    c = width
    for mult in (1, 2, 2):
        enc += [nn.Conv2d(c, width * mult, 4, 2, 1), act(),
                nn.Conv2d(width * mult, width * mult, 3, 1, 1), act()]
        c = width * mult
    enc += [nn.Conv2d(c, latent, 1)]
    dec = [nn.Conv2d(latent, c, 3, 1, 1), act()]
    for mult in (2, 1, 1):
        co = width * mult
        if decoder == "transpose":
            dec += [nn.ConvTranspose2d(c, co, 4, 2, 1), act()]
        elif decoder == "pixelshuffle":
            dec += [nn.Conv2d(c, 4 * co, 3, 1, 1), nn.PixelShuffle(2), act()]
        else:
            dec += [nn.Upsample(scale_factor=2, mode=decoder), nn.Conv2d(c, co, 3, 1, 1), act()]
        dec += [nn.Conv2d(co, co, 3, 1, 1), act()]
        c = co
    dec += [nn.Conv2d(c, 3, 3, 1, 1)]

    class AE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

        def forward(self, x: Any) -> Any:
            return self.decoder(self.encoder(x))

    return AE()


class Autoencoder(TorchImageGenerator):
    """An autoencoder trained here on real photo crops; its reconstructions are the fakes."""

    family = "autoencoder"
    name = "autoencoder"
    inference_modules = ("ae",)
    needs_images = True

    def __init__(self, *, decoder: str = "kl", size: int = 64, width: int = 32,
                 latent_channels: int = 4, kl_weight: float = 1e-6, steps: int = 1500,
                 batch_size: int = 16, lr: float = 1e-3, checkpoint_every: int = 250,
                 seed: int = 0, device: str = "cpu"):
        if decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if size % FACTOR:
            raise ConfigError(f"size must be a multiple of {FACTOR}, got {size}")
        self.decoder, self.size, self.width = decoder, size, width
        self.latent_channels, self.kl_weight = latent_channels, kl_weight
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.checkpoint_every, self.seed = checkpoint_every, seed
        self.device = check_device(device, self.name)

    def sampling_params(self) -> dict[str, Any]:
        return {"decoder": self.decoder, "factor": FACTOR, "latent": self.latent_channels,
                "kind": "reconstruction"}

    def _build(self) -> dict[str, Any]:
        if self.decoder != "kl":
            return {"ae": _plain(self.decoder, self.width, self.latent_channels)}
        from diffusers import AutoencoderKL

        w = self.width
        chans = (w, 2 * w, 4 * w, 4 * w)  # SD: (128, 256, 512, 512); the same shape, narrower
        return {"ae": AutoencoderKL(in_channels=3, out_channels=3,
                                    down_block_types=("DownEncoderBlock2D",) * 4,
                                    up_block_types=("UpDecoderBlock2D",) * 4,
                                    block_out_channels=chans, layers_per_block=1,
                                    latent_channels=self.latent_channels,
                                    norm_num_groups=math.gcd(w, 16), sample_size=self.size,
                                    mid_block_add_attention=False)}

    def _optimizers(self, mods: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {"ae": torch.optim.Adam(mods["ae"].parameters(), lr=self.lr)}

    def _forward(self, ae: Any, x: Any, gen: Any = None) -> tuple[Any, Any]:
        """(reconstruction, KL term or None); the KL posterior's mean at inference."""
        import torch

        if self.decoder != "kl":
            return ae(x), None
        post = ae.encode(x).latent_dist
        if gen is None:
            return ae.decode(post.mean).sample, None
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(x.device)
        kl = 0.5 * (post.mean**2 + post.var - 1.0 - post.logvar).flatten(1).sum(1).mean()
        return ae.decode(z).sample, kl

    def _train_step(self, mods: dict[str, Any], opts: dict[str, Any], real: Any,
                    gen: Any) -> dict[str, float]:
        recon, kl = self._forward(mods["ae"], real, gen)
        l1 = (recon - real).abs().mean()
        loss = l1 + (self.kl_weight * kl if kl is not None else 0.0)
        opts["ae"].zero_grad(set_to_none=True)
        loss.backward()
        opts["ae"].step()
        return {"l1": float(l1.item())}

    def _sample(self, mods: dict[str, Any], indices: list[int], seed: int) -> Any:
        raise ConfigError(f"{self.name} reconstructs images: call sample(indices, seed, "
                          "images=...) or reconstruct(image)")

    # -- reconstructions ---------------------------------------------------------------------
    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """The reconstruction of one HxWx3 uint8 image (sides cropped to multiples of 8)."""
        import torch

        if not hasattr(self, "modules_"):
            raise ModelError(f"{self.name} is not trained: call fit() or load a saved model")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ConfigError(f"{self.name}: expected an HxWx3 uint8 image, got "
                              f"{image.shape} {image.dtype}")
        h, w = (image.shape[0] // FACTOR) * FACTOR, (image.shape[1] // FACTOR) * FACTOR
        if h == 0 or w == 0:
            raise ConfigError(f"{self.name}: an image under {FACTOR} px cannot be reconstructed")
        x = torch.from_numpy(np.array(image[:h, :w])).permute(2, 0, 1)[None]  # a writable copy
        x = x.float().div(127.5).sub(1.0).to(next(self.modules_["ae"].parameters()).device)
        with torch.inference_mode():
            y, _ = self._forward(self.modules_["ae"], x)
        return to_uint8(y.clamp(-1, 1))[0]

    def sample(self, indices: Sequence[int], seed: int, total: int | None = None, *,
               images: Sequence[np.ndarray] | Mapping[int, np.ndarray] | None = None
               ) -> list[Sample]:
        """Reconstructions of ``images[i]`` for each index (a list, or a mapping index ->
        image); deterministic, no noise at inference; ``seed`` is recorded in the provenance."""
        return reconstructions(self, indices, seed, images)
