"""Every generator family: conformance of the ``*-test`` variants, pretrained pipelines from a
local folder, the other real sources, and recipe features (post-processing, held-out family)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.core.errors import ConfigError, ModelError
from detect.core.registry import generators
from detect.io.corpus import Corpus
from generators.base import load_generator
from generators.image.base import file_sha256
from generators.quality import quality_report
from generators.recipe import build
from generators.sources import photo_patches, photos

# image generators (text LMs have their own tests in test_text_generators.py)
# image generators that make images from noise (reconstructors, which take images, have their
# own contract test in test_generator_contract.py)
TEST_GENERATORS = [n for n in generators.names("*-test")
                   if getattr(generators.get_class(n), "modality", "image") == "image"
                   and not getattr(generators.get_class(n), "needs_images", False)]


@pytest.fixture(scope="module")
def patches16():
    return np.stack([s.content for _, s in photo_patches(photos("skimage"), 320, 16, [1.0, 0.5],
                                                         3)])


@pytest.fixture(scope="module")
def trained(patches16, tmp_path_factory):
    root = tmp_path_factory.mktemp("gens")
    out = {}
    for name in TEST_GENERATORS:
        gen = generators.create(name).fit(patches16, workdir=root / name, progress=False)
        gen.save(root / name / "model")
        out[name] = (gen, root / name / "model")
    return out


def test_every_family_is_registered_with_a_test_variant():
    fams = {generators.get_class(n)(**generators.entry(n).defaults).family
            for n in TEST_GENERATORS}
    assert {"gan", "vae", "diffusion"} <= fams
    assert {"dcgan", "gan-upsample", "vae", "diffusion-ddim", "diffusion-dpm",
            "pretrained"} <= set(generators.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_GENERATORS)
def test_generator_learns(name, trained, patches16):
    gen, _ = trained[name]
    fake = gen.sample_array(list(range(160)), seed=4)
    base = gen.untrained().sample_array(list(range(160)), seed=4)
    rep = quality_report(patches16[:160], patches16[160:], fake, base)
    assert rep["fd_generated"] < rep["fd_untrained"], rep


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_GENERATORS)
def test_sampling_is_per_index_and_survives_save_load(name, trained):
    gen, mdir = trained[name]
    batch = gen.sample_array(list(range(8)), seed=7)
    assert batch.shape == (8, 16, 16, 3) and batch.dtype == np.uint8
    alone = gen.sample_array([5, 2], seed=7)
    # sample i depends only on (seed, i); batch size may move a value by one level at most
    assert np.abs(alone.astype(int) - batch[[5, 2]].astype(int)).max() <= 1
    assert not np.array_equal(batch[0], batch[1])
    assert not np.array_equal(gen.sample_array([0], seed=8)[0], batch[0])
    again = load_generator(mdir)
    np.testing.assert_array_equal(again.sample_array(list(range(8)), seed=7), batch)
    i, sample = 3, again.sample([3], seed=7)[0]
    prov = sample.provenance
    assert i == 3 and prov.index == 3 and prov.seed == 7 and prov.generator == name
    assert prov.checkpoint_sha256 == file_sha256(mdir / "weights.safetensors")
    assert prov.params["family"] == gen.family


@pytest.mark.parametrize("name", [pytest.param("vae-test", marks=pytest.mark.slow),  # ~15 s
                                  "gan-upsample-test"])
def test_interrupted_training_resumes_bit_identically(name, patches16, tmp_path):
    full = generators.create(name, steps=16, checkpoint_every=8)
    full.fit(patches16, workdir=tmp_path / "full", progress=False)
    generators.create(name, steps=8, checkpoint_every=8).fit(patches16, workdir=tmp_path / "p",
                                                             progress=False)
    resumed = generators.create(name, steps=16, checkpoint_every=8)
    resumed.fit(patches16, workdir=tmp_path / "p", progress=False)
    for m in full.modules_:
        a, b = full.modules_[m].state_dict(), resumed.modules_[m].state_dict()
        assert all(bool((a[k] == b[k]).all()) for k in a), m


def test_the_two_gans_upsample_differently():
    import torch.nn as nn

    def kinds(name):
        g = generators.create(name).untrained().modules_["G"]
        return {type(m).__name__ for m in g.modules() if isinstance(m, nn.Module)}

    assert "Upsample" in kinds("gan-upsample-test") and "Upsample" not in kinds("dcgan-test")
    tconv = [m for m in generators.create("gan-upsample-test").untrained().modules_["G"].modules()
             if isinstance(m, nn.ConvTranspose2d)]
    assert len(tconv) == 1  # only the 1x1 -> 4x4 projection; all upsampling is resize + conv


# -- pretrained pipelines from a local folder -----------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    """A randomly initialised Stable Diffusion pipeline and a DDPM pipeline, saved to folders
    with save_pretrained, exactly as a user's downloaded model would sit on disk."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMPipeline,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
        UNet2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("pipes")
    torch.manual_seed(0)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (root / "tok").mkdir()
    (root / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(root / "tok" / "vocab.json"), str(root / "tok" / "merges.txt"),
                        model_max_length=77)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32,
                                      intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=77,
                                      bos_token_id=vocab["<|startoftext|>"],
                                      eos_token_id=vocab["<|endoftext|>"], pad_token_id=1))
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=8,
                                in_channels=4, out_channels=4, cross_attention_dim=32,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                norm_num_groups=8, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(16, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=8, sample_size=16)
    StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                            scheduler=DDIMScheduler(), safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False,
                            ).save_pretrained(root / "sd")
    ddpm_unet = UNet2DModel(sample_size=24, block_out_channels=(16, 32), layers_per_block=1,
                            down_block_types=("DownBlock2D",) * 2,
                            up_block_types=("UpBlock2D",) * 2, norm_num_groups=8)
    DDPMPipeline(unet=ddpm_unet, scheduler=DDPMScheduler(num_train_timesteps=50)
                 ).save_pretrained(root / "ddpm")
    (root / "prompts.txt").write_text("# one prompt per line\na red cat\n\na blue house\n")
    return root


def test_pretrained_text_to_image_pipeline_from_a_folder(tiny_pipelines, tmp_path):
    from generators.image.pretrained import tree_sha256

    sd = tiny_pipelines / "sd"
    gen = generators.create("pretrained", model=str(sd), prompts=str(tiny_pipelines /
                                                                     "prompts.txt"),
                            size=16, sample_steps=2).prepare()
    imgs = gen.sample_array([0, 1, 2], seed=5)
    assert imgs.shape == (3, 16, 16, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(gen.sample_array([1], seed=5)[0], imgs[1])
    s0, s1 = gen.sample([0, 1], seed=5)
    assert s0.provenance.params["prompt"] == "a red cat"
    assert s1.provenance.params["prompt"] == "a blue house"
    assert s0.provenance.checkpoint_sha256 == tree_sha256(sd)
    assert s0.provenance.params["pipeline"] == "StableDiffusionPipeline"
    assert s0.provenance.params["watermarker"] is False
    again = load_generator(gen.save(tmp_path / "ref"))
    np.testing.assert_array_equal(again.sample_array([2], seed=5)[0], imgs[2])
    assert not list((tmp_path / "ref").glob("*.safetensors")), "a reference, not a copy"
    with pytest.raises(ConfigError, match="prompts"):
        generators.create("pretrained", model=str(sd)).prepare()
    with pytest.raises(ModelError, match="cannot load diffusers pipeline"):
        generators.create("pretrained", model=str(tmp_path / "nope")).prepare()


@pytest.mark.slow
def test_pretrained_unconditional_pipeline_in_a_recipe(tiny_pipelines, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'''
schema = "unmask.recipe/1"
name = "pretrained-test"
seed = 3
[image]
size = 16
[splits]
train = 0.5
calib = 0.25
test = 0.25
[[real]]
source = "skimage"
count = 24
generator_patches = 64
[[synthetic]]
generator = "pretrained"
count = 6
[synthetic.params]
model = "{tiny_pipelines / 'ddpm'}"
sample_steps = 3
batch_size = 2
''')
    c = build(recipe, tmp_path / "c", progress=False)
    fakes = [r for r in c.records if r.label == 1]
    assert len(fakes) == 6
    assert all(r.provenance["params"]["pipeline"] == "DDPMPipeline" for r in fakes)
    assert all(Image.open(c.root / r.path).size == (16, 16) for r in c.records)
    assert (c.root / "generators" / "0-pretrained" / "samples.png").is_file()


# -- real sources ---------------------------------------------------------------------------------
def test_fashion_mnist_source(monkeypatch, tmp_path):
    from conftest import require_setup

    import generators.sources as src

    require_setup(src.FASHION_MNIST.is_dir(), "Debian's dataset-fashion-mnist")
    ph = photos("fashion-mnist", limit=40)
    assert len(ph) == 40 and ph[0].pixels.shape == (28, 28, 3)
    assert ph[0].name == "fashion-mnist:train:0"
    pats = [s for _, s in photo_patches(ph, 10, 32, [1.0], 0)]
    assert pats[0].content.shape == (32, 32, 3)  # smaller than the patch: resized up to fit
    monkeypatch.setattr(src, "FASHION_MNIST", tmp_path / "missing")
    with pytest.raises(ConfigError, match="dataset-fashion-mnist"):
        photos("fashion-mnist")


def test_folder_source_takes_any_size_and_format(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (90, 40, 3), np.uint8)).save(tmp_path / "sub/b.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20), np.uint8)).save(tmp_path / "c.webp")
    (tmp_path / "readme.txt").write_text("not a picture")
    ph = photos(f"folder:{tmp_path}")
    assert sorted(Path(p.name.split(":", 1)[1]).name for p in ph) == ["a.png", "b.jpg", "c.webp"]
    assert "readme.txt" in capsys.readouterr().err  # said, not silently skipped
    s = next(s for _, s in photo_patches(ph, 3, 32, [1.0], 1))
    assert s.provenance.source.startswith("folder:") and s.content.shape == (32, 32, 3)


# -- recipe features ------------------------------------------------------------------------------
@pytest.mark.slow
def test_postprocess_applies_to_both_classes_and_held_out_family_is_test_only(tmp_path):
    from conftest import TINY_RECIPE

    text = TINY_RECIPE.read_text().replace('seed = 11', 'seed = 11\nheld_out_families = ["gan"]')
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match="holds out every family"):
        build(recipe, tmp_path / "all-held", progress=False)
    text += '\n[[synthetic]]\ngenerator = "vae-test"\ncount = 40\n'
    text += '\n[[postprocess]]\nop = "jpeg"\nquality = 80\n'
    recipe.write_text(text)
    c = Corpus.open(build(recipe, tmp_path / "c", progress=False).root)
    for r in c.records:
        assert r.provenance["transforms"] == [{"op": "jpeg", "quality": 80}]
        assert r.path.endswith(".png")
    fam = {r.provenance["params"]["family"] for r in c.records if r.label == 1}
    assert fam == {"gan", "vae"}
    assert {r.split for r in c.records
            if r.label == 1 and r.provenance["params"]["family"] == "gan"} == {"test"}
    assert {r.split for r in c.records
            if r.label == 1 and r.provenance["params"]["family"] == "vae"} >= {"train", "calib"}
    assert {r.split for r in c.records if r.label == 0} == {"train", "calib", "test"}
    assert c.header["held_out_families"] == ["gan"]
    typo = TINY_RECIPE.read_text().replace("seed = 11", 'seed = 11\nheld_out_families = ["gam"]')
    (tmp_path / "typo.toml").write_text(typo)
    with pytest.raises(ConfigError, match="held_out_families names"):
        build(tmp_path / "typo.toml", tmp_path / "t", progress=False)
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_RECIPE.read_text() + '\n[[postprocess]]\nop = "sharpen"\n')
    with pytest.raises(ConfigError, match="postprocess"):
        build(bad, tmp_path / "x", progress=False)


@pytest.mark.slow
def test_train_generator_command(tmp_path):
    bin_ = Path(sys.executable).parent / "unmask"
    cmd = [str(bin_)] if bin_.exists() else [sys.executable, "-m", "detect.cli"]
    r = subprocess.run([*cmd, "-q", "train-generator", "gan-upsample-test", "--out",
                        str(tmp_path / "g"), "--source", "skimage", "--size", "16",
                        "--patches", "300", "--set", "steps=40"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["quality"]["fd_generated"] < info["quality"]["fd_untrained"]
    assert (tmp_path / "g" / "samples.png").is_file()
    assert (tmp_path / "g" / "train-state.safetensors").is_file()
    assert load_generator(tmp_path / "g" / "model").name == "gan-upsample-test"


@pytest.mark.slow
def test_diffusion_samplers_share_one_trained_model(trained):
    """DDIM and DPM-Solver++ both run deterministically on the same trained UNet."""
    gen, mdir = trained["diffusion-test"]
    ddim = gen.sample_array([0, 1], seed=2)
    dpm = load_generator(mdir)
    dpm.sampler, dpm.sample_steps = "dpm-solver", 4
    a, b = dpm.sample_array([0, 1], seed=2), dpm.sample_array([0, 1], seed=2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == ddim.shape and not np.array_equal(a, ddim)
    # x0 clipping keeps the solver in range (without it nearly every pixel saturates)
    saturated = (a == 0).mean() + (a == 255).mean()
    assert saturated < 0.3, saturated


@pytest.mark.slow
def test_broken_generator_folders_are_refused(trained, tmp_path):
    import shutil

    _, mdir = trained["vae-test"]
    bad = tmp_path / "bad"
    shutil.copytree(mdir, bad)
    (bad / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="unreadable generator weights"):
        load_generator(bad)
    (bad / "config.json").write_text('{"schema": "other"}')
    with pytest.raises(ModelError, match="schema"):
        load_generator(bad)
    cfg = json.loads((mdir / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "name": "no-such-generator"}))
    with pytest.raises(ModelError, match="unknown generator"):
        load_generator(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_GENERATORS)
def test_resumed_generation_makes_the_same_bytes(name, trained):
    """A build interrupted after any item regenerates the rest bit for bit."""
    gen, _ = trained[name]
    n = gen.sample_batch_size() + 5
    full = dict(enumerate(s.content for s in gen.sample(range(n), 3, total=n)))
    for cut in (1, n - 3):
        rest = {i: s.content for i, s in zip(range(cut, n), gen.sample(range(cut, n), 3,
                                                                         total=n), strict=True)}
        assert sorted(rest) == list(range(cut, n))
        assert all(np.array_equal(rest[i], full[i]) for i in rest), (name, cut)
