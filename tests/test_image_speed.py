"""benchmarks/image_speed.py end to end at its smallest: one 512x512 JPEG, one cheap shipped
detector, one repetition. Speed is never asserted here (the target lives in the benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.image_speed import main


def test_image_speed_writes_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "image_speed"
    assert main(["--detector", "spectrum-logreg", "--sizes", "512x512", "--photos", "1",
                 "--repeat", "1", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["detectors"] == ["spectrum-logreg"]
    stages = {r["stage"]: r for r in res["rows"] if r["size"] == "512x512"}
    assert set(stages) == {"decode", "score:spectrum-logreg", "scan_item", "end_to_end",
                           "end_to_end_watermarks"}
    assert all(r["median_s"] > 0 and r["p90_s"] >= r["median_s"] for r in stages.values())
    assert res["target"]["status"] == "not measured"  # 1024x768 was not among the sizes
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "0.2 s for a 1024x768 JPEG on 2 cores" in md and "spectrum-logreg" in md
    assert (out / "results.png").stat().st_size > 0 and res["run"]["argv"]
