"""Reconstruction detector: how well a generative model explains an image (DIRE / AEROBLADE idea).

A generated image lies close to the manifold its family's models learn, so an autoencoder
reconstructs it more faithfully, and a diffusion model predicts the noise added to it more
accurately, than a real photograph of the same content. The reconstructor is one of the
toolkit's own generators:

- a VAE (``AutoencoderKL``): features are the log reconstruction error (all, high-pass and
  low-pass parts), the error of a second pass through the autoencoder (AEROBLADE's ratio), the
  latent KL and the posterior variance;
- a pixel-space diffusion model (``UNet2DModel``): the log noise-prediction error at a few
  timesteps with fixed, seeded noise (one network call per timestep and patch, in place of
  DIRE's full DDIM inversion, which costs two whole sampling runs per image).

Both add the patch's own high-frequency energy, so the classifier can tell "hard to reconstruct"
from "highly textured". A standardised logistic regression turns the features into a score.

The reconstructor comes from ``train:<generator>`` (trained during ``fit`` on the train split's
real images only, with its own seed: a model of the family, never the one that made the corpus)
or a saved generator folder (the white-box case: the model that made the fakes). Either way the
saved detector holds a copy under ``reconstructor/``, so it is self-contained.

Format bias: reconstruction error also falls with JPEG smoothing, so a corpus whose real images
carry compression traces and whose fakes are lossless teaches this detector the file format.
``benchmarks/format_bias.py`` measures that gap by re-encoding both classes identically.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.detector import Tags
from detect.core.device import torch_device
from detect.core.errors import ConfigError, ModelError
from detect.core.generator_io import load_generator, read_config
from detect.core.linear import LinearHead, head_attribute
from detect.image.patch import PatchDetector, random_crops

FAMILIES = ("vae", "diffusion")


class ReconDetector(PatchDetector):
    tags = Tags(modality="image", needs_fit=True, min_size=8)

    def __init__(self, *, reconstructor: str = "train:vae",
                 reconstructor_params: dict[str, Any] | None = None,
                 timesteps: list[int] | None = None, max_train: int = 4000,
                 reconstructor_pool: int = 8000, C: float = 1.0, max_tiles: int = 64,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        torch_device(device, type(self).__name__)  # a bad device fails here, named
        self.reconstructor, self.device = reconstructor, device
        self.reconstructor_params = dict(reconstructor_params or {})
        self.timesteps = list(timesteps or [25, 100, 250, 500])
        self.max_train, self.reconstructor_pool = max_train, reconstructor_pool
        self.C, self.max_tiles, self.target_fpr, self.seed = C, max_tiles, target_fpr, seed

    coef_ = head_attribute("coef")
    intercept_ = head_attribute("intercept")

    # -- the reconstructor --------------------------------------------------------------------
    @property
    def patch(self) -> int:  # the reconstructor's native size
        if hasattr(self, "gen_"):
            return int(self.gen_.size)
        if self.reconstructor.startswith("train:"):
            from detect.core.registry import generators

            name = self.reconstructor.removeprefix("train:")
            return int(generators.create(name, **self.reconstructor_params).size)
        return int(read_config(Path(self.reconstructor))["params"]["size"])

    def _check_family(self, gen: Any, where: str) -> None:
        if getattr(gen, "family", None) not in FAMILIES or not hasattr(gen, "modules_"):
            raise ConfigError(f"{self.name}: reconstructor {where} is a "
                              f"{getattr(gen, 'family', '?')} model; it must be a trained "
                              f"{' or '.join(FAMILIES)} generator")

    def _prepare_reconstructor(self, real: list[np.ndarray], rng: np.random.Generator) -> None:
        from detect.core.registry import generators

        ref = self.reconstructor
        if ref.startswith("train:"):
            name = ref.removeprefix("train:")
            params = {"seed": self.seed + 7919, **self.reconstructor_params}
            gen = generators.create(name, **params)
            if gen.family not in FAMILIES:
                raise ConfigError(f"{self.name}: {name} is a {gen.family} generator; the "
                                  f"reconstructor must be a {' or '.join(FAMILIES)} model")
            n = max(len(real), self.reconstructor_pool)
            pick = rng.integers(0, len(real), n)
            pool = random_crops([real[i] for i in pick], int(gen.size), rng)
            print(f"{self.name}: training reconstructor {name} on {len(pool)} real patches",
                  file=sys.stderr)
            gen.fit(pool)
        else:
            if not Path(ref).is_dir():
                raise ConfigError(f"{self.name}: reconstructor {ref!r} is neither train:NAME "
                                  "nor a saved generator folder")
            gen = load_generator(ref)
        self._check_family(gen, ref)
        self._use(gen)

    def _use(self, gen: Any) -> None:
        """Keep ``gen`` as the reconstructor, its networks on ``device``."""
        dev = torch_device(self.device, self.name)
        for m in gen.modules_.values():
            m.to(dev)
        self.gen_ = gen

    # -- features -----------------------------------------------------------------------------
    def features(self, patches: np.ndarray) -> np.ndarray:
        """(N, P, P, 3) uint8 patches -> (N, F) reconstruction features."""
        import torch

        dev = torch_device(self.device, self.name)
        out = []
        with torch.inference_mode():
            for i in range(0, len(patches), 128):
                x = torch.from_numpy(np.ascontiguousarray(patches[i:i + 128])).to(dev)
                x = x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
                f = self._vae_feats(x) if self.gen_.family == "vae" else self._diff_feats(x)
                out.append(torch.cat([f, self._texture(x)], dim=1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_features))

    @property
    def n_features(self) -> int:
        return (6 if self.gen_.family == "vae" else len(self.timesteps)) + 1

    @staticmethod
    def _highpass(x: Any) -> Any:
        import torch.nn.functional as F

        return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)

    @staticmethod
    def _logmse(d: Any) -> Any:
        return (d.pow(2).flatten(1).mean(1) + 1e-8).log()[:, None]

    def _texture(self, x: Any) -> Any:
        return self._logmse(self._highpass(x))

    def _vae_feats(self, x: Any) -> Any:
        import torch

        vae = self.gen_.modules_["vae"]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mean).sample
        rec2 = vae.decode(vae.encode(rec).latent_dist.mean).sample
        hp = self._highpass
        kl = 0.5 * (post.mean**2 + post.var - 1.0 - post.logvar).flatten(1).mean(1)
        return torch.cat([
            self._logmse(rec - x),
            self._logmse(hp(rec) - hp(x)),
            self._logmse((rec - hp(rec)) - (x - hp(x))),
            self._logmse(rec2 - rec),
            kl[:, None],
            post.logvar.flatten(1).mean(1)[:, None],
        ], dim=1)

    def _diff_feats(self, x: Any) -> Any:
        import torch

        unet = self.gen_.modules_["unet"]
        sched = self.gen_._scheduler()
        feats = []
        for k, t in enumerate(self.timesteps):
            # the noise is drawn on the CPU, so every device sees the same noise
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
            noise = torch.randn(x.shape[1:], generator=g).to(x.device).expand_as(x)
            tt = torch.full((len(x),), int(t), dtype=torch.long, device=x.device)
            noisy = sched.add_noise(x, noise, tt)
            feats.append(self._logmse(unet(noisy, tt).sample - noise))
        return torch.cat(feats, dim=1)

    # -- detector hooks -----------------------------------------------------------------------
    def _fit_images(self, images: list[np.ndarray], labels: np.ndarray,
                    rng: np.random.Generator) -> None:
        self._prepare_reconstructor([im for im, y in zip(images, labels, strict=True) if y == 0],
                                    rng)
        n_t = getattr(self.gen_, "train_timesteps", None)
        if self.gen_.family == "diffusion" and (
                not self.timesteps or any(not 0 <= int(t) < n_t for t in self.timesteps)):
            raise ConfigError(f"{self.name}: timesteps must be integers in [0, {n_t}) for "
                              f"this diffusion model, got {self.timesteps}")
        idx = np.arange(len(images))
        if len(idx) > self.max_train:  # stratified subsample: features are costly
            keep = []
            for lab in (0, 1):
                li = np.flatnonzero(labels == lab)
                k = max(1, round(self.max_train * len(li) / len(idx)))
                keep.append(rng.choice(li, min(k, len(li)), replace=False))
            idx = np.sort(np.concatenate(keep))
        patches = random_crops([images[i] for i in idx], self.patch, rng)
        feats = self.features(patches)
        self.head_ = LinearHead(C=self.C, max_iter=2000).fit(feats, labels[idx])

    def _score_patches(self, patches: np.ndarray) -> np.ndarray:
        return self.head_.decision(self.features(patches))

    def save(self, directory: str | Path) -> Path:
        d = super().save(directory)
        self.gen_.save(d / "reconstructor")
        return d

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return (self.head_.tensors(),
                {"reconstructor": {"name": self.gen_.name, "family": self.gen_.family,
                                   "params": self.gen_.get_params(),
                                   "source": self.reconstructor}})

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.head_ = LinearHead(C=self.C, max_iter=2000).load_tensors(tensors,
                                                                      where=self.model_dir_)
        where = Path(self.model_dir_) / "reconstructor"
        if not (where / "config.json").is_file():
            raise ModelError(f"{self.model_dir_}: the saved recon detector lacks its "
                             "reconstructor/ folder")
        gen = load_generator(where)
        self._check_family(gen, str(where))
        self._use(gen)
        if self.head_.n_features != self.n_features:
            raise ModelError(f"{self.model_dir_}: {self.head_.n_features} weights for "
                             f"{self.n_features} features")
