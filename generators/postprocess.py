"""Post-processing a recipe applies to real and synthetic items alike (``[[postprocess]]``),
so both classes carry the same encoder history and a detector cannot win on it. Each op is
the attack of the same name from the attack registry (:mod:`detect.attacks`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.core.registry import attacks

# the ops a recipe may name, with the recipe's own defaults where they differ from the attack's
STEPS: dict[str, dict[str, Any]] = {"jpeg": {"quality": 90}, "resize": {}}


def check(steps: list[dict[str, Any]], where: str = "recipe") -> None:
    for st in steps:
        name = st.get("op")
        if name not in STEPS:
            raise ConfigError(f"{where}: [[postprocess]] op must be one of {', '.join(STEPS)}, "
                              f"got {name!r}")


def apply(img: np.ndarray, steps: list[dict[str, Any]]) -> tuple[np.ndarray, list[dict]]:
    """Run the steps in order; return the image and the transforms to record in provenance."""
    done = []
    for st in steps:
        kwargs = {k: v for k, v in st.items() if k != "op"}
        img = attacks.create(st["op"], **{**STEPS[st["op"]], **kwargs})(img)
        done.append(dict(st))
    return img, done
