"""The reconstruction detector: its reconstructors, its features and its saved form."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from benchmarks import metrics
from detect.core.detector import load_detector
from detect.core.errors import ConfigError, ModelError
from detect.core.registry import detectors, generators


def test_saved_model_carries_its_reconstructor(trained_models):
    mdir = trained_models["recon-test"]
    assert (mdir / "reconstructor" / "config.json").is_file()
    assert (mdir / "reconstructor" / "weights.safetensors").is_file()
    det = load_detector(mdir)
    assert det.gen_.family == "vae" and det.patch == det.gen_.size == 16
    assert len(det.coef_) == det.n_features == 7


def test_vae_reconstructs_real_patches_better_than_noise(trained_models, tiny_corpus):
    """The trained reconstructor learned: real photo patches reconstruct with a lower error than
    uniform noise, which no model of photographs can explain."""
    det = load_detector(trained_models["recon-test"])
    real = np.stack([it.content for it in tiny_corpus.split("test").filter(
        lambda r: r.label == 0).items])
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    err_real = det.features(real)[:, 0]
    err_noise = det.features(noise)[:, 0]
    assert np.median(err_real) < np.median(err_noise) - 1.0


@pytest.mark.slow
def test_diffusion_reconstructor_gives_one_feature_per_timestep(tiny_corpus, tmp_path):
    det = detectors.create("recon-test", reconstructor="train:diffusion-test",
                           timesteps=[50, 300], max_train=300)
    det.fit(tiny_corpus)
    assert det.gen_.family == "diffusion" and det.n_features == 3
    test = tiny_corpus.split("test")
    scores = det.score(test.items)
    assert metrics.auroc(test.labels, scores) > 0.6
    again = load_detector(det.save(tmp_path / "recon-diff"))
    np.testing.assert_allclose(again.score(test.items[:8]), scores[:8], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_white_box_reconstructor_from_a_saved_generator(tiny_corpus, tmp_path):
    gen = generators.create("vae-test", steps=30, seed=5)
    real = np.stack([it.content for it in tiny_corpus.split("train").filter(
        lambda r: r.label == 0).items])
    gen.fit(real, progress=False).save(tmp_path / "vae")
    det = detectors.create("recon-test", reconstructor=str(tmp_path / "vae")).fit(tiny_corpus)
    assert det.gen_.get_params()["seed"] == 5  # the given model, not a newly trained one
    assert det.patch == 16


def test_reconstructor_must_be_a_vae_or_diffusion_model(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="gan generator"):
        detectors.create("recon-test", reconstructor="train:dcgan-test").fit(tiny_corpus)
    with pytest.raises(ConfigError, match="neither train:NAME nor a saved generator"):
        detectors.create("recon-test", reconstructor=str(tmp_path / "nowhere"))\
            ._prepare_reconstructor([], np.random.default_rng(0))
    gan_dir = tiny_corpus.root / "generators"
    saved_gan = next(p / "model" for p in gan_dir.iterdir() if (p / "model").is_dir())
    with pytest.raises(ConfigError, match="gan model"):
        detectors.create("recon-test", reconstructor=str(saved_gan)).fit(tiny_corpus)


def test_load_names_a_missing_reconstructor(trained_models, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(trained_models["recon-test"], bad)
    shutil.rmtree(bad / "reconstructor")
    with pytest.raises(ModelError, match="reconstructor/ folder"):
        load_detector(bad)


@pytest.mark.slow
def test_train_scan_and_inspect_from_the_command_line(tiny_corpus, tmp_path):
    """As a user runs it: train a recon detector, scan with it, see its heat map."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image
    from skimage import data

    exe = Path(sys.executable).parent / "unmask"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "detect.cli"]
    env = {**os.environ, "TQDM_DISABLE": "1"}

    def unmask(*args):
        return subprocess.run([*cmd, *map(str, args)], capture_output=True, env=env, timeout=600)

    r = unmask("train", "recon-test", "--corpus", tiny_corpus.root, "--out", tmp_path / "m",
               "--set", "max_train=200")
    assert r.returncode == 0, r.stderr[-2000:]
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    r = unmask("scan", photo, "-m", tmp_path / "m", "--fail-on", "never")
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout)
    assert rec["detectors"]["recon-test"]["verdict"] in {"real", "synthetic", "uncertain"}
    r = unmask("inspect", photo, "-m", tmp_path / "m", "--heatmap", tmp_path / "heat.png")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    tiles = json.loads(r.stdout)["detectors"]["recon-test"]["tiles"]
    assert len(tiles["rows"]) * len(tiles["cols"]) > 1
    assert (tmp_path / "heat.png").stat().st_size > 10_000


def test_timesteps_outside_the_diffusion_schedule_are_refused(tiny_corpus, tmp_path):
    gen = generators.create("diffusion-test", steps=2)
    real = np.stack([it.content for it in tiny_corpus.split("train").filter(
        lambda r: r.label == 0).items])
    gen.fit(real[:64], progress=False).save(tmp_path / "diff")
    with pytest.raises(ConfigError, match=r"timesteps must be integers in \[0, 1000\)"):
        detectors.create("recon-test", reconstructor=str(tmp_path / "diff"),
                         timesteps=[10, 1000]).fit(tiny_corpus)
