"""One writer for every benchmark's results folder: ``results.json`` + ``results.md`` (+
``results.png``), with a ``run`` block saying exactly how, where and from what the numbers came.

    write_results(folder, data, markdown, figure=None)

``data`` is the benchmark's own record; ``results.json`` is ``data`` plus ``"run"``:
``argv`` and ``command`` (the exact command line), ``git_commit`` and ``git_dirty`` of the
checkout, ``started`` / ``finished`` (UTC), ``machine`` (``benchmarks.runner.machine()``) and
``versions`` of the libraries that matter here, whichever are installed. A record that already
holds a ``run`` block (a converted one, see ``benchmarks/convert_results.py``) keeps it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUN_SCHEMA = "unmask.bench.run/1"
REPO = Path(__file__).resolve().parent.parent
#: the distributions whose versions a run records (those installed)
DISTRIBUTIONS = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image",
                 "transformers", "tokenizers", "diffusers", "timm", "opencv-python",
                 "opencv-python-headless", "opencv-contrib-python", "pillow", "onnxruntime",
                 "invisible-watermark", "facenet-pytorch", "c2pa-python", "ray", "unmask")
_STARTED = time.time()  # the import time of this module: near enough the start of the script


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in DISTRIBUTIONS:
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def git_state(root: Path = REPO) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True).stdout.strip() != ""
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


def command_argv(argv: list[str] | None = None) -> list[str]:
    """``["python", "benchmarks/x.py", ...]`` (the script path relative to the checkout), or
    the command as given when it is not a Python script (``["unmask", "quickstart", ...]``)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0].endswith(".py"):
        return argv
    with contextlib.suppress(ValueError):
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    return ["python", *argv]


def run_block(*, started: float | None = None, argv: list[str] | None = None,
              machine: dict[str, Any] | None = None) -> dict[str, Any]:
    from benchmarks.runner import machine as machine_info

    commit, dirty = git_state()
    args = command_argv(argv)
    return {"schema": RUN_SCHEMA, "argv": args, "command": shlex.join(args),
            "git_commit": commit, "git_dirty": dirty,
            "started": utc(_STARTED if started is None else started), "finished": utc(time.time()),
            "machine": machine or machine_info(), "versions": versions()}


def write_results(folder: str | Path, data: dict[str, Any], markdown: str,
                  figure: Any = None, *, started: float | None = None,
                  argv: list[str] | None = None) -> Path:
    """Write ``folder/results.{json,md}`` and, given a figure, ``results.png``.

    ``figure``: a matplotlib Figure (saved at 110 dpi and closed), a callable that writes a PNG
    to the path it is given, or the path of a PNG already made (copied). Returns the folder.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(data)
    if "run" not in record:
        record["run"] = run_block(started=started, argv=argv)
    png = out / "results.png"
    if figure is not None:
        if callable(figure) and not hasattr(figure, "savefig"):
            figure(png)
        elif hasattr(figure, "savefig"):
            import matplotlib.pyplot as plt

            figure.savefig(png, dpi=110)
            plt.close(figure)
        elif Path(figure).resolve() != png.resolve():
            png.write_bytes(Path(figure).read_bytes())
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False,
                              default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, out / "results.json")
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    (out / "results.md").write_text(text + run_line(record["run"]), encoding="utf-8")
    return out


def run_line(run: dict[str, Any]) -> str:
    """The closing line of every ``results.md``: the command, commit and date of the run."""
    if run.get("converted_from"):
        return (f"\n_Converted by `{run.get('converted_by', 'benchmarks/convert_results.py')}` "
                f"from {', '.join(f'`{f}`' for f in run['converted_from'])}, last written at "
                f"commit `{str(run.get('git_commit'))[:12]}`; command "
                f"{'(as documented) ' if run.get('argv_documented') else ''}"
                f"`{run.get('command')}`._\n")
    commit = str(run.get("git_commit"))[:12] + (" (dirty tree)" if run.get("git_dirty") else "")
    return (f"\n_Run `{run['command']}` at commit `{commit}`, {run['started']} to "
            f"{run['finished']}; versions and machine in `results.json`._\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def read_results(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))
