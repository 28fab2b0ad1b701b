"""The benchmark results layout: one writer (benchmarks/results.py), and every committed
results folder written through it (or converted into it by benchmarks/convert_results.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.results import write_results

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RUN_KEYS = {"argv", "command", "git_commit", "started", "finished", "machine", "versions"}


def result_folders(root: Path = RESULTS) -> list[Path]:
    """Leaf results folders: one with a results.json, or one without sub-folders."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        subs = [p for p in d.iterdir() if p.is_dir()]
        if (d / "results.json").exists() or not subs:
            out.append(d)
        else:
            out += result_folders(d)
    return out


def test_write_results_run_block(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = write_results(tmp_path / "bench", {"rows": [{"auroc": np.float64(0.5)}]},
                        "# Table\n\n| a |\n|---|\n| 1 |", figure=fig,
                        argv=["benchmarks/x.py", "--out", "o"])
    rec = json.loads((out / "results.json").read_text())
    assert rec["rows"] == [{"auroc": 0.5}]
    run = rec["run"]
    assert set(run) >= RUN_KEYS
    assert run["argv"] == ["python", "benchmarks/x.py", "--out", "o"]
    assert run["command"] == "python benchmarks/x.py --out o"
    assert re.fullmatch(r"[0-9a-f]{40}", run["git_commit"]) and isinstance(run["git_dirty"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["finished"])
    assert run["started"] <= run["finished"]
    assert {"python", "numpy", "unmask"} <= set(run["versions"])
    assert run["machine"]["cpus"] >= 1
    md = (out / "results.md").read_text()
    assert md.startswith("# Table") and "python benchmarks/x.py --out o" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_results_keeps_a_run_block_and_copies_a_png(tmp_path: Path) -> None:
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    run = {"converted_from": ["old.json"], "command": "python old.py", "git_commit": "abc"}
    out = write_results(tmp_path / "b", {"run": run, "x": 1}, "text", figure=png)
    assert json.loads((out / "results.json").read_text())["run"] == run
    assert (out / "results.png").read_bytes() == png.read_bytes()
    assert "Converted" in (out / "results.md").read_text()
    write_results(out, {"x": 2}, "again", figure=lambda p: p.write_bytes(b"drawn"))
    assert (out / "results.png").read_bytes() == b"drawn"


@pytest.mark.parametrize("folder", result_folders(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_results_folder(folder: Path) -> None:
    rec = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    run = rec["run"]
    assert set(run) >= RUN_KEYS, sorted(RUN_KEYS - set(run))
    assert run["argv"] and run["command"]
    assert re.fullmatch(r"[0-9a-f]{40}", run["git_commit"])
    if run.get("converted_from"):  # converted, not rerun: says so, and from what
        assert all(isinstance(f, str) for f in run["converted_from"])
    else:
        assert run["started"] and run["finished"] and run["versions"]
    md = (folder / "results.md").read_text(encoding="utf-8")
    assert md.strip()
    for pic in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md):  # every picture it shows exists
        assert (folder / pic).is_file(), pic


def test_results_root_holds_only_folders() -> None:
    stray = [p.name for p in RESULTS.iterdir() if p.is_file()]
    assert not stray, f"results written outside a folder: {stray}"


@pytest.mark.parametrize("doc", ["README.md", "benchmarks/README.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = RESULTS.parents[1] / doc
    links = re.findall(r"\]\(([^)#\s]+)\)", path.read_text(encoding="utf-8"))
    missing = [t for t in links if "://" not in t and not (path.parent / t).exists()]
    assert not missing, missing
