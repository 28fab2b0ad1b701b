"""Pixel-space diffusion: diffusers' ``UNet2DModel`` trained with ``DDPMScheduler`` (noise
prediction, MSE), sampled with a deterministic solver (DDIM with eta=0, or DPM-Solver++) at a
chosen step count. Deterministic solvers make sample i a function of its initial noise alone,
which comes from its own (seed, i) stream.
"""

from __future__ import annotations

from typing import Any

from detect.core.errors import ConfigError
from generators.base import check_device

from .base import TorchImageGenerator, noise_for

SAMPLERS = ("ddim", "dpm-solver")


class Diffusion(TorchImageGenerator):
    family = "diffusion"
    name = "diffusion"
    inference_modules = ("unet",)

    def __init__(self, *, size: int = 32, channels: list[int] | None = None,
                 layers_per_block: int = 1, attention: bool = False,
                 train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                 sampler: str = "ddim", sample_steps: int = 25, steps: int = 3000,
                 batch_size: int = 32, lr: float = 2e-4, checkpoint_every: int = 250,
                 seed: int = 0, device: str = "cpu"):
        self.size, self.channels = size, list(channels or [32, 64, 64])
        self.device = check_device(device, self.name)
        self.layers_per_block, self.attention = layers_per_block, attention
        self.train_timesteps, self.beta_schedule = train_timesteps, beta_schedule
        if sampler not in SAMPLERS:
            raise ConfigError(f"diffusion sampler must be one of {', '.join(SAMPLERS)}")
        self.sampler, self.sample_steps = sampler, sample_steps
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.checkpoint_every, self.seed = checkpoint_every, seed

    def sampling_params(self) -> dict[str, Any]:
        return {"size": self.size, "sampler": self.sampler, "sample_steps": self.sample_steps}

    def sample_batch_size(self) -> int:
        return 64

    def _scheduler(self):  # noqa: ANN202
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.train_timesteps,
                             beta_schedule=self.beta_schedule)

    def _build(self) -> dict[str, Any]:
        from diffusers import UNet2DModel

        n = len(self.channels)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if self.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        unet = UNet2DModel(sample_size=self.size, in_channels=3, out_channels=3,
                           block_out_channels=tuple(self.channels),
                           layers_per_block=self.layers_per_block,
                           down_block_types=tuple(down), up_block_types=tuple(up),
                           norm_num_groups=min(16, min(self.channels)),
                           add_attention=self.attention)
        return {"unet": unet}

    def _optimizers(self, mods: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {"unet": torch.optim.AdamW(mods["unet"].parameters(), lr=self.lr,
                                          weight_decay=0.0)}

    def _train_step(self, mods: dict[str, Any], opts: dict[str, Any], real: Any,
                    gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        sched = getattr(self, "_train_sched", None) or self._scheduler()
        self._train_sched = sched
        b = real.shape[0]
        noise = torch.randn(real.shape, generator=gen).to(real.device)
        t = torch.randint(0, self.train_timesteps, (b,), generator=gen).to(real.device)
        noisy = sched.add_noise(real, noise, t)
        loss = F.mse_loss(mods["unet"](noisy, t).sample, noise)
        opts["unet"].zero_grad(set_to_none=True)
        loss.backward()
        opts["unet"].step()
        return {"mse": loss.item()}

    def _sample(self, mods: dict[str, Any], indices: list[int], seed: int) -> Any:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        base = self._scheduler()
        if self.sampler == "ddim":
            sched = DDIMScheduler.from_config(base.config)
        else:
            # pixel-space model: clip each x0 prediction to the data range (dynamic
            # thresholding), else the first steps at alpha ~ 0 blow the sample up
            sched = DPMSolverMultistepScheduler.from_config(
                base.config, algorithm_type="dpmsolver++", thresholding=True,
                sample_max_value=1.0)
        sched.set_timesteps(self.sample_steps)
        x = noise_for(indices, seed, (3, self.size, self.size), self.device) * \
            sched.init_noise_sigma
        unet = mods["unet"]
        for t in sched.timesteps:
            eps = unet(sched.scale_model_input(x, t), t).sample
            kwargs = {"eta": 0.0} if self.sampler == "ddim" else {}
            x = sched.step(eps, t, x, **kwargs).prev_sample
        return x
