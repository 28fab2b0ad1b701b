"""The one generator contract (generators/base.py), checked on every registered ``*-test``
generator and on the face forgeries ``sbi`` / ``face-swap`` at tiny sizes: fit, per-(seed,
index) sampling whatever the batch split, save -> load -> the same samples, provenance, a fit
interrupted and resumed equal to an unbroken one, and the ``device`` parameter.

Sizes are contract-sized, not learning-sized (learning is tested in test_generators.py,
test_generator_families.py and test_text_generators.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detect.core.errors import ConfigError
from detect.core.registry import generators
from generators import checkpoint
from generators.base import Generator, load_generator
from generators.faces.methods import FaceInput
from generators.sources import photo_patches, photos

TEST_GENERATORS = generators.names("*-test")
IMAGE_TEST = [n for n in TEST_GENERATORS if generators.get_class(n).modality == "image"
              and not getattr(generators.get_class(n), "needs_images", False)]
RECONSTRUCTORS = [n for n in TEST_GENERATORS
                  if getattr(generators.get_class(n), "needs_images", False)]
TEXT_TEST = [n for n in TEST_GENERATORS if generators.get_class(n).modality == "text"]
FORGERIES = ["sbi", "face-swap"]
FAST = {"steps": 4, "checkpoint_every": 2}  # a few steps: the contract, not the learning


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def patches16():
    return np.stack([s.content for _, s in photo_patches(photos("skimage"), 96, 16, [1.0], 5)])


@pytest.fixture(scope="module")
def texts():
    from generators.text.sources import documents

    return [d.text for d in documents("pydoc", target_chars=800)[:40]]


@pytest.fixture(scope="module")
def fitted(patches16, tmp_path_factory):
    """name -> (fitted generator, its saved folder), for the image ``*-test`` generators."""
    root = tmp_path_factory.mktemp("contract")
    out = {}
    for name in IMAGE_TEST:
        gen = generators.create(name, **FAST).fit(patches16, workdir=root / name,
                                                  progress=False)
        assert isinstance(gen, Generator)  # fit returns the generator itself
        out[name] = (gen, gen.save(root / name / "model"))
    return out


@pytest.fixture(scope="module")
def dcgan(patches16, tmp_path_factory):
    """One cheap fitted and saved image generator for the tests that need only one."""
    d = tmp_path_factory.mktemp("dcgan")
    gen = generators.create("dcgan-test", **FAST).fit(patches16, workdir=d, progress=False)
    return gen, gen.save(d / "model")


def _faces(n: int) -> list[FaceInput]:
    """Smooth synthetic 48x48 'faces' with five landmarks, each with a source face to swap."""
    import cv2

    rng = np.random.default_rng(0)
    lm = np.array([[16.0, 18], [32, 18], [24, 27], [18, 35], [30, 35]])

    def face() -> np.ndarray:
        small = rng.integers(40, 220, (6, 6, 3), dtype=np.uint8)
        return cv2.resize(small, (48, 48), interpolation=cv2.INTER_CUBIC)

    return [FaceInput(face(), lm, face(), lm + rng.normal(0, 1, lm.shape)) for _ in range(n)]


# -- sampling: per (seed, index), whatever the batch split ----------------------------------------
@pytest.mark.slow  # ~10 s: fits four image models (a few steps each), samples full blocks
@pytest.mark.parametrize("name", IMAGE_TEST)
def test_image_sample_is_per_index_and_survives_save_load(name, fitted):
    gen, mdir = fitted[name]
    whole = gen.sample(range(10), seed=3)
    assert [s.provenance.index for s in whole] == list(range(10))
    split = gen.sample([7, 3], seed=3) + gen.sample([9, 0, 1, 2, 4, 5, 6, 8], seed=3)
    by_index = {s.provenance.index: s.content for s in split}
    # aligned blocks: a sample is the same bytes whatever else was asked with it
    assert all(np.array_equal(by_index[i], whole[i].content) for i in range(10)), name
    assert np.array_equal(gen.sample([4], seed=3)[0].content, whole[4].content)
    assert not np.array_equal(gen.sample([4], seed=4)[0].content, whole[4].content)
    assert not np.array_equal(whole[0].content, whole[1].content)
    again = load_generator(mdir)
    assert type(again) is type(gen) and again.name == name
    # weights round-trip bit-exactly through safetensors and the network is rebuilt the same
    # way, so even the float decoders (VAE, UNet) give the same bytes: no tolerance needed
    assert all(np.array_equal(a.content, b.content) for a, b in
               zip(again.sample(range(10), seed=3), whole, strict=True)), name
    prov = whole[4].provenance
    assert (prov.kind, prov.generator, prov.seed, prov.index) == ("synthetic", name, 3, 4)
    assert prov.params["family"] == gen.family
    assert prov.checkpoint_sha256 == again.checkpoint_sha256_ and len(prov.checkpoint_sha256) == 64
    assert whole[4].label == 1 and whole[4].content.shape == (16, 16, 3)


def test_image_sample_with_a_total_cuts_the_last_block(dcgan):
    """A corpus build passes its item count: the tail block stops there, and any split of the
    indices still gives the same bytes."""
    gen, _ = dcgan
    n = 7
    whole = gen.sample(range(n), seed=1, total=n)
    parts = gen.sample([6, 0], seed=1, total=n) + gen.sample(range(1, 6), seed=1, total=n)
    got = {s.provenance.index: s.content for s in parts}
    assert all(np.array_equal(got[i], whole[i].content) for i in range(n))
    with pytest.raises(ConfigError, match="total"):
        gen.sample([7], seed=1, total=n)


@pytest.mark.parametrize("name", TEXT_TEST)
def test_text_sample_is_per_index_and_survives_save_load(name, texts, tmp_path):
    gen = generators.create(name, steps=12, checkpoint_every=6)
    assert gen.fit(texts, workdir=tmp_path / "w", progress=False) is gen
    prompts = [gen.encode(t)[:6] for t in texts[:4]]
    kw = {"sampling": {"name": "t0.9", "temperature": 0.9}, "max_new_tokens": 8}
    whole = gen.sample(range(4), 5, prompts=prompts, **kw)
    split = gen.sample([3, 1], 5, prompts=[prompts[3], prompts[1]], **kw) + \
        gen.sample([0, 2], 5, prompts=[prompts[0], prompts[2]], **kw)
    by_index = {s.provenance.index: s.content for s in split}
    assert all(by_index[i] == whole[i].content for i in range(4))
    assert [s.content for s in gen.sample(range(4), 6, prompts=prompts, **kw)] != \
        [s.content for s in whole]
    gen.save(tmp_path / "model")
    again = load_generator(tmp_path / "model")
    assert type(again) is type(gen) and again.name == name
    loaded = again.sample(range(4), 5, prompts=prompts, **kw)
    assert [s.content for s in loaded] == [s.content for s in whole]
    assert whole[2].provenance.checkpoint_sha256 is None  # known once saved
    prov = loaded[2].provenance
    assert (prov.kind, prov.generator, prov.seed, prov.index) == ("synthetic", name, 5, 2)
    assert prov.params["family"] == "lm" and prov.params["sampling"]["name"] == "t0.9"
    assert prov.params["prompt_tokens"] == 6 and prov.params["new_tokens"] == 8
    assert prov.checkpoint_sha256 == again.checkpoint_sha256_


@pytest.mark.parametrize("name", FORGERIES)
def test_face_forgeries_follow_the_contract(name, tmp_path):
    gen = generators.create(name)
    assert gen.fit(None) is gen and not gen.trainable and gen.needs_faces
    faces = _faces(4)
    whole = gen.sample(range(4), 9, faces=faces)
    split = gen.sample([2], 9, faces=[faces[2]]) + gen.sample([0, 1, 3], 9,
                                                              faces=[faces[i] for i in (0, 1, 3)])
    by_index = {s.provenance.index: s.content for s in split}
    assert all(np.array_equal(by_index[i], whole[i].content) for i in range(4))
    assert all(s.content.shape == (48, 48, 3) and s.content.dtype == np.uint8 for s in whole)
    assert not all(np.array_equal(s.content, f.face) for s, f in zip(whole, faces, strict=True))
    other = gen.sample(range(4), 10, faces=faces)
    assert not all(np.array_equal(a.content, b.content) for a, b in zip(other, whole,
                                                                        strict=True))
    again = load_generator(gen.save(tmp_path / "m"))
    assert type(again) is type(gen) and again.get_params() == gen.get_params()
    assert all(np.array_equal(a.content, b.content) for a, b in
               zip(again.sample(range(4), 9, faces=faces), whole, strict=True))
    prov = whole[1].provenance
    # the provenance name face corpora have always recorded
    assert prov.generator == {"sbi": "face-sbi", "face-swap": "face-swap"}[name]
    assert (prov.seed, prov.index) == (9, 1) and "forgery" in prov.params
    with pytest.raises(ConfigError, match="one face per index"):
        gen.sample([0, 1], 9, faces=faces[:1])


def test_face_swap_needs_a_source_and_a_known_blend():
    with pytest.raises(ConfigError, match="blend"):
        generators.create("face-swap", blend="poisson")
    face = _faces(1)[0]
    with pytest.raises(ConfigError, match="source"):
        generators.create("face-swap").sample([0], 0, faces=[FaceInput(face.face,
                                                                        face.landmarks)])


# -- resuming an interrupted fit ------------------------------------------------------------------
def _interrupted(monkeypatch, at_step: int):
    real = checkpoint.save

    def killed(path, step, **kwargs):
        real(path, step, **kwargs)
        if step == at_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", killed)
    return real


def test_image_fit_interrupted_and_resumed_equals_an_unbroken_one(patches16, tmp_path,
                                                                  monkeypatch):
    params = {"steps": 12, "checkpoint_every": 4}
    full = generators.create("gan-upsample-test", **params).fit(
        patches16, workdir=tmp_path / "full", progress=False)
    real = _interrupted(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        generators.create("gan-upsample-test", **params).fit(patches16, workdir=tmp_path / "p",
                                                             progress=False)
    monkeypatch.setattr(checkpoint, "save", real)
    resumed = generators.create("gan-upsample-test", **params).fit(
        patches16, workdir=tmp_path / "p", progress=False)
    for m in full.modules_:
        a, b = full.modules_[m].state_dict(), resumed.modules_[m].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), m
    assert all(np.array_equal(a.content, b.content) for a, b in zip(
        full.sample(range(4), 0), resumed.sample(range(4), 0), strict=True))


def test_lm_fit_interrupted_and_resumed_equals_an_unbroken_one(texts, tmp_path, monkeypatch):
    params = {"steps": 20, "checkpoint_every": 10}
    full = generators.create("gpt2-test", **params).fit(texts, workdir=tmp_path / "full",
                                                        progress=False)
    real = _interrupted(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        generators.create("gpt2-test", **params).fit(texts, workdir=tmp_path / "p",
                                                     progress=False)
    monkeypatch.setattr(checkpoint, "save", real)
    resumed = generators.create("gpt2-test", **params).fit(texts, workdir=tmp_path / "p",
                                                           progress=False)
    a, b = full.model_.state_dict(), resumed.model_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.train_data_["final_loss"] == resumed.train_data_["final_loss"]


def test_checkpoints_hold_tensors_and_json_only(patches16, tmp_path):
    """What resuming reads is a safetensors file: no pickle anywhere."""
    from safetensors import safe_open

    generators.create("dcgan-test", **FAST).fit(patches16, workdir=tmp_path, progress=False)
    with safe_open(str(tmp_path / checkpoint.FILE), "pt") as f:
        keys = set(f.keys())
        params = json.loads(f.metadata()["params"])
    assert {"step", "rng.torch"} <= keys and any(k.startswith("mod.G.") for k in keys)
    assert any(k.startswith("opt.D.") for k in keys) and params["device"] == "cpu"
    assert not (tmp_path / "train-state.part").exists()  # written, then renamed


# -- device ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*IMAGE_TEST, *TEXT_TEST, "pretrained", "lm-pretrained"])
def test_every_torch_generator_takes_a_checked_device(name):
    need = {"pretrained": {"model": "x"}, "lm-pretrained": {"model": "x"}}.get(name, {})
    assert generators.create(name, **need).get_params()["device"] == "cpu"
    for bad in ("gpu", "cuda:x", "", 0):
        with pytest.raises(ConfigError, match="device"):
            generators.create(name, **need, device=bad)


def test_a_saved_config_from_before_device_still_loads(dcgan, tmp_path):
    import shutil

    gen, mdir = dcgan
    old = tmp_path / "old"
    shutil.copytree(mdir, old)
    cfg = json.loads((old / "config.json").read_text())
    del cfg["params"]["device"]
    (old / "config.json").write_text(json.dumps(cfg))
    again = load_generator(old)
    assert again.device == "cpu"
    assert np.array_equal(again.sample([2], 0)[0].content, gen.sample([2], 0)[0].content)


def test_an_image_recipe_refuses_a_face_forgery(tmp_path):
    from generators.recipe import load_recipe

    r = tmp_path / "r.toml"
    r.write_text('schema = "unmask.recipe/1"\nname = "x"\nseed = 1\n[image]\nsize = 16\n'
                 '[splits]\ntrain = 0.5\ncalib = 0.25\ntest = 0.25\n'
                 '[[real]]\nsource = "skimage"\ncount = 4\n'
                 '[[synthetic]]\ngenerator = "sbi"\ncount = 4\n')
    with pytest.raises(ConfigError, match="cannot use it"):
        load_recipe(r)


@pytest.mark.parametrize("name", RECONSTRUCTORS)
def test_reconstructors_follow_the_contract_on_given_images(name, patches16, tmp_path):
    """An autoencoder's samples are reconstructions of the images it is given: per index,
    whatever the split of the request, the same after save -> load, for any image size that is
    a multiple of 8; asked without images or for an index it was not given, a ConfigError."""
    gen = generators.create(name, **FAST, size=16).fit(patches16, workdir=tmp_path / "w",
                                                       progress=False)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (s, s + 8, 3), dtype=np.uint8) for s in (16, 24, 40)]
    whole = gen.sample(range(3), 5, images=images)
    split = gen.sample([2], 5, images={2: images[2]}) + gen.sample([0, 1], 5, images=images)
    order = [whole[2], whole[0], whole[1]]
    assert all(np.array_equal(a.content, b.content) for a, b in zip(split, order, strict=True))
    assert [s.content.shape for s in whole] == [im.shape for im in images]
    assert all(s.label == 1 and s.provenance.generator == name for s in whole)
    assert whole[1].provenance.index == 1 and whole[1].provenance.params["decoder"]
    again = load_generator(gen.save(tmp_path / "model"))
    # weights round-trip bit-exactly through safetensors and inference draws no noise, so the
    # same CPU gives the same bytes
    assert all(np.array_equal(a.content, b.content) for a, b in
               zip(again.sample(range(3), 5, images=images), whole, strict=True))
    with pytest.raises(ConfigError, match="pass images"):
        gen.sample([0], 5)
    with pytest.raises(ConfigError, match="no image given for index 7"):
        gen.sample([7], 5, images=images)
