"""The DCGAN and the recipe builder: learning, determinism, resumability, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RECIPE

from detect.core.errors import ConfigError
from detect.core.registry import generators
from detect.io.corpus import Corpus
from generators.recipe import build, load_recipe
from generators.sources import assign_splits, photo_patches, photos


@pytest.fixture(scope="module")
def skimage_patches():
    return np.stack([s.content for _, s in photo_patches(photos("skimage"), 256, 16, [1.0], 3)])


def test_real_sources_ship_offline():
    ph = photos("skimage")
    assert len(ph) >= 8 and all(p.pixels.dtype == np.uint8 and p.pixels.ndim == 3 for p in ph)
    assert len(photos("sklearn")) == 2
    with pytest.raises(ConfigError, match="unknown real-image source"):
        photos("imagenet")


def test_patches_are_deterministic_and_carry_provenance():
    ph = photos("skimage")
    a = [s for _, s in photo_patches(ph, 20, 16, [1.0, 0.5], 5)]
    b = [s for _, s in photo_patches(ph, 20, 16, [1.0, 0.5], 5)]
    assert all(np.array_equal(x.content, y.content) for x, y in zip(a, b, strict=True))
    p = a[3].provenance
    assert p.kind == "real" and p.source.startswith("skimage:") and len(p.params["box"]) == 4
    assert a[3].group == p.source


def test_photos_are_split_whole():
    names = [f"p{i}" for i in range(10)]
    s = assign_splits(names, {"train": 0.6, "calib": 0.2, "test": 0.2}, 1)
    assert sorted(s.values()).count("train") == 6 and set(s.values()) == {"train", "calib", "test"}
    assert s == assign_splits(names, {"train": 0.6, "calib": 0.2, "test": 0.2}, 1)
    # rounding never leaves a split without photos
    for n, fr in ((3, (0.1, 0.6, 0.3)), (4, (0.1, 0.7, 0.2)), (7, (0.8, 0.1, 0.1))):
        got = assign_splits([f"p{i}" for i in range(n)],
                            dict(zip(("train", "calib", "test"), fr, strict=True)), 0)
        assert set(got.values()) == {"train", "calib", "test"} and len(got) == n
    with pytest.raises(ConfigError, match="cannot fill"):
        assign_splits(["a", "b"], {"train": 0.6, "calib": 0.2, "test": 0.2}, 0)


def test_dcgan_learns_and_samples_deterministically(skimage_patches, tmp_path):
    from generators.quality import patch_features, quality_report

    gen = generators.create("dcgan-test", steps=80)
    gen.fit(skimage_patches, workdir=tmp_path / "w", progress=False)
    gen.save(tmp_path / "m")
    fake = gen.sample_array(list(range(200)), seed=9)
    untrained = generators.create("dcgan-test", steps=0).fit(skimage_patches, progress=False)
    rep = quality_report(skimage_patches[:128], skimage_patches[128:],
                         fake, untrained.sample_array(list(range(200)), seed=9))
    assert rep["fd_generated"] < 0.5 * rep["fd_untrained"], rep
    assert patch_features(fake).shape[0] == 200
    # sample i depends only on (seed, i), whatever batch it is drawn in
    again = type(gen).load(tmp_path / "m")
    np.testing.assert_array_equal(again.sample_array([5, 7], seed=9), fake[[5, 7]])
    i, sample = 7, again.sample([7], seed=9)[0]
    assert i == 7 and np.array_equal(sample.content, fake[7])
    assert sample.provenance.checkpoint_sha256 == gen.checkpoint_sha256_
    assert sample.provenance.generator == "dcgan-test" and sample.label == 1


@pytest.mark.slow
def test_dcgan_training_resumes_from_checkpoint(skimage_patches, tmp_path):
    """An interrupted run continued later ends with exactly the weights of an unbroken run."""
    full = generators.create("dcgan-test", steps=40, checkpoint_every=20)
    full.fit(skimage_patches, workdir=tmp_path / "full", progress=False)
    part = generators.create("dcgan-test", steps=20, checkpoint_every=20)
    part.fit(skimage_patches, workdir=tmp_path / "part", progress=False)
    resumed = generators.create("dcgan-test", steps=40, checkpoint_every=20)
    resumed.fit(skimage_patches, workdir=tmp_path / "part", progress=False)
    for (k, v), (k2, v2) in zip(full.modules_["G"].state_dict().items(),
                                resumed.modules_["G"].state_dict().items(),
                                strict=True):
        assert k == k2 and bool((v == v2).all()), k
    # a checkpoint from other hyperparameters is refused, not silently mixed in
    with pytest.raises(ConfigError, match="other parameters"):
        generators.create("dcgan-test", steps=40, width=8).fit(
            skimage_patches, workdir=tmp_path / "part", progress=False)


@pytest.mark.slow
def test_same_recipe_and_seed_give_same_hash(tiny_corpus, tmp_path):
    again = build(TINY_RECIPE, tmp_path / "again", progress=False)
    assert again.content_hash == tiny_corpus.content_hash
    a = (tiny_corpus.root / "manifest.jsonl").read_bytes()
    assert (again.root / "manifest.jsonl").read_bytes() == a
    other = build(TINY_RECIPE, tmp_path / "other", seed=12, progress=False)
    assert other.content_hash != tiny_corpus.content_hash


def test_recipe_corpus_is_labelled_split_and_leak_free(tiny_corpus):
    c = Corpus.open(tiny_corpus.root)
    counts = c.counts()
    for split in ("train", "calib", "test"):
        assert counts[split]["real"] > 0 and counts[split]["synthetic"] > 0
    # no photo contributes patches to two splits
    split_of: dict[str, set] = {}
    for r in c.records:
        if r.label == 0:
            split_of.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values())
    fake = next(r for r in c.records if r.label == 1)
    assert fake.provenance["generator"] == "dcgan-test"
    assert len(fake.provenance["checkpoint_sha256"]) == 64
    # both classes stored the same way
    assert {r.path.rsplit(".", 1)[1] for r in c.records} == {"png"}
    g = c.header["generators"]["0-dcgan-test"]["quality"]
    assert g["fd_generated"] < g["fd_untrained"]
    assert (c.root / "generators" / "0-dcgan-test" / "samples.png").is_file()


def test_interrupted_build_resumes(tiny_corpus, tmp_path, monkeypatch):
    from detect.io.corpus import CorpusWriter

    out = tmp_path / "resumed"
    real_close = CorpusWriter.close

    def interrupted(self, extra=None):
        self._fh.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(CorpusWriter, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(TINY_RECIPE, out, progress=False)
    monkeypatch.setattr(CorpusWriter, "close", real_close)
    # lose half the manifest and tear its last line, as a kill mid-write would
    lines = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[-1][:30])
    with pytest.raises(ConfigError, match="missing corpus.json"):
        Corpus.open(out)
    with pytest.raises(ConfigError, match="another recipe or seed"):
        build(TINY_RECIPE, out, seed=99, progress=False)
    again = build(TINY_RECIPE, out, progress=False)
    assert again.content_hash == tiny_corpus.content_hash
    assert not (out / "build.json").exists()


def test_recipe_errors_are_clear(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('schema = "unmask.recipe/1"\nname = "x"\n')
    with pytest.raises(ConfigError, match="missing"):
        load_recipe(bad)
    text = TINY_RECIPE.read_text().replace('generator = "dcgan-test"', 'generator = "dcgam-test"')
    bad.write_text(text)
    with pytest.raises(ConfigError, match="did you mean dcgan-test"):
        load_recipe(bad)
    bad.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)


def test_generator_evidence_is_published(tiny_corpus, tmp_path):
    from generators.recipe import publish_evidence

    d = publish_evidence(tiny_corpus, tmp_path)
    assert (d / "0-dcgan-test-samples.png").stat().st_size > 1000
    q = json.loads((d / "0-dcgan-test-quality.json").read_text())
    assert q["fd_generated"] < q["fd_untrained"]
    assert "| dcgan-test | gan |" in (d / "README.md").read_text()


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "datasets" /
                                           "recipes").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid(recipe):
    r = load_recipe(recipe)
    assert r["name"] and isinstance(r["seed"], int)
    for syn in r["synthetic"]:
        if "generator" in syn:  # face recipes also have forgery methods ("method")
            generators.create(syn["generator"], **syn.get("params", {}))  # params are accepted
