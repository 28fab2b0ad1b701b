"""Text watermarks (KGW, SynthID-Text): embedded by transformers' generate, verified by unmask.

Nothing is downloaded: a byte-level BPE tokenizer and a 2-layer GPT-2 are trained at session
start (a few hundred steps, seconds) on the English prose bundled with Python
(pydoc_data.topics), saved with save_pretrained and loaded back by path.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers  # noqa: F401  (hard dependencies: missing is a failure, never a skip)

from benchmarks.text_watermark import (
    generate_ids,
    split_paragraphs,
    train_tokenizer,
)
from detect.core.errors import ConfigError
from detect.evidence.watermark.text import (
    scan_kgw,
    verify_kgw,
    verify_kgw_ids,
    verify_synthid,
    verify_synthid_ids,
    verify_text,
)
from detect.evidence.watermark.text_keys import (
    KEY_SCHEMA,
    KeyMismatchWarning,
    TextWatermarkKey,
    key_differences,
    retokenization_drift,
    tokenizer_fingerprint,
)
from detect.evidence.watermark.text_stats import kgw_min_tokens

N_NEW = 100


@pytest.fixture(scope="session")
def lm(tiny_text_lm):
    """Tiny trained GPT-2 + its tokenizer (conftest's tiny_text_lm, built by ``build_lm``),
    loaded from disk by path; held-out human prose."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_text_lm
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    _, held = split_paragraphs()
    prompts = [tok(p)["input_ids"][:8] for p in held if len(tok(p)["input_ids"]) > 12][:4]
    # human texts: consecutive held-out paragraphs joined to ~100-250 tokens each
    humans, cur = [], ""
    for p in held[20:]:
        cur = f"{cur} {p}".strip()
        if len(tok(cur)["input_ids"]) >= 100:
            humans.append(cur)
            cur = ""
        if len(humans) == 6:
            break
    return SimpleNamespace(path=path, tok=tok, model=model, prompts=prompts, humans=humans)


def _key(lm, scheme, seed, **params):
    return TextWatermarkKey.new(scheme, lm.tok, seed=seed, vocab_size=lm.model.config.vocab_size,
                                name=f"{scheme}-test", **params)


@pytest.fixture(scope="session")
def kgw(lm):
    """name -> (key, generated ids) for lefthash (width 1 and 2) and selfhash (width 2)."""
    out = {}
    for i, (name, params) in enumerate({
            "lefthash": {"seeding_scheme": "lefthash"},
            "lefthash-w2": {"seeding_scheme": "lefthash", "context_width": 2},
            # selfhash with width 1 seeds on the token alone: a fixed green set, too weak here
            "selfhash": {"seeding_scheme": "selfhash", "context_width": 2}}.items()):
        key = _key(lm, "kgw", 10 + i, **params)
        ids = generate_ids(lm.model, lm.prompts, N_NEW, watermarking_config=key.to_transformers(),
                           seed=i)
        out[name] = (key, ids)
    return out


@pytest.fixture(scope="session")
def synthid(lm):
    key = _key(lm, "synthid", 20, depth=20, ngram_len=4)
    ids = generate_ids(lm.model, lm.prompts, N_NEW, watermarking_config=key.to_transformers(),
                       seed=5)
    return key, ids


# --- KGW ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_kgw_generated_text_is_detected_from_text(lm, kgw, scheme):
    key, gens = kgw[scheme]
    for ids in gens:
        r = verify_kgw(lm.tok.decode(ids, skip_special_tokens=True), key, lm.tok)
        assert r.kind == "text" and r.scheme == "kgw" and r.payload == "kgw-test"
        assert r.status == "detected", r.statistic
        assert r.p_value <= r.alpha == 1e-6
        assert r.statistic["green_fraction"] > 0.45 and r.statistic["z"] > 5
        assert r.details["warnings"] == []


def test_human_text_is_absent(lm, kgw, synthid):
    keys = [kgw["lefthash"][0], kgw["selfhash"][0], synthid[0]]
    for text in lm.humans:
        for key in keys:
            r = verify_text(text, key, lm.tok)
            assert r.status == "absent", (key.scheme, r.statistic)
            assert r.statistic["tokens_scored"] >= 60
    # and the p-values behave like p-values: nothing remotely close to the threshold
    zs = [verify_kgw(t, kgw["lefthash"][0], lm.tok).statistic["z"] for t in lm.humans]
    assert max(zs) < 3.5


def test_short_text_is_insufficient(lm, kgw):
    key, gens = kgw["lefthash"]
    # gamma 0.25 at alpha 1e-6: 0.25**n <= 1e-6 first holds at n = 10 (log 1e-6 / log 0.25 = 9.97)
    assert kgw_min_tokens(0.25, 1e-6) == 10
    assert kgw_min_tokens(0.5, 1e-2) == 7  # 0.5**7 = 0.0078
    assert kgw_min_tokens(0.25, 1e-6, "normal") == 8
    short = lm.tok.decode(gens[0][:6])
    r = verify_kgw(short, key, lm.tok)
    assert r.status == "insufficient" and r.p_value is None
    assert r.statistic["tokens_scored"] < r.statistic["min_tokens"] == 10
    assert "needed" in r.details["reason"]
    # the full text is decided
    assert verify_kgw(lm.tok.decode(gens[0]), key, lm.tok).status == "detected"


@pytest.mark.parametrize("scheme", ["lefthash", "lefthash-w2", "selfhash"])
@pytest.mark.parametrize("ignore_repeated", [False, True])
def test_kgw_z_from_ids_matches_transformers_detector(lm, kgw, scheme, ignore_repeated):
    from transformers import WatermarkDetector

    key, gens = kgw[scheme]
    det = WatermarkDetector(lm.model.config, "cpu", key.to_transformers(),
                            ignore_repeated_ngrams=ignore_repeated)
    for ids in gens:
        ref = det(torch.tensor([ids]), return_dict=True)
        ours = verify_kgw_ids(ids, key, ignore_repeated_ngrams=ignore_repeated)
        assert ours.statistic["tokens_scored"] == int(ref.num_tokens_scored[0])
        assert ours.statistic["green"] == int(ref.num_green_tokens[0])
        assert ours.statistic["z"] == pytest.approx(float(ref.z_score[0]), abs=1e-9)
        assert ours.statistic["p_normal"] == pytest.approx(float(ref.p_value[0]), rel=1e-6,
                                                           abs=1e-300)


def test_kgw_detection_survives_retokenisation(lm, kgw):
    """Generated ids -> text -> ids is not the identity for BPE; measure the drift and show the
    watermark is still found from the text alone."""
    key, gens = kgw["lefthash"]
    for ids in gens:
        drift = retokenization_drift(ids, lm.tok)
        assert drift["n_ids"] == N_NEW
        assert drift["fraction_changed"] < 0.3, drift
        z_ids = verify_kgw_ids(ids, key).statistic["z"]
        r = verify_kgw(lm.tok.decode(ids), key, lm.tok)
        assert r.status == "detected"
        # each changed token costs about its own green evidence (and its successor's context)
        assert r.statistic["z"] > z_ids - 2 * math.sqrt(drift["n_changed"] + 1) - 1


def test_scan_finds_pasted_passage(lm, kgw):
    key, gens = kgw["lefthash"]
    wm = lm.tok.decode(gens[1])
    before, after = " ".join(lm.humans[:2]), " ".join(lm.humans[2:4])
    text = f"{before}\n\n{wm.strip()}\n\n{after}"
    lo = len(before) + 2
    hi = lo + len(wm.strip())
    whole = verify_kgw(text, key, lm.tok)
    r = scan_kgw(text, key, lm.tok)
    best = r.statistic["best_window"]
    a, b = best["char_span"]
    assert a < hi and b > lo, (best, lo, hi)  # overlaps the pasted passage
    overlap = min(b, hi) - max(a, lo)
    assert overlap >= 0.5 * min(b - a, hi - lo)
    assert r.status == "detected" and r.n_tests == r.statistic["windows_tested"] > 10
    assert r.alpha == pytest.approx(1e-6 / r.n_tests)
    assert best["p"] * r.n_tests <= 1e-6 and best["p_corrected"] <= 1e-6
    assert best["z"] > whole.statistic["z"]
    assert whole.p_value > best["p"] * 1e3  # the whole-text test is diluted by human text
    # the scan keeps its false-positive promise on human text
    for h in lm.humans:
        assert scan_kgw(h, key, lm.tok).status == "absent"


def test_kgw_null_rate_on_random_ids(kgw):
    """Under no watermark a token is green at rate gamma: uniform random ids give ~gamma."""
    key, _ = kgw["lefthash"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, key.vocab_size, (3000,), generator=g).tolist()
    r = verify_kgw_ids(ids, key)
    assert abs(r.statistic["green_fraction"] - 0.25) < 0.03
    assert r.status == "absent"


# --- key file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["kgw", "synthid"])
def test_key_round_trip(lm, tmp_path, scheme):
    key = _key(lm, scheme, 3)
    path = key.save(tmp_path / "k.json")
    d = json.loads(path.read_text())
    assert d["schema"] == KEY_SCHEMA and d["scheme"] == scheme
    assert d["tokenizer"] == str(lm.path) and d["tokenizer_sha256"] == tokenizer_fingerprint(lm.tok)
    assert ("keys" in d) == (scheme == "synthid") and ("hashing_key" in d) == (scheme == "kgw")
    back = TextWatermarkKey.load(path)
    assert back.to_dict() == key.to_dict() | {"name": key.name}
    assert key_differences(key, back) == []
    cfg = key.to_transformers()
    assert back.to_transformers().to_dict() == cfg.to_dict()
    again = TextWatermarkKey.from_transformers(cfg, lm.tok, vocab_size=key.vocab_size,
                                               name=key.name)
    assert again.to_dict() == key.to_dict()
    # the key file alone is enough: the tokenizer is loaded from the path it records
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyMismatchWarning)
        assert verify_text("Some plain words of text to tokenise here.", back).status in (
            "absent", "insufficient")


def test_malformed_key_files_name_file_and_field(tmp_path, lm):
    good = _key(lm, "kgw", 4).to_dict()
    cases = {
        "notjson.json": ("{not json", "not valid JSON"),
        "schema.json": (json.dumps({**good, "schema": "unmask.other/9"}), "'schema'"),
        "scheme.json": (json.dumps({**good, "scheme": "rot13"}), "'scheme'"),
        "gamma.json": (json.dumps({**good, "greenlist_ratio": 1.5}), "'greenlist_ratio'"),
        "type.json": (json.dumps({**good, "context_width": "1"}), "'context_width'"),
        "unknown.json": (json.dumps({**good, "gamma": 0.5}), "'gamma'"),
        "list.json": (json.dumps([1, 2]), "JSON object"),
        "nokeys.json": (json.dumps({"schema": KEY_SCHEMA, "scheme": "synthid"}), "'keys'"),
    }
    for name, (text, field) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(ConfigError) as e:
            TextWatermarkKey.load(p)
        assert str(p) in str(e.value) and field in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="cannot read"):
        TextWatermarkKey.load(tmp_path / "missing.json")


def test_mismatched_detection_settings_warn(lm, kgw):
    key, gens = kgw["lefthash"]
    text = lm.tok.decode(gens[0])
    with pytest.warns(KeyMismatchWarning, match="greenlist_ratio"):
        r = verify_kgw(text, key, lm.tok, overrides={"greenlist_ratio": 0.5})
    assert any("greenlist_ratio" in w for w in r.details["warnings"])
    assert r.statistic["gamma"] == 0.5
    # a different tokenizer (another BPE vocabulary) is noticed through the fingerprint
    other = train_tokenizer(split_paragraphs()[0][:200], 700)
    with pytest.warns(KeyMismatchWarning, match="tokenizer"):
        r = verify_kgw(text, key, other)
    assert any("fingerprint" in w for w in r.details["warnings"])
    assert r.status != "detected"
    # the helper itself
    diffs = key_differences(key, key.replace(hashing_key=key.hashing_key + 1, context_width=2))
    assert len(diffs) == 2 and all("hashing_key" in d or "context_width" in d for d in diffs)
    assert str(key.hashing_key) not in " ".join(diffs)  # secrets are not echoed
    assert key_differences(key, key.replace(bias=5.0)) == []  # bias does not change detection
    with pytest.raises(ConfigError):
        verify_synthid(text, key, lm.tok)  # a KGW key is not a SynthID key


# --- SynthID ----------------------------------------------------------------------------------


@pytest.mark.parametrize("score", ["mean", "weighted"])
def test_synthid_generated_text_detected_human_absent(lm, synthid, score):
    key, gens = synthid
    for ids in gens:
        r = verify_synthid(lm.tok.decode(ids), key, lm.tok, score=score)
        assert r.scheme == "synthid" and r.status == "detected", r.statistic
        assert r.statistic["mean"] > 0.55 and r.statistic["depth"] == 20
        assert r.statistic["weighted_mean"] >= r.statistic["mean"] - 0.02
    for text in lm.humans:
        r = verify_synthid(text, key, lm.tok, score=score)
        assert r.status == "absent" and abs(r.statistic["mean"] - 0.5) < 0.05


def test_synthid_null_is_independent_fair_coins(synthid):
    """Random token ids: g-values average the sampling table's mean (~0.5), layers uncorrelated,
    and the repetition mask drops exactly the repeated contexts."""
    import numpy as np
    from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

    key, _ = synthid
    proc = SynthIDTextWatermarkLogitsProcessor(
        ngram_len=key.ngram_len, keys=key.keys, sampling_table_size=key.sampling_table_size,
        sampling_table_seed=key.sampling_table_seed,
        context_history_size=key.context_history_size, device="cpu")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, key.vocab_size, (1, 2000), generator=g)
    gv = proc.compute_g_values(ids)[0].numpy().astype(float)
    q = float(proc.sampling_table.double().mean())
    assert abs(q - 0.5) < 0.01
    assert abs(gv.mean() - q) < 0.01
    corr = np.corrcoef(gv.T)[np.triu_indices(gv.shape[1], 1)]
    assert np.abs(corr).max() < 0.12 and abs(corr.mean()) < 0.01
    r = verify_synthid_ids(ids, key)
    assert r.status == "absent" and r.statistic["null_mean"] == pytest.approx(q)
    rep = [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7]  # contexts repeat after one period
    r = verify_synthid_ids(rep, key)
    assert r.statistic["tokens_scored"] == 5  # (len 13 - 3 context) scored, 5 repeats masked


def test_import_detect_watermark_text_stays_light():
    code = ("import sys, detect, detect.evidence.watermark.text as t; "
            "assert not [m for m in ('torch', 'transformers', 'scipy') if m in sys.modules]")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- the command line, as a user runs it ---------------------------------------------------------


def test_cli_keygen_generate_verify_and_scan(lm, tmp_path):
    """keygen writes the key; transformers' generate embeds with it; `watermark verify` and
    `scan --wm-key` find the mark in the text file, and not in human text."""
    from test_cli import unmask

    key_path = tmp_path / "newsroom.json"
    r = unmask("watermark", "keygen", "--scheme", "kgw", "--tokenizer", lm.path,
               "--context-width", "2", "--seed", 7, "--out", key_path, check_code=0)
    rec = json.loads(r.stdout)
    assert rec["schema"] == "unmask.watermark-keygen/1" and rec["scheme"] == "kgw"
    assert "hashing_key" not in rec and len(rec["fingerprint"]) == 16  # the secret stays in file
    assert (key_path.stat().st_mode & 0o777) == 0o600
    key = TextWatermarkKey.load(key_path)
    assert key.context_width == 2 and key.vocab_size == len(lm.tok)
    # an existing key is never overwritten silently
    r = unmask("watermark", "keygen", "--out", key_path, "--tokenizer", lm.path, check_code=2)
    assert b"--force" in r.stderr

    ids = generate_ids(lm.model, lm.prompts[:2], N_NEW, watermarking_config=key.to_transformers(),
                       seed=11)
    marked = tmp_path / "marked.txt"
    marked.write_text(lm.tok.decode(ids[0], skip_special_tokens=True), encoding="utf-8")
    human = tmp_path / "human.txt"
    human.write_text(lm.humans[0], encoding="utf-8")
    short = tmp_path / "short.txt"
    short.write_text("Too short.", encoding="utf-8")

    r = unmask("watermark", "verify", marked, human, short, "--wm-key", key_path, check_code=1)
    recs = {Path(x["path"]).name: x for x in map(json.loads, r.stdout.decode().splitlines())}
    assert recs["marked.txt"]["status"] == "detected"
    res = recs["marked.txt"]["results"][0]
    assert res["kind"] == "text" and res["payload"] == "newsroom.json"
    assert res["p_value"] <= 1e-6 and res["statistic"]["tokens_scored"] > 60
    assert recs["human.txt"]["status"] == "absent"
    assert recs["short.txt"]["status"] == "insufficient"
    # human text alone: nothing found, exit 0
    unmask("watermark", "verify", human, "--wm-key", key_path, check_code=0)
    # text without a key cannot be checked: an error record naming the file, exit 2
    r = unmask("watermark", "verify", human, check_code=2)
    assert "--wm-key" in json.loads(r.stdout)["error"]

    # scan: the record carries the compact check; --fail-on watermarked makes it a finding
    r = unmask("scan", marked, human, "--wm-key", key_path, "--fail-on", "watermarked",
               check_code=1)
    scan = {Path(x["path"]).name: x for x in map(json.loads, r.stdout.decode().splitlines())}
    wm = scan["marked.txt"]["watermarks"]
    assert [w["status"] for w in wm] == ["detected"] and wm[0]["green_fraction"] > 0.4
    assert [w["status"] for w in scan["human.txt"]["watermarks"]] == ["absent"]

    # a bad key file stops the run before any input is read, naming the file
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = unmask("scan", marked, "--wm-key", bad, check_code=2)
    assert str(bad).encode() in r.stderr and r.stdout == b""


def test_cli_keygen_from_transformers_generation_config(lm, tmp_path):
    """A model's generation_config.json with a watermarking_config becomes an unmask key with
    the same settings (the interoperability direction users start from)."""
    from test_cli import unmask
    from transformers import GenerationConfig, SynthIDTextWatermarkingConfig

    wcfg = SynthIDTextWatermarkingConfig(keys=list(range(101, 113)), ngram_len=4)
    GenerationConfig(watermarking_config=wcfg).save_pretrained(tmp_path / "model")
    out = tmp_path / "synthid.json"
    r = unmask("watermark", "keygen", "--from-transformers",
               tmp_path / "model" / "generation_config.json", "--tokenizer", lm.path,
               "--out", out, check_code=0)
    assert json.loads(r.stdout)["scheme"] == "synthid"
    key = TextWatermarkKey.load(out)
    assert key.keys == list(range(101, 113)) and key.ngram_len == 4
    assert key.to_transformers().to_dict() == wcfg.to_dict()
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"do_sample": True}))
    r = unmask("watermark", "keygen", "--from-transformers", plain, "--out", tmp_path / "x.json",
               check_code=2)
    assert b"no KGW" in r.stderr
