"""One-off: move the committed results of the benchmarks too expensive to rerun for the change
into the layout of ``benchmarks/results.py`` (``results.json`` with a ``run`` block,
``results.md``, ``results.png``), without running anything again.

    python benchmarks/convert_results.py            # convert every folder not yet converted

The figures are the old files' figures, unchanged. The ``run`` block says what this is:
``converted_from`` (the old file names), ``git_commit`` (the commit that last wrote the old
JSON, from ``git log``), ``written`` (that commit's date), ``argv`` (the command the old files
record; else the documented one from ``benchmarks/README.md``, with ``argv_documented: true``),
and ``machine`` / ``versions`` as recorded then (``null`` where they were not). A folder whose
``results.json`` already has a run block is left alone, so running this again does nothing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results import RUN_SCHEMA, run_line  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
VERSION_KEYS = ("python", "torch", "torchvision", "numpy", "scikit-learn", "timm",
                "transformers", "diffusers")

# folder: (old JSON files, or one {key: file} mapping merged into one record; old Markdown
# files; old picture -> results.png; the command documented when the old files record none).
# Paths are relative to the folder ("../x.json": a file of the old flat layout, moved in).
FOLDERS: dict[str, dict[str, Any]] = {
    "generation_throughput": {
        "json": "../generation_throughput.json", "md": ["../generation_throughput.md"],
        "png": None, "documented": None},
    "lofo": {"json": "lofo.json", "md": ["lofo.md"], "png": None, "documented": None},
    "format_bias": {"json": "format_bias.json", "md": ["format_bias.md"], "png": None,
                    "documented": None},
    "face_detection": {
        "json": "results.json", "md": ["results.md"], "png": "roc.png",
        "documented": "python benchmarks/face_detection.py --work runs/faces "
                      "--out benchmarks/results/face_detection"},
    "video_calibration": {
        "json": "results.json", "md": ["results.md"], "png": "scores.png",
        "documented": "python benchmarks/video_calibration.py --work runs/video-calib "
                      "--out benchmarks/results/video_calibration"},
    "text_detection": {"json": "results.json", "md": ["results.md"],
                       "png": "auroc_by_length.png", "documented": None},
    "text_watermark": {"json": "results.json", "md": ["results.md"], "png": "detection.png",
                       "documented": None},
    "watermark_robustness": {
        "json": "results.json", "md": ["results.md"], "png": "robustness.png",
        "documented": "python benchmarks/watermark_robustness.py "
                      "--out benchmarks/results/watermark_robustness"},
    "scan_throughput": {
        "json": "results.json", "md": ["results.md"], "png": None,
        "documented": "python benchmarks/scan_throughput.py "
                      "--out benchmarks/results/scan_throughput"},
    "quickstart": {
        "json": {"leaderboard": "leaderboard.json", "timing": "timing.json",
                 "dcgan_quality": "dcgan-quality.json"},
        "md": ["leaderboard.md"], "png": "roc.png",
        "documented": "unmask quickstart --out runs/qs3 --update-defaults --publish-results"},
    "generators/families": {
        "json": {"0-dcgan": "0-dcgan-quality.json", "1-gan-upsample": "1-gan-upsample-quality.json",
                 "2-vae": "2-vae-quality.json",
                 "3-diffusion-ddim": "3-diffusion-ddim-quality.json"},
        "md": ["README.md"], "png": None,
        "documented": "unmask generate datasets/recipes/families.toml --out runs/families "
                      "--evidence benchmarks/results/generators"},
}


def last_commit(path: Path) -> tuple[str | None, str | None]:
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%H %cI", "--",
                          str(path.resolve().relative_to(REPO))], capture_output=True, text=True,
                         check=True).stdout.split()
    return (out[0], out[1]) if out else (None, None)


def convert(name: str, spec: dict[str, Any]) -> bool:
    d = RESULTS / name
    d.mkdir(parents=True, exist_ok=True)
    if (d / "results.json").is_file() and \
            "run" in json.loads((d / "results.json").read_text(encoding="utf-8")):
        return False
    if isinstance(spec["json"], dict):
        data = {k: json.loads((d / f).read_text(encoding="utf-8"))
                for k, f in spec["json"].items()}
        sources = list(spec["json"].values())
    else:
        data = json.loads((d / spec["json"]).read_text(encoding="utf-8"))
        sources = [spec["json"]]
    sources += [f for f in spec["md"] if f not in sources]
    commit, when = last_commit(d / sources[0])
    # the command and machine, where the old record holds them
    holders = [data, *(v for v in data.values() if isinstance(v, dict))]
    command = next((h["command"] for h in holders if isinstance(h.get("command"), str)), None)
    if name == "quickstart":  # timing.json records the bare quickstart; the index the flags
        command = None
    machine = next((h["machine"] for h in holders if "machine" in h), None)
    versions = ({k: machine[k] for k in VERSION_KEYS if k in machine}
                if isinstance(machine, dict) else None)
    documented = command is None
    command = command or spec["documented"]
    run = {"schema": RUN_SCHEMA, "converted_from": sources,
           "converted_by": "benchmarks/convert_results.py", "argv": shlex.split(command),
           "command": command, "argv_documented": documented, "git_commit": commit,
           "git_dirty": None, "written": when, "started": None, "finished": None,
           "machine": machine, "versions": versions}
    md = "\n\n".join((d / f).read_text(encoding="utf-8").rstrip() for f in spec["md"]) + "\n"
    if spec["png"]:
        (d / spec["png"]).rename(d / "results.png")
        md = md.replace(f"({spec['png']})", "(results.png)")
    record = {**data, "run": run}
    (d / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (d / "results.md").write_text(md + run_line(run), encoding="utf-8")
    for f in sources:
        if f not in ("results.json", "results.md"):
            (d / f).unlink()
    return True


def main() -> int:
    for name, spec in FOLDERS.items():
        print(f"{name}: {'converted' if convert(name, spec) else 'already in the new layout'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
