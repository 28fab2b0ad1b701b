"""Shared fixtures: one tiny real corpus and tiny real trained detectors per test session.

Everything here is built by the real code paths (recipe -> DCGAN -> corpus -> fit), only at
sizes that take seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "datasets" / "recipes" / "tiny-test.toml"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from generators.recipe import build

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    return build(TINY_RECIPE, out, progress=False)


@pytest.fixture(scope="session")
def trained_models(tiny_corpus, tmp_path_factory):
    """name -> saved model dir, for every registered ``*-test`` detector."""
    from detect.registry import detectors

    root = tmp_path_factory.mktemp("models")
    out = {}
    for name in detectors.names("*-test"):
        det = detectors.create(name).fit(tiny_corpus)
        out[name] = det.save(root / name)
    return out
