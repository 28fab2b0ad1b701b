"""Benchmark scripts run as a user runs them, on tiny corpora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generators.recipe import build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_family_corpus(tmp_path_factory):
    from conftest import TINY_RECIPE

    text = TINY_RECIPE.read_text().replace('name = "tiny-test"', 'name = "tiny-two"')
    text += '\n[[synthetic]]\ngenerator = "vae-test"\ncount = 160\n'
    text = text.replace("seed = 11", 'seed = 11\nheld_out_families = ["vae"]')
    root = tmp_path_factory.mktemp("two")
    (root / "r.toml").write_text(text)
    return build(root / "r.toml", root / "corpus", progress=False)


def run(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                       timeout=900, env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_leave_one_family_out(two_family_corpus, tmp_path):
    out = tmp_path / "lofo"
    run("benchmarks/lofo.py", "--corpus", str(two_family_corpus.root), "--out", str(out),
        "--work", str(tmp_path / "work"), "--detectors", "spectrum-test", "recon-test",
        "recon-test@whitebox", "fusion-lofo", "fusion-lofo-maxp")
    res = json.loads((out / "results.json").read_text())
    assert res["held_out_by_recipe"] == ["vae"] and res["families"] == ["gan", "vae"]
    clean = {r["held_out"]: r for r in res["rows"] if r["condition"] == "clean"}
    # vae is held out by the recipe: that fold trains on gan only; the gan fold has no training
    # family left (vae is test-only), so it is skipped rather than faked
    assert set(clean) == {"vae"} and clean["vae"]["trained_on"] == ["gan"]
    attacked = {r["condition"] for r in res["rows"] if r["held_out"] == "vae"}
    assert {"jpeg:quality=30", "resize:scale=0.5", "blur:sigma=1.0", "noise:sigma=8"} <= attacked
    for r in res["rows"]:
        assert 0.0 <= r["auroc"] <= 1.0 and r["n_real"] > 0 and r["n_synthetic"] > 0
    assert (out / "roc-vae.png").stat().st_size > 5000
    assert "| vae | gan | spectrum-test | clean |" in (out / "results.md").read_text()
    # recon: its reconstructor is trained once on real train images and shared by the folds;
    # the white-box row reconstructs through the very VAE that made the held-out fakes
    assert (tmp_path / "work" / "reconstructors" / "recon-test" / "config.json").is_file()
    labels = {r["label"] for r in res["rows"] if r["held_out"] == "vae"}
    assert {"spectrum-test", "recon-test", "recon-test@whitebox", "fusion-lofo",
            "fusion-lofo-maxp"} <= labels
    # the fusions fuse the fold's own non-white-box members
    fcfg = json.loads((tmp_path / "work" / "without-vae" / "fusion-lofo-maxp" / "config.json")
                      .read_text())
    assert fcfg["params"]["method"] == "max-p"
    # scores are kept beside each model, one file per condition, so a rerun resumes
    stored = list((tmp_path / "work" / "without-vae" / "spectrum-test" / "lofo-scores")
                  .glob("*.npy"))
    assert len(stored) == len(attacked)
    # --retrain makes new models: their old stored scores go with them
    (stored[0].parent / "marker.npy").write_bytes(b"")
    run("benchmarks/lofo.py", "--corpus", str(two_family_corpus.root), "--out", str(out),
        "--work", str(tmp_path / "work"), "--detectors", "spectrum-test", "--retrain")
    assert not (stored[0].parent / "marker.npy").exists()
    assert [Path(m).name for m in fcfg["params"]["members"]] == ["spectrum-test", "recon-test"]
    wb = json.loads((tmp_path / "work" / "without-vae" / "recon-test@whitebox" /
                     "config.json").read_text())
    assert wb["params"]["reconstructor"].endswith("model")
    assert wb["state"]["reconstructor"]["params"]["seed"] != \
        json.loads((tmp_path / "work" / "reconstructors" / "recon-test" / "config.json")
                   .read_text())["params"]["seed"]


def test_format_bias_control(tiny_corpus, tmp_path):
    out = tmp_path / "fb"
    run("benchmarks/format_bias.py", "--corpus", str(tiny_corpus.root), "--out", str(out),
        "--work", str(tmp_path / "work"), "--detectors", "spectrum-test")
    res = json.loads((out / "results.json").read_text())
    conds = [r["condition"] for r in res["rows"]]
    assert conds == ["as stored", "as stored -> re-encoded", "control"]
    assert res["control"] == {"attack": "jpeg", "quality": 90, "subsampling": "4:4:4"}
    assert sum(res["origin_formats"]["real"].values()) == \
        sum(1 for r in tiny_corpus.records if r.label == 0)
    # the control model was trained on re-encoded items: its recorded corpus hash says so
    ctl = json.loads((tmp_path / "work" / "control" / "spectrum-test" / "config.json")
                     .read_text())
    plain = json.loads((tmp_path / "work" / "as-stored" / "spectrum-test" / "config.json")
                       .read_text())
    assert ctl["trained_on"]["content_hash"] != plain["trained_on"]["content_hash"]
    assert "| spectrum-test |" in (out / "results.md").read_text()


def test_fusion_of_shipped_models_stores_them_by_name(tiny_corpus, tmp_path):
    import numpy as np

    from detect.core.detector import load_detector
    from detect.core.registry import detectors

    fused = detectors.create("fusion").fit(tiny_corpus)  # members: the shipped defaults
    d = fused.save(tmp_path / "fusion")
    assert not (d / "members").exists(), "shipped members are referenced, not copied"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["state"]["members"] == ["cnn-resnet10t-slim", "spectrum-logreg"]
    items = tiny_corpus.split("test").items
    np.testing.assert_allclose(load_detector(d).score(items), fused.score(items), rtol=1e-6)
    assert fused.trained_on_["n_fit"] + fused.trained_on_["n_calibrate"] == \
        len(tiny_corpus.split("calib"))


def test_attack_description_holds_parameters_only():
    from benchmarks.runner import parse_attack

    atk = parse_attack("jpeg:quality=40")
    assert atk.spec == "jpeg:quality=40" and atk.name == "jpeg"
    assert atk.describe() == {"attack": "jpeg", "quality": 40, "subsampling": "4:2:0"}


def test_bench_keeps_two_models_of_one_name_apart_and_refuses_a_one_class_split(
        trained_models, tiny_corpus, tmp_path):
    import shutil

    from benchmarks.runner import run as bench
    from detect.core.errors import ConfigError

    a = trained_models["spectrum-test"]
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    board = bench(tiny_corpus.root, [a, b], tmp_path / "out", progress=False)
    labels = [r["label"] for r in board["rows"]]
    assert len(set(labels)) == 2 and "spectrum-test" in labels
    assert f"spectrum-test ({b})" in (tmp_path / "out" / "leaderboard.md").read_text()
    one_class = tmp_path / "one"
    shutil.copytree(tiny_corpus.root, one_class)
    man = one_class / "manifest.jsonl"
    lines = [ln for ln in man.read_text().splitlines()
             if not ('"split":"test"' in ln and '"label":1' in ln)]
    man.write_text("\n".join(lines) + "\n")
    import json as _json

    hdr = _json.loads((one_class / "corpus.json").read_text())
    hdr.pop("content_hash", None)
    (one_class / "corpus.json").write_text(_json.dumps(hdr))
    with pytest.raises(ConfigError, match="needs real and synthetic"):
        bench(one_class, [a], tmp_path / "out2", progress=False)
