"""The ``unmask`` command as a user runs it: a subprocess, real files, real trained models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BIN = Path(sys.executable).parent / "unmask"


def unmask(*args, stdin: bytes | None = None, check_code: int | None = None):
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "detect.cli"]
    r = subprocess.run([*cmd, *map(str, args)], input=stdin, capture_output=True, env=env,
                       timeout=600)
    if check_code is not None:
        assert r.returncode == check_code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


def records(stdout: bytes) -> list[dict]:
    out = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    for rec in out:
        assert rec["schema"] == "unmask.finding/1"
        assert rec["verdict"] in {"synthetic", "real", "uncertain", "error"}
        assert set(rec) >= {"path", "sha256", "modality", "score", "threshold", "target_fpr",
                            "detectors", "watermarks", "provenance", "error", "elapsed_ms"}
    return out


@pytest.fixture(scope="module")
def upload_folder(tiny_corpus, tmp_path_factory):
    """A moderation inbox: good real and fake images, broken files, text, a nested folder."""
    root = tmp_path_factory.mktemp("inbox")
    test = tiny_corpus.split("test")
    reals = [r for r in test.records if r.label == 0][:3]
    fakes = [r for r in test.records if r.label == 1][:3]
    for i, r in enumerate(reals):
        shutil.copy(tiny_corpus.root / r.path, root / f"real{i}.png")
    (root / "nested" / "deeper").mkdir(parents=True)
    for i, r in enumerate(fakes):
        shutil.copy(tiny_corpus.root / r.path, root / "nested" / "deeper" / f"fake{i}.png")
    photo = np.asarray(Image.open(tiny_corpus.root / reals[0].path).convert("RGB"))
    Image.fromarray(np.tile(photo, (4, 4, 1))).save(root / "big.jpg", quality=95)
    (root / "truncated.jpg").write_bytes((root / "big.jpg").read_bytes()[:200])
    (root / "empty.png").write_bytes(b"")
    (root / "random.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "note.txt").write_text("A plain note, which no image detector can judge.\n")
    (root / ".hidden.png").write_bytes((root / "real0.png").read_bytes())
    return root


def test_version_and_help():
    r = unmask("--version", check_code=0)
    assert b"unmask" in r.stdout
    assert b"--fail-on" in unmask("scan", "--help", check_code=0).stdout


def test_list_with_wildcard_and_close_matches(trained_models, tiny_corpus, tmp_path):
    r = unmask("list", "detectors", "cnn-*", check_code=0)
    names = [line.split("\t")[0] for line in r.stdout.decode().splitlines()]
    assert names and all(n.startswith("cnn-") for n in names) and "cnn-test" in names
    r = unmask("train", "spectrum-logreq", "--corpus", tiny_corpus.root, "--out", tmp_path / "m",
               check_code=2)
    assert b"did you mean spectrum-logreg" in r.stderr
    assert b"Traceback" not in r.stderr and len(r.stderr.decode().strip().splitlines()) == 1


def test_scan_folder_one_record_per_input(upload_folder, trained_models):
    model = trained_models["spectrum-test"]
    r = unmask("scan", upload_folder, "--model", model)
    recs = records(r.stdout)
    names = sorted(Path(x["path"]).name for x in recs)
    expected = sorted(p.name for p in upload_folder.rglob("*")
                      if p.is_file() and not p.name.startswith("."))
    assert names == expected, "exactly one record per input, none lost, none doubled"
    by = {Path(x["path"]).name: x for x in recs}
    for bad, why in (("truncated.jpg", "truncated"), ("empty.png", "empty"),
                     ("random.bin", "unrecognised format"), ("note.txt", "no loaded detector")):
        assert by[bad]["verdict"] == "error" and why in by[bad]["error"], by[bad]
        assert bad in by[bad]["error"], "the error names the file"
    for good in ("real0.png", "fake0.png", "big.jpg"):
        rec = by[good]
        assert rec["error"] is None and len(rec["sha256"]) == 64 and rec["modality"] == "image"
        assert rec["threshold"] is not None and rec["target_fpr"] == pytest.approx(0.01)
        assert "spectrum-test" in rec["detectors"]
    # the tiny calib split (~40 reals) cannot hold 1%: the record says so instead of a verdict
    for good in ("real0.png", "fake0.png"):
        res = by[good]["detectors"]["spectrum-test"]
        assert by[good]["verdict"] == "uncertain" and "real samples" in res["reason"]
        assert res["calibration"]["supports_fpr"] > 0.01
    assert r.returncode == 2  # errors, and no finding at an unsupported FPR
    assert b"left out 1 hidden entry" in r.stderr
    r = unmask("scan", upload_folder, "--model", model, "--target-fpr", "0.1", check_code=1)
    by = {Path(x["path"]).name: x for x in records(r.stdout)}
    assert sum(by[f"fake{i}.png"]["verdict"] == "synthetic" for i in range(3)) >= 2
    r2 = unmask("scan", upload_folder, "--model", model, "--include-hidden")
    assert len(records(r2.stdout)) == len(recs) + 1


def test_exit_codes(upload_folder, trained_models, tmp_path):
    model = trained_models["spectrum-test"]
    broken = [upload_folder / n for n in ("truncated.jpg", "empty.png", "random.bin")]
    r = unmask("scan", *broken, "--model", model, check_code=2)
    assert len(records(r.stdout)) == 3
    fakes = list((upload_folder / "nested").rglob("*.png"))
    # 10%: an FPR the tiny model's ~40 calibration reals support (1% would be "uncertain")
    unmask("scan", *fakes, "--model", model, "--target-fpr", "0.1", check_code=1)
    unmask("scan", *fakes, "--model", model, "--target-fpr", "0.1", "--fail-on", "never",
           check_code=0)
    # a missing path is an error record, not a crash
    r = unmask("scan", tmp_path / "nope.png", "--model", model, check_code=2)
    assert "no such file" in records(r.stdout)[0]["error"]
    # a clean run: real images only, judged at a lax-enough FPR that none is flagged
    reals = sorted(upload_folder.glob("real*.png"))
    r = unmask("scan", *reals, "--model", model, "--fail-on", "synthetic", "--target-fpr", "0")
    assert r.returncode == 0, records(r.stdout)


def test_scan_stdin_and_output_file(upload_folder, trained_models, tmp_path):
    model = trained_models["spectrum-test"]
    data = (upload_folder / "real0.png").read_bytes()
    r = unmask("scan", "-", "--model", model, stdin=data)
    (rec,) = records(r.stdout)
    assert rec["path"] == "<stdin>" and rec["error"] is None
    out = tmp_path / "findings.jsonl"
    unmask("scan", upload_folder / "real0.png", upload_folder / "empty.png", "--model", model,
           "-o", out)
    assert len(records(out.read_bytes())) == 2


@pytest.mark.slow
def test_inspect_gives_every_detector_and_a_heat_map(upload_folder, trained_models):
    models = [trained_models["spectrum-test"], trained_models["cnn-test"]]
    r = unmask("inspect", upload_folder / "big.jpg", "-m", models[0], "-m", models[1],
               check_code=0)
    rep = json.loads(r.stdout)
    assert rep["schema"] == "unmask.inspect/2" and rep["format"] == "jpeg"
    assert set(rep["detectors"]) == {"spectrum-test", "cnn-test"}
    for d in rep["detectors"].values():
        assert d["verdict"] in {"synthetic", "real", "uncertain"}
        grid = np.array(d["tiles"]["scores"], dtype=float)
        assert grid.shape == (len(d["tiles"]["rows"]), len(d["tiles"]["cols"])) and grid.size > 1
        assert np.isfinite(d["score"]) and np.all(np.isfinite(grid))
    png = upload_folder.parent / "heat.png"
    r = unmask("inspect", upload_folder / "big.jpg", "-m", models[0], "--heatmap", png,
               check_code=0)
    assert json.loads(r.stdout)["heatmap"] == str(png) and png.stat().st_size > 10_000
    r = unmask("inspect", upload_folder / "truncated.jpg", "-m", models[0], check_code=2)
    assert b"truncated" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.slow
def test_generate_train_bench_from_the_command_line(tmp_path):
    from conftest import TINY_RECIPE

    corpus = tmp_path / "c"
    r = unmask("generate", TINY_RECIPE, "--out", corpus, check_code=0)
    info = json.loads(r.stdout)
    assert len(info["content_hash"]) == 64
    unmask("train", "spectrum-test", "--corpus", corpus, "--out", tmp_path / "m",
           "--target-fpr", "0.05", "--set", "bins=12", check_code=0)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["params"]["bins"] == 12 and cfg["calibration"]["target_fpr"] == 0.05
    r = unmask("bench", "--corpus", corpus, "--model", tmp_path / "m", "--out", tmp_path / "b",
               "--attack", "jpeg:quality=50", check_code=0)
    assert b"| spectrum-test | clean |" in r.stdout and b"jpeg:quality=50" in r.stdout
    board = json.loads((tmp_path / "b" / "leaderboard.json").read_text())
    assert board["schema"] == "unmask.leaderboard/1"
    assert {row["condition"] for row in board["rows"]} == {"clean", "jpeg:quality=50"}
    for row in board["rows"]:
        assert 0 <= row["auroc"] <= 1 and 0 <= row["eer"] <= 1
    assert (tmp_path / "b" / "roc.png").stat().st_size > 10_000
    assert (tmp_path / "b" / "leaderboard.md").read_text().startswith("# Leaderboard")


@pytest.mark.slow
def test_quickstart_trains_a_fusion_of_its_own_models_and_ships_it_by_name(tmp_path):
    """A fusion listed first still trains last, over this run's members; shipping it refers
    to the members by name (no second copy of their weights in the package)."""
    from conftest import TINY_RECIPE, WILD_TINY_RECIPE, WILD_TINY_SET

    from detect.app.release import release

    out = tmp_path / "qs"
    unmask("quickstart", "--recipe", TINY_RECIPE, "--out", out, "--target-fpr", "0.05",
           "--detectors", "fusion-test", "spectrum-test", "npr-test", "--attack",
           "jpeg:quality=75", "--wild-recipe", WILD_TINY_RECIPE,
           *sum((["--wild-set", s] for s in WILD_TINY_SET), []), check_code=0)
    # the wild line trained too (on the wild recipe given), and its primary decides the scan
    from benchmarks.wild_release import LINE

    for n in ("fusion-wild", "effnet-probe", "effnet-tune"):
        assert (out / "wild-models" / n / "config.json").is_file()
    assert (out / "wild-bench" / "leaderboard.json").is_file()
    cfg = json.loads((out / "models" / "fusion-test" / "config.json").read_text())
    assert cfg["params"]["members"] == [str(out / "models" / n)
                                        for n in ("spectrum-test", "npr-test")]
    assert cfg["state"]["members"] == ["members/0", "members/1"]
    scan = [json.loads(line) for line in (out / "scan.jsonl").read_text().splitlines()]
    assert all("fusion-test" in r["detectors"] for r in scan if r["error"] is None)
    assert all(r["decided_by"] == LINE[0] for r in scan if r["error"] is None
               and r["modality"] == "image" and r["detectors"][LINE[0]].get("decides", True))
    shipped = tmp_path / "models"
    for n in ("spectrum-test", "npr-test"):
        shutil.copytree(out / "models" / n, shipped / n)
    release({"fusion-test": out / "models" / "fusion-test"}, defaults={"image": ["fusion-test"]},
            dest=shipped)
    assert sorted(p.name for p in (shipped / "fusion-test").iterdir()) == \
        ["config.json", "weights.safetensors"]
    again = json.loads((shipped / "fusion-test" / "config.json").read_text())
    assert again["state"]["members"] == ["spectrum-test", "npr-test"]
    assert json.loads((shipped / "defaults.json").read_text())["image"] == ["fusion-test"]
    # one release of the members and their fusion together, with a held-out sample
    from detect.app.release import Holdout, read_holdout
    from detect.io.corpus import Corpus

    corpus = Corpus.open(out / "corpus")
    picked = corpus.split("test").records[:4]
    both = tmp_path / "release" / "models"
    release({n: out / "models" / n for n in ("fusion-test", "spectrum-test", "npr-test")},
            defaults={"image": ["fusion-test"]}, dest=both,
            holdout=Holdout("shipped-holdout", corpus, picked))
    assert json.loads((both / "fusion-test" / "config.json").read_text())["state"][
        "members"] == ["spectrum-test", "npr-test"]
    meta = read_holdout(tmp_path / "release" / "holdout" / "shipped-holdout")
    assert meta["corpus_hash"] == corpus.content_hash and meta["frame_labels"] == {}
    assert meta["labels"] == {Path(r.path).name: r.label for r in picked}
    assert set(meta["modalities"].values()) == {"image"}
    # a member that is not the shipped one is refused rather than silently swapped
    (shipped / "npr-test" / "weights.safetensors").write_bytes(
        (shipped / "spectrum-test" / "weights.safetensors").read_bytes())
    from detect.core.errors import ConfigError

    with pytest.raises(ConfigError, match="differs from the shipped npr-test"):
        release({"fusion-test": out / "models" / "fusion-test"}, defaults={}, dest=shipped)
