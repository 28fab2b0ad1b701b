"""The wild line (benchmarks/wild_release.py): probe, fine-tuned encoder and their max-p fusion
train on a wild corpus and ship as the image defaults; the wild recipe's post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import WILD_TINY_RECIPE, WILD_TINY_SET

from benchmarks import wild_release
from detect.core.detector import load_detector
from generators.recipe import build

RECIPE, TINY = WILD_TINY_RECIPE, WILD_TINY_SET


@pytest.mark.slow  # trains an autoencoder pair and fine-tunes EfficientNet-Lite0: ~1 min
def test_the_wild_line_trains_benches_and_ships_as_the_image_defaults(tmp_path, capsys):
    corpus_dir, work = tmp_path / "c", tmp_path / "w"
    assert wild_release.main(["--recipe", str(RECIPE), "--corpus", str(corpus_dir),
                              "--work", str(work), *sum((["--set", s] for s in TINY), [])]) == 0
    board = capsys.readouterr().out
    assert all(n in board for n in wild_release.LINE)
    fused = load_detector(work / "fusion-wild")
    assert fused.method == "max-p"
    assert [m.name for m in fused.members()] == ["effnet-probe", "effnet-tune"]
    # max-p fits nothing, so the whole calib split calibrates it (as each member's did)
    assert fused.calibration_for().n_real == fused.members()[0].calibration_for().n_real
    tuned = fused.members()[1]
    cfg = json.loads((work / "effnet-tune" / "config.json").read_text())
    assert cfg["state"]["pretrained_sha256"] and cfg["params"]["epochs"] == 1
    # the shipped half-precision weights are the ones calibrated: reload scores the same
    from detect.io.corpus import Corpus

    items = list(Corpus.open(corpus_dir).split("test").iter_items())[:6]
    again = load_detector(work / "effnet-tune")
    np.testing.assert_allclose(again.score(items), tuned.score(items), rtol=1e-4, atol=1e-4)

    corpus = Corpus.open(corpus_dir)
    dest = tmp_path / "pkg" / "models"
    wild_release.release_line({n: work / n for n in wild_release.LINE}, corpus, str(RECIPE),
                              dest=dest)
    defaults = json.loads((dest / "defaults.json").read_text())
    assert defaults["image"] == list(wild_release.LINE)
    assert defaults["image_corpus_hash"] == corpus.content_hash
    shipped = json.loads((dest / "fusion-wild" / "config.json").read_text())
    assert shipped["state"]["members"] == ["effnet-probe", "effnet-tune"]  # by name, no copy
    assert sorted(p.name for p in (dest / "fusion-wild").iterdir()) == \
        ["config.json", "weights.safetensors"]
    hold = json.loads((tmp_path / "pkg" / "holdout" / "shipped-holdout-wild" /
                       "labels.json").read_text())
    assert set(hold["labels"].values()) == {0, 1}
    assert hold["corpus_hash"] == corpus.content_hash


def test_post_resize_treats_a_view_and_its_reconstruction_alike(tmp_path):
    """resize_prob=1: every view is resized after reconstruction, both classes to one size,
    never below min_side; the step is in both provenances."""
    text = RECIPE.read_text().replace("jpeg_prob = 0.5", "jpeg_prob = 0.5\nresize_prob = 1.0\n"
                                      "resize = [0.5, 0.8]\nmin_side = 40")
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    corpus = build(recipe, tmp_path / "c", progress=False)
    from PIL import Image

    pairs: dict[str, dict[int, tuple]] = {}
    for r in corpus.records:
        steps = r.provenance.get("transforms") or []
        resized = [s for s in steps if "resize" in s]
        size = Image.open(corpus.root / r.path).size
        key = f"{r.provenance['source']}:{r.provenance.get('index')}"
        pairs.setdefault(key, {})[r.label] = (size, [s for s in steps if "view" not in s])
        if resized:
            assert size == (resized[0]["resize"],) * 2 and resized[0]["resize"] >= 40
    full = [p for p in pairs.values() if len(p) == 2]
    assert full and all(p[0] == p[1] for p in full)  # same size, same processing
    assert any(s for p in full for s in p[0][1] if "resize" in s)
