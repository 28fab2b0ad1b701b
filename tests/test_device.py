"""``device=`` on every torch model in detect: parsed by torch, checked against the machine,
saved with the model, CPU by default (and for models saved before the argument existed).

This machine may have no GPU; then the GPU path itself cannot run here, and these tests check
what can be checked without one: the argument, its parsing and errors, and that an explicit
``device="cpu"`` gives exactly the default's scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from detect.core.detector import load_detector
from detect.core.device import torch_device
from detect.core.errors import ConfigError, ModelError
from detect.core.models import MODELS_DIR
from detect.core.registry import detectors

TORCH_DETECTORS = ["cnn-test", "npr-test", "recon-test", "lm-fastdetect-test",
                   "text-classifier-test"]


def test_torch_device_parses_with_torch():
    import torch

    assert torch_device("cpu", "x") == torch.device("cpu")
    assert torch_device("cpu:0", "x") == torch.device("cpu", 0)
    for bad in ("gpu", "cuda:x", "", "cuda:-1"):
        with pytest.raises(ConfigError, match=rf"my-det: device {bad!r} is not a torch device"):
            torch_device(bad, "my-det")
    with pytest.raises(ConfigError, match="device must be a string"):
        torch_device(0, "my-det")
    # a real torch device type with no backend behind it
    with pytest.raises(ConfigError, match="'meta' is not available on this machine"):
        torch_device("meta", "my-det")


def test_a_missing_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=f"'cuda:{n}' does not exist"):
            torch_device(f"cuda:{n}", "my-det")
    else:
        with pytest.raises(ConfigError, match="'cuda' is not available on this machine"):
            torch_device("cuda", "my-det")


@pytest.mark.parametrize("name", TORCH_DETECTORS)
def test_every_torch_detector_takes_a_device(name):
    det = detectors.create(name)
    assert det.get_params()["device"] == "cpu"  # the default, so it is saved in config.json
    assert detectors.create(name, device="cpu:0").get_params()["device"] == "cpu:0"
    with pytest.raises(ConfigError, match="device 'gpu' is not a torch device"):
        detectors.create(name, device="gpu")


def test_numpy_detectors_take_no_device():
    for name in ("spectrum-test", "text-tfidf-test"):
        assert "device" not in detectors.create(name).get_params()


@pytest.mark.parametrize("model", ["cnn-resnet10t-slim", "npr-resnet10t-slim", "recon-vae",
                                   "lm-fastdetect"])
def test_shipped_models_saved_without_a_device_load_on_cpu(model):
    cfg = json.loads((MODELS_DIR / model / "config.json").read_text())
    assert "device" not in cfg["params"]  # saved before the argument existed
    det = load_detector(MODELS_DIR / model)
    assert det.device == "cpu"
    nets = {"lm-fastdetect": lambda: det.scorer.model}.get(
        model, lambda: det.model_ if hasattr(det, "model_") else det.gen_.modules_["vae"])
    assert {p.device.type for p in nets().parameters()} == {"cpu"}


def test_explicit_cpu_scores_exactly_as_the_default_and_is_saved(tmp_path):
    from detect.app.release import read_holdout
    from detect.io.media import load

    hold = MODELS_DIR.parent.parent / "tests" / "data" / "shipped-holdout"
    names = sorted(read_holdout(hold)["labels"])[:6]
    items = [load(hold / n) for n in names]
    src = MODELS_DIR / "cnn-resnet10t-slim"
    default = load_detector(src).score(items)
    explicit = load_detector(src, device="cpu")
    assert explicit.device == "cpu"
    np.testing.assert_array_equal(explicit.score(items), default)
    saved = explicit.save(tmp_path / "cnn")
    assert json.loads((saved / "config.json").read_text())["params"]["device"] == "cpu"
    np.testing.assert_array_equal(load_detector(saved).score(items), default)


def test_a_saved_bad_device_fails_to_load_naming_it(tmp_path):
    d = tmp_path / "cnn"
    shutil.copytree(MODELS_DIR / "cnn-resnet10t-slim", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["params"]["device"] = "tpu-ish"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"config\.json: .*device 'tpu-ish' is not a torch dev"):
        load_detector(d)
    # the load-time override wins over what was saved
    assert load_detector(d, device="cpu").device == "cpu"


def test_lm_scorer_runs_where_it_is_told():
    from detect.text.lm import LMScorer, load_lm

    sc = LMScorer("shipped:text-lm-a", device="cpu")
    assert {p.device.type for p in sc.model.parameters()} == {"cpu"}
    ts = sc.stats(["The committee met on Tuesday and agreed to publish the report."])[0]
    assert ts.n_scored > 0 and np.isfinite(ts.logp).all()
    with pytest.raises(ConfigError, match="device 'gpu' is not a torch device"):
        LMScorer("shipped:text-lm-a", device="gpu")
    with pytest.raises(ConfigError, match="device 'gpu'"):
        load_lm(str(MODELS_DIR / "text-lm-a"), "gpu")
