"""``unmask list``: registered detectors, generators and attacks; shipped models and recipes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from detect.cli._common import _log


def cmd_list(a: argparse.Namespace) -> int:
    from detect.core.models import shipped_models
    from detect.core.registry import REGISTRIES

    if a.kind == "recipes":
        from detect.core.resources import shipped_recipes

        for name, path in shipped_recipes().items():
            print(f"{name}\t{path}")
        return 0
    if a.kind == "models":
        for name, path in shipped_models().items():
            cfg = json.loads((path / "config.json").read_text())
            cal = cfg["calibration"]
            print(f"{name}\tthreshold {cal['threshold']:.4g} @ FPR {cal['target_fpr']:g}\t{path}")
        return 0
    reg = REGISTRIES[a.kind]
    names = reg.names(a.pattern)
    for n in names:
        e = reg.entry(n)
        print(f"{n}\t{e.doc}")
    if not names:
        _log(f"no {a.kind} match {a.pattern!r}")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("list", help="list registered detectors, generators, attacks, shipped "
                       "models or shipped recipes")
    s.add_argument("kind", choices=["detectors", "generators", "attacks", "models", "recipes"])
    s.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'cnn-*'")
    s.set_defaults(func=cmd_list)
