"""GANs whose generators upsample in different ways, so their artifacts differ.

- ``upsample="transposed"``: DCGAN (Radford et al. 2016). Strided transposed convolutions
  overlap unevenly and leave checkerboard peaks in the spectrum.
- ``upsample="nearest"`` / ``"bilinear"``: resize then a 3x3 convolution (Odena et al. 2016,
  "Deconvolution and checkerboard artifacts"): no checkerboard, but interpolation leaves its
  own periodic correlations.

Both use the same discriminator and the same non-saturating loss with one-sided label
smoothing, so a benchmark that holds one out measures the upsampler, not the training recipe.
"""

from __future__ import annotations

import math
from typing import Any

from detect.core.errors import ConfigError
from generators.base import check_device

from .base import TorchImageGenerator

UPSAMPLERS = ("transposed", "nearest", "bilinear")


def _nets(size: int, nz: int, width: int, upsample: str):  # noqa: ANN202
    import torch.nn as nn

    n_up = int(math.log2(size // 4))
    if 4 * 2**n_up != size or size < 8:
        raise ConfigError(f"GAN size must be a power of two >= 8, got {size}")
    if upsample not in UPSAMPLERS:
        raise ConfigError(f"GAN upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")

    def up(cin: int, cout: int, last: bool = False) -> list[nn.Module]:
        if upsample == "transposed":
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
        mode = {"mode": upsample} if upsample == "nearest" else \
            {"mode": upsample, "align_corners": False}
        return [nn.Upsample(scale_factor=2, **mode), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]

    g: list[nn.Module] = []
    ch = width * 2 ** (n_up - 1)
    g += [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(n_up - 1):
        g += [*up(ch, ch // 2), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    g += [*up(ch, 3, last=True), nn.Tanh()]
    d: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    ch = width
    for _ in range(n_up - 1):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
              nn.LeakyReLU(0.2, True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
    G, D = nn.Sequential(*g), nn.Sequential(*d)
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return G, D


class GAN(TorchImageGenerator):
    family = "gan"
    name = "dcgan"
    inference_modules = ("G",)

    def __init__(self, *, size: int = 32, nz: int = 64, width: int = 64,
                 upsample: str = "transposed", steps: int = 3000, batch_size: int = 64,
                 lr: float = 2e-4, checkpoint_every: int = 250, seed: int = 0,
                 device: str = "cpu"):
        self.size, self.nz, self.width, self.upsample = size, nz, width, upsample
        self.device = check_device(device, self.name)
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.checkpoint_every, self.seed = checkpoint_every, seed

    def sampling_params(self) -> dict[str, Any]:
        return {"size": self.size, "upsample": self.upsample}

    def _build(self) -> dict[str, Any]:
        G, D = _nets(self.size, self.nz, self.width, self.upsample)
        return {"G": G, "D": D}

    def _optimizers(self, mods: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {"G": torch.optim.Adam(mods["G"].parameters(), lr=self.lr, betas=(0.5, 0.999)),
                "D": torch.optim.Adam(mods["D"].parameters(), lr=self.lr, betas=(0.5, 0.999))}

    def _train_step(self, mods: dict[str, Any], opts: dict[str, Any], real: Any,
                    gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        G, D = mods["G"], mods["D"]
        b = real.shape[0]
        z = torch.randn(b, self.nz, 1, 1, generator=gen).to(real.device)
        fake = G(z)
        ones = torch.full((b,), 0.9, device=real.device)  # one-sided label smoothing
        zeros = torch.zeros(b, device=real.device)
        loss_d = F.binary_cross_entropy_with_logits(D(real).view(-1), ones) + \
            F.binary_cross_entropy_with_logits(D(fake.detach()).view(-1), zeros)
        opts["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        opts["D"].step()
        loss_g = F.binary_cross_entropy_with_logits(D(fake).view(-1),
                                                    torch.ones(b, device=real.device))
        opts["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        opts["G"].step()
        return {"D": loss_d.item(), "G": loss_g.item()}

    def _sample(self, mods: dict[str, Any], indices: list[int], seed: int) -> Any:
        import torch

        # z_i from its own stream seeded by (seed, i): batch composition never matters
        z = torch.stack([torch.randn(self.nz, 1, 1, generator=torch.Generator().manual_seed(
            (seed * 2_147_483_647 + i) % (2**63))) for i in indices])
        return mods["G"](z.to(self.device))
