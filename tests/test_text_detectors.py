"""Zero-shot text detectors on one shared LM pass: real tiny GPT-2s trained in the session,
a paired human/machine corpus, calibration per length bucket, save/load, scan and inspect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (hard dependencies: missing is a failure, never a skip)

from benchmarks.metrics import auroc
from detect.core.detector import load_detector
from detect.core.registry import detectors
from detect.text.base import bucket_of, count_tokens
from detect.text.lm import LMScorer, statistic

SINGLE = ["likelihood", "logrank", "entropy", "lrr", "gltr", "fastdetect"]


@pytest.fixture(scope="module")
def performer_lm(tmp_path_factory):
    """A second LM: other width and seed, the same (deterministic) tokenizer."""
    from benchmarks.text_watermark import build_lm

    return build_lm(tmp_path_factory.mktemp("perf") / "lm", vocab_size=1024, n_layer=2,
                    n_embd=96, n_head=2, steps=300, block=64, batch=16, seed=1)


@pytest.fixture(scope="module")
def fitted(tiny_text_corpus, tiny_text_lm, performer_lm):
    out = {}
    for stat in SINGLE:
        out[stat] = detectors.create(f"lm-{stat}", observer=str(tiny_text_lm)).fit(
            tiny_text_corpus)
    out["binoculars"] = detectors.create("lm-binoculars", observer=str(tiny_text_lm),
                                         performer=str(performer_lm)).fit(tiny_text_corpus)
    return out


def test_every_statistic_separates_held_out_machine_text(fitted, tiny_text_corpus):
    test = tiny_text_corpus.split("test")
    items = list(test.iter_items())
    aucs = {name: auroc(test.labels, det.score(items)) for name, det in fitted.items()}
    # the scoring LM made the machine texts (white box): the likelihood family sees them all;
    # mean entropy alone does not separate them with an LM this small (measured ~0.5), so it
    # is only required to produce finite scores here (the benchmark reports it)
    for name in ("likelihood", "logrank", "lrr", "fastdetect", "binoculars", "gltr"):
        assert aucs[name] > 0.75, aucs
    assert aucs["fastdetect"] > 0.88, aucs
    assert np.isfinite(fitted["entropy"].score(items)).all()


def test_one_forward_pass_is_shared(fitted, tiny_text_corpus):
    """Six detectors on the same observer share one scorer and its cache."""
    scorers = {id(fitted[s].scorer) for s in SINGLE}
    assert len(scorers) == 1
    sc = fitted["likelihood"].scorer
    text = next(tiny_text_corpus.split("test").iter_items()).content
    calls = []
    orig = sc._score_windows
    sc._score_windows = lambda w: (calls.append(len(w)), orig(w))[1]
    try:
        for s in SINGLE:
            fitted[s].score([text + " unique suffix"])
    finally:
        sc._score_windows = orig
    assert calls == [1]


def test_fastdetect_terms_match_a_direct_computation(tiny_text_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sc = LMScorer(str(tiny_text_lm))
    text = "The object is returned by the function when the list is empty."
    ts = sc.stats([text])[0]
    tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm).eval()
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    tgt = ids[0, 1:]
    logp = lp[torch.arange(len(tgt)), tgt].numpy()
    p = lp.exp()
    mu = (p * lp).sum(-1).numpy()
    var = ((p * lp**2).sum(-1) - (p * lp).sum(-1) ** 2).numpy()
    np.testing.assert_allclose(ts.logp, logp, atol=1e-4)
    np.testing.assert_allclose(ts.mu, mu, atol=1e-4)
    np.testing.assert_allclose(ts.var, var, atol=1e-3)
    # rank = 1 + how many tokens score above the target. The scorer compares float32 log-probs,
    # this direct pass float64 ones, so a token within rounding of the target (the same 1e-4 as
    # logp above) may fall on either side, depending on the CPU's kernels and on the weights
    # this session trained. The rank is exact wherever no such near-tie exists, and never
    # outside the counts with and without the near-ties.
    tol = 1e-4
    target = lp[torch.arange(len(tgt)), tgt][:, None]
    rank_lo = (lp > target + tol).sum(-1).numpy() + 1
    rank_hi = (lp > target - tol).sum(-1).numpy()  # the target itself stands in for the + 1
    assert np.all((rank_lo <= ts.rank) & (ts.rank <= rank_hi)), (ts.rank, rank_lo, rank_hi)
    exact = rank_lo == rank_hi
    assert exact.mean() > 0.5  # the bound is not vacuous: most tokens have no near-tie
    np.testing.assert_array_equal(ts.rank[exact], rank_lo[exact])
    want = (logp.sum() - mu.sum()) / np.sqrt(var.sum())
    assert statistic(ts, "fastdetect") == pytest.approx(want, rel=1e-3)


def test_long_text_is_scored_in_windows_and_capped(tiny_text_lm):
    sc = LMScorer(str(tiny_text_lm), max_tokens=700)
    sc.context = 128  # force windows at a small size
    words = ("The function returns a new list of the values that are found in the table, "
             "and raises an error when the key is missing. ") * 30
    ts = sc.stats([words])[0]
    ids, _ = sc.encode(words)
    assert ts.truncated and ts.n_tokens == len(ids) > 700
    assert ts.n_scored == 699 == len(ts.offsets)  # every token but the first, up to the cap
    # the first window's tokens are exactly a single pass over them
    one = LMScorer(str(tiny_text_lm)).stats([sc.tok.decode(ids[:128])])[0]
    np.testing.assert_allclose(ts.logp[:100], one.logp[:100], atol=1e-4)


def test_length_buckets_and_uncertain_rules(fitted, tiny_text_corpus):
    det = fitted["fastdetect"]
    item = next(tiny_text_corpus.split("test").iter_items())
    res = det.decide(item, float(det.score([item])[0]))
    assert res["tokens"] == count_tokens(det.prepare(item))
    assert res["length_bucket"] in ("~50", "~100", "~200", "~400+")
    assert res["verdict"] in ("synthetic", "real", "uncertain")
    short = "Too short to judge."
    r = det.decide(short, float(det.score([short])[0]))
    assert r["verdict"] == "uncertain" and "too short" in r["reason"]
    german = ("Die Funktion gibt eine neue Liste mit allen Werten zurück, die in der Tabelle "
              "gefunden werden, und sie meldet einen Fehler, wenn der Schlüssel fehlt. Das ist "
              "bei jeder Eingabe so, auch wenn die Liste leer ist oder nur ein Element hat.")
    r = det.decide(german, float(det.score([german])[0]))
    assert r["verdict"] == "uncertain" and "language" in r["reason"]
    assert bucket_of(10) == 0 and bucket_of(100) == 1 and bucket_of(1000) == 3


def test_calibration_honours_fpr_per_bucket(fitted):
    det = fitted["fastdetect"]
    for fpr in (0.05, 0.2):
        cal = det.calibration_for(fpr)
        real = det.calib_scores_[det.calib_labels_ == 0]
        assert (real > cal.threshold).mean() <= fpr + 1e-9


def test_save_load_is_self_contained_and_scores_the_same(fitted, tiny_text_corpus, tmp_path):
    items = list(tiny_text_corpus.split("test").iter_items())[:12]
    for name in ("gltr", "binoculars"):
        det = fitted[name]
        d = det.save(tmp_path / name)
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["params"]["observer"] == "model-dir:observer"
        assert (d / "observer" / "config.json").is_file()
        back = load_detector(d)
        np.testing.assert_allclose(back.score(items), det.score(items), rtol=1e-6, atol=1e-9)
        assert back.calibration_ == det.calibration_
        np.testing.assert_array_equal(back.calib_lengths_, det.calib_lengths_)


def test_scan_and_inspect_a_text_file(fitted, tiny_text_corpus, tmp_path):
    from test_cli import unmask

    d = fitted["fastdetect"].save(tmp_path / "fd")
    item = next(r for r in tiny_text_corpus.split("test").records if r.label == 1)
    f = tmp_path / "essay.txt"
    f.write_text((tiny_text_corpus.root / item.path).read_text(encoding="utf-8"))
    r = unmask("scan", f, "-m", d)
    rec = json.loads(r.stdout)
    assert rec["modality"] == "text" and rec["error"] is None, rec
    det = rec["detectors"]["lm-fastdetect"]
    assert det["length_bucket"] and det["tokens"] > 0 and rec["verdict"] == det["verdict"]
    # the same text on standard input gives the same decision
    r2 = unmask("scan", "-", "-m", d, stdin=f.read_bytes())
    rec2 = json.loads(r2.stdout)
    assert rec2["path"] == "<stdin>" and rec2["modality"] == "text"
    assert rec2["detectors"]["lm-fastdetect"]["score"] == pytest.approx(det["score"])
    r = unmask("inspect", f, "-m", d)
    rep = json.loads(r.stdout)
    sents = rep["detectors"]["lm-fastdetect"]["sentences"]
    from detect.io.normalize import normalize

    seen = normalize(f.read_text(encoding="utf-8")).text  # spans index the text as scored
    assert sents and all(seen[s["start"]:s["end"]] == s["text"] for s in sents)
    assert rep["text"]["normalization"]["chars"] == len(seen)


def test_bad_text_inputs_each_get_one_clear_record(fitted, tmp_path):
    """Empty, whitespace, binary, invalid UTF-8 (both policies), another language, a text far
    beyond the context: one record each, the scan going on."""
    from test_cli import unmask

    d = fitted["fastdetect"].save(tmp_path / "fd")
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "empty.txt").write_bytes(b"")
    (box / "blank.txt").write_text("   \n\t \n")
    (box / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00" * 20)
    english = ("The function returns a new list of the values that are found in the table, "
               "and it raises an error when the key is missing from the mapping. ")
    (box / "latin1.txt").write_bytes((english * 2).encode() + b"caf\xe9 " + english.encode())
    (box / "russian.txt").write_text("Функция возвращает новый список значений, найденных в "
                                     "таблице, и сообщает об ошибке, если ключ отсутствует. " * 3)
    (box / "huge.txt").write_text(english * 120)
    r = unmask("scan", box, "-m", d)
    recs = {Path(x["path"]).name: x for x in map(json.loads, r.stdout.decode().splitlines())}
    assert sorted(recs) == sorted(p.name for p in box.iterdir())
    for name in ("empty.txt", "blank.txt", "binary.txt", "latin1.txt"):
        assert recs[name]["verdict"] == "error" and name in recs[name]["error"], recs[name]
    assert "byte" in recs["latin1.txt"]["error"]
    ru = recs["russian.txt"]["detectors"]["lm-fastdetect"]
    assert ru["verdict"] == "uncertain" and "language" in ru["reason"]
    huge = recs["huge.txt"]["detectors"]["lm-fastdetect"]
    assert huge["truncated"] and huge["lm_tokens_scored"] == 1023
    # exit code: 1 when a text was flagged (findings win over errors), else 2 for the errors
    flagged = any(x["verdict"] == "synthetic" for x in recs.values())
    assert r.returncode == (1 if flagged else 2)
    # the replace policy decodes the Latin-1 file and records what it replaced
    r = unmask("inspect", box / "latin1.txt", "-m", d, "--text-errors", "replace")
    rep = json.loads(r.stdout)
    assert rep["meta"]["decode"]["replaced"] == 1 and rep["detectors"]["lm-fastdetect"]["score"]


def test_scorer_swap_recalibrates_on_human_texts(fitted, tiny_text_corpus, performer_lm,
                                                 tmp_path):
    from detect.text.zeroshot import with_scorer

    human = [(tiny_text_corpus.root / r.path).read_text(encoding="utf-8")
             for r in tiny_text_corpus.split("calib").records if r.label == 0]
    calib = tmp_path / "human.jsonl"
    calib.write_text("".join(json.dumps({"text": t}) + "\n" for t in human))
    logs = []
    out = with_scorer([fitted["fastdetect"], fitted["binoculars"], fitted["gltr"]],
                      str(performer_lm), calibration=calib, log=logs.append)
    assert [d.name for d in out] == ["lm-fastdetect", "lm-gltr"] and "binoculars" in logs[0]
    fd = out[0]
    assert fd.observer == str(performer_lm) and fd.calibration_.n_real == len(human)
    assert fd.calibration_.threshold != fitted["fastdetect"].calibration_.threshold
    test = tiny_text_corpus.split("test")
    assert auroc(test.labels, fd.score(list(test.iter_items()))) > 0.7  # a cross-model scorer
