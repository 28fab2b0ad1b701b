"""VAE: diffusers' ``AutoencoderKL`` trained here and sampled from its prior.

Decoders of VAEs (and of latent-diffusion models, which use the same decoder) produce smooth,
slightly blurred images whose upsampling layers leave their own spectral fingerprint; this family
lets a benchmark ask whether a GAN-trained detector notices them.

Loss per image: squared error / (2 sigma^2) + KL, both summed, divided by the pixel count
(a Gaussian decoder of fixed ``sigma``); ``sigma`` trades sharpness against how well prior samples
look like data.
"""

from __future__ import annotations

from typing import Any

from generators.base import check_device

from .base import TorchImageGenerator, noise_for


class VAE(TorchImageGenerator):
    family = "vae"
    name = "vae"
    inference_modules = ("vae",)

    def __init__(self, *, size: int = 32, channels: list[int] | None = None,
                 latent_channels: int = 4, layers_per_block: int = 1, sigma: float = 0.2,
                 steps: int = 2000, batch_size: int = 32, lr: float = 1e-3,
                 checkpoint_every: int = 250, seed: int = 0, device: str = "cpu"):
        self.size, self.channels = size, list(channels or [32, 64, 64])
        self.device = check_device(device, self.name)
        self.latent_channels, self.layers_per_block = latent_channels, layers_per_block
        self.sigma, self.steps, self.batch_size, self.lr = sigma, steps, batch_size, lr
        self.checkpoint_every, self.seed = checkpoint_every, seed

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.channels) - 1)

    def sampling_params(self) -> dict[str, Any]:
        return {"size": self.size, "latent": [self.latent_channels, self.latent_size,
                                              self.latent_size], "sampler": "prior"}

    def _build(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL

        n = len(self.channels)
        vae = AutoencoderKL(in_channels=3, out_channels=3,
                            down_block_types=("DownEncoderBlock2D",) * n,
                            up_block_types=("UpDecoderBlock2D",) * n,
                            block_out_channels=tuple(self.channels),
                            layers_per_block=self.layers_per_block,
                            latent_channels=self.latent_channels,
                            norm_num_groups=min(16, min(self.channels)),
                            sample_size=self.size, mid_block_add_attention=False)
        return {"vae": vae}

    def _optimizers(self, mods: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {"vae": torch.optim.Adam(mods["vae"].parameters(), lr=self.lr)}

    def _train_step(self, mods: dict[str, Any], opts: dict[str, Any], real: Any,
                    gen: Any) -> dict[str, float]:
        import torch

        vae = mods["vae"]
        post = vae.encode(real).latent_dist
        eps = torch.randn(post.mean.shape, generator=gen).to(real.device)
        z = post.mean + post.std * eps
        recon = vae.decode(z).sample
        pixels = real[0].numel()
        rec = ((recon - real) ** 2).flatten(1).sum(1) / (2 * self.sigma**2)
        kl = 0.5 * (post.mean**2 + post.var - 1.0 - post.logvar).flatten(1).sum(1)
        loss = ((rec + kl) / pixels).mean()
        opts["vae"].zero_grad(set_to_none=True)
        loss.backward()
        opts["vae"].step()
        return {"rec": (rec / pixels).mean().item(), "kl": (kl / pixels).mean().item()}

    def _sample(self, mods: dict[str, Any], indices: list[int], seed: int) -> Any:
        z = noise_for(indices, seed, (self.latent_channels, self.latent_size, self.latent_size),
                      self.device)
        return mods["vae"].decode(z).sample
