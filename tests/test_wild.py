"""benchmarks/wild.py: a user's labelled folder or manifest through the shipped stack."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import wild
from detect.core.errors import ConfigError

HOLDOUT = Path(__file__).parent / "data" / "shipped-holdout"


def _folder(tmp_path: Path) -> Path:
    """real/ and fake/<group>/ from the shipped held-out images (their labels file says which)."""
    labels = json.loads((HOLDOUT / "labels.json").read_text())["labels"]
    root = tmp_path / "set"
    (root / "real").mkdir(parents=True)
    (root / "fake" / "tiny").mkdir(parents=True)
    reals = [k for k, v in labels.items() if v == 0][:6]
    fakes = [k for k, v in labels.items() if v == 1][:6]
    for k in reals:
        shutil.copy(HOLDOUT / k, root / "real" / k)
    for k in fakes:
        shutil.copy(HOLDOUT / k, root / "fake" / "tiny" / k)
    (root / "fake" / "tiny" / "truncated.png").write_bytes((HOLDOUT / fakes[0]).read_bytes()[:60])
    (root / "real" / ".hidden.png").write_bytes(b"x")  # hidden files are not inputs
    return root


def test_labelled_files_from_a_folder_and_from_manifests(tmp_path):
    root = _folder(tmp_path)
    files = wild.labelled_files(root)
    assert len(files) == 13
    assert {g for _, _, g in files} == {"real", "fake/tiny"}
    assert sum(lab for _, lab, _ in files) == 7
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps({"path": str(Path(p).relative_to(tmp_path)),
                                         "label": "fake" if lab else "real", "group": g})
                             for p, lab, g in files) + "\n")
    assert sorted(wild.labelled_files(man)) == sorted(files)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab, _ in files))
    assert [lab for _, lab, _ in wild.labelled_files(csv)] == [lab for _, lab, _ in files]


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="needs a real/"):
        wild.labelled_files(tmp_path)
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"path": "a.png"}\n')
    with pytest.raises(ConfigError, match="row 1 needs a path and a label"):
        wild.labelled_files(bad)


def test_evaluate_counts_rates_at_the_shipped_threshold():
    rng = np.random.default_rng(0)
    recs = []
    for i in range(40):
        lab = int(i >= 20)
        s = float(rng.normal(2.0 * lab, 0.3))
        recs.append({"label": lab, "group": "fake/a" if lab else "real", "score": s,
                     "verdict": "synthetic" if s > 1.0 else "real",
                     "detectors": {"m": {"score": s, "threshold": 1.0}}})
    recs.append({"label": 1, "group": "fake/a", "score": None, "verdict": "error",
                 "detectors": {}})
    res = wild.evaluate(recs, n_boot=50)
    g = res["groups"]["fake/a"]
    assert g["n"] == 21 and g["errors"] == 1
    assert g["stack"]["auroc"] == 1.0  # separated by ~6 sigma: no overlap in 40 draws
    assert g["stack"]["tpr_at_shipped"]["n"] == 20  # the error is counted, not scored
    assert g["stack"]["tpr_at_shipped"]["value"] == 1.0
    assert res["groups"]["real"]["fpr_at_shipped"]["value"] == 0.0
    assert g["members"]["m"]["tpr_at_shipped"] == g["stack"]["tpr_at_shipped"]
    lo, hi = g["stack"]["tpr_at_shipped"]["ci95"]
    assert lo < 1.0 == hi


def test_wild_runs_the_shipped_stack_on_a_folder(tmp_path, capsys):
    root = _folder(tmp_path)
    out = tmp_path / "out"
    assert wild.main([str(root), "--out", str(out), "--detector", "spectrum-logreg",
                      "--bootstrap", "20", "--threads", "1"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["run"]["argv"] and res["run"]["git_commit"] is not None
    assert res["all"]["n_real"] == 6 and res["all"]["n_fake"] == 7
    assert res["groups"]["fake/tiny"]["errors"] == 1  # the truncated file: an error, not dropped
    assert len(res["records"]) == 13
    # the shipped spectrum model separates its own held-out fakes (AUROC 1.0 in the shipped
    # results); on 6 + 6 images allow a little slack
    assert res["groups"]["fake/tiny"]["stack"]["auroc"] > 0.8
    assert (out / "results.md").read_text().startswith("# The shipped stack")
    assert (out / "results.png").stat().st_size > 0
