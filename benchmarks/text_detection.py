"""Machine-text detection, end to end: corpus -> detectors -> held-out tables -> shipped models.

    python benchmarks/text_detection.py --work runs/text --out benchmarks/results/text_detection
    python benchmarks/text_detection.py --work runs/text --update-defaults   # re-ship the models

1. Builds (or resumes) the corpus of ``datasets/recipes/text.toml``: human documents, LMs
   trained here on disjoint slices of the train documents, their continuations of held-out
   human prompts under several sampling configs, one config and one LM held out (test only).
2. Trains and calibrates every text detector: the zero-shot ones (one shared pass of the
   observer LM, plus the performer for Binoculars), TF-IDF + logistic regression, and a
   transformer classifier fine-tuned from the observer. The observer and performer are two of
   the corpus's own LMs (sharing a tokenizer); the held-out LM is never used to score.
3. Scores the test split: AUROC, AP, EER, TPR at 1% FPR per detector x length bucket x
   sampling config, with the held-out sampling config and the held-out LM reported apart;
   realised FPR at the calibrated thresholds per length bucket (pooled vs per-bucket rules);
   attacks (homoglyphs, zero-width, word deletion / substitution, copy-paste mixing) with and
   without unmask's normalisation; tokens/s of the shared pass; RAID-style predictions.
4. ``--update-defaults`` copies the observer and performer LMs and the chosen detectors into
   ``detect/models`` (zero-shot detectors reference the shipped LMs instead of copies), plus
   the calib split's human texts for ``--scorer`` re-calibration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import metrics as M  # noqa: E402
from benchmarks.results import write_results  # noqa: E402
from benchmarks.runner import machine  # noqa: E402
from benchmarks.text_detection_report import markdown, plot  # noqa: E402
from detect.core.resources import recipe_path  # noqa: E402

ZERO_SHOT = ["lm-fastdetect", "lm-binoculars", "lm-fastdetect-xref", "lm-likelihood",
             "lm-logrank", "lm-lrr", "lm-entropy", "lm-gltr"]
SUPERVISED = ["text-tfidf-logreg", "text-classifier"]
SHIP = ["text-tfidf-logreg", "lm-fastdetect", "lm-binoculars", "text-classifier"]  # primary first
ATTACKS = [("homoglyph 10%", "text-homoglyph", {"fraction": 0.1}),
           ("zero-width 10%", "text-zerowidth", {"fraction": 0.1}),
           ("delete 10% words", "text-delete", {"fraction": 0.1}),
           ("substitute 10% words", "text-substitute", {"fraction": 0.1}),
           ("mix 50% human", "text-mix", {"fraction": 0.5})]


def log(msg: str) -> None:
    print(f"[text-bench] {msg}", file=sys.stderr, flush=True)


def lm_dirs(corpus: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for key, g in corpus.header.get("generators", {}).items():
        out[g.get("entry", key)] = {**g, "dir": corpus.root / "generators" / key / "model"}
    return out


def pick_scorers(lms: dict[str, dict[str, Any]], observer: str | None,
                 performer: str | None) -> tuple[Path, Path | None]:
    from detect.text.lm import load_lm, vocab_fingerprint

    cands = [e for e, g in lms.items() if not g.get("held_out")]
    obs = observer or (cands[0] if cands else None)
    if obs not in lms:
        raise SystemExit(f"observer {obs!r} is not an LM of the corpus ({', '.join(lms)})")
    if lms[obs].get("held_out"):
        raise SystemExit(f"{obs} is held out: it must never score")
    fp = vocab_fingerprint(load_lm(str(lms[obs]["dir"]))[1])
    perf = performer
    if perf is None:
        for e in cands:
            if e != obs and vocab_fingerprint(load_lm(str(lms[e]["dir"]))[1]) == fp:
                perf = e
                break
    return lms[obs]["dir"], (lms[perf]["dir"] if perf else None)


def train_all(corpus: Any, names: list[str], work: Path, observer: Path,
              performer: Path | None) -> dict[str, Any]:
    from detect.core.detector import load_detector
    from detect.core.registry import detectors

    dets = {}
    for name in names:
        mdir = work / "models" / name
        if (mdir / "config.json").is_file():
            det = load_detector(mdir)
            if (det.trained_on_ or {}).get("content_hash") == corpus.content_hash:
                dets[name] = det
                log(f"{name}: reusing {mdir}")
                continue
        params: dict[str, Any] = {}
        if name.startswith("lm-"):
            params["observer"] = str(observer)
            if name in ("lm-binoculars", "lm-fastdetect-xref"):
                if performer is None:
                    log(f"{name}: no performer sharing the observer's tokenizer; skipped")
                    continue
                params["performer"] = str(performer)
        elif name == "text-classifier":
            params["init"] = str(observer)
            n_pos = json.loads((Path(observer) / "config.json").read_text())["n_positions"]
            params["max_length"] = min(256, int(n_pos))
        t0 = time.perf_counter()
        det = detectors.create(name, **params).fit(corpus)
        det.save(mdir)
        det = load_detector(mdir)
        log(f"{name}: trained in {time.perf_counter() - t0:.0f} s")
        dets[name] = det
    return dets


def _metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(scores)
    labels, scores = labels[ok], scores[ok]
    if len(set(labels.tolist())) < 2:
        return {"n": int(len(labels))}
    return {"auroc": M.auroc(labels, scores), "ap": M.average_precision(labels, scores),
            "eer": M.eer(labels, scores), "tpr_at_1pct_fpr": M.tpr_at_fpr(labels, scores, 0.01),
            "n_human": int((labels == 0).sum()), "n_machine": int((labels == 1).sum())}


def evaluate(dets: dict[str, Any], corpus: Any, held_sampling: set[str],
             held_gens: set[str], attack_human: list[str], seed: int) -> dict[str, Any]:
    from detect.attacks.text import CopyPasteMix
    from detect.core.registry import attacks

    test = corpus.split("test").filter(lambda r: r.modality == "text")
    recs = test.records
    texts = [(corpus.root / r.path).read_text(encoding="utf-8") for r in recs]
    labels = test.labels
    length = np.array([int(r.provenance.get("params", {}).get("length_bucket", 0)) for r in recs])
    sampling = np.array([((r.provenance.get("params") or {}).get("sampling") or {})
                         .get("name", "-") if r.label else "-" for r in recs])
    entry = np.array([(r.provenance.get("params") or {}).get("entry", "-") if r.label else "-"
                      for r in recs])
    human = labels == 0
    rows: list[dict[str, Any]] = []
    scores_of: dict[str, np.ndarray] = {}
    timing: dict[str, Any] = {}
    for name, det in dets.items():
        t0 = time.perf_counter()
        s = det.score(texts)
        dt = time.perf_counter() - t0
        scores_of[name] = s
        timing[name] = {"texts_per_s": len(texts) / dt}

        def add(group: str, value: str, sel: np.ndarray, name: str = name, s: np.ndarray = s
                ) -> None:
            rows.append({"detector": name, "group": group, "value": value,
                         **_metrics(labels[sel], s[sel])})

        seen = (~np.isin(sampling, list(held_sampling))) & (~np.isin(entry, list(held_gens)))
        add("all", "all lengths", np.ones_like(human))
        add("all seen", "all lengths", human | seen)
        for L in sorted(set(length.tolist())):
            add("length (seen configs)", str(L), (length == L) & (human | seen))
        for sname in sorted(set(sampling[~human].tolist())):
            tag = "held-out sampling" if sname in held_sampling else "sampling"
            add(tag, sname, human | ((sampling == sname) & ~np.isin(entry, list(held_gens))))
            for L in sorted(set(length.tolist())):
                if sname in held_sampling:
                    add(f"held-out sampling @{L}", sname, (length == L) & (
                        human | ((sampling == sname) & ~np.isin(entry, list(held_gens)))))
        for g in sorted(set(entry[~human].tolist())):
            tag = "held-out generator" if g in held_gens else "generator"
            add(tag, g, human | (entry == g))
        # the rule users get: realised FPR / TPR at the calibrated threshold, per length bucket
        cal_rows = []
        for L in sorted(set(length.tolist())):
            sel = length == L
            verdicts = [det.decide(texts[i], float(s[i]))["verdict"] for i in np.nonzero(sel)[0]]
            v = np.array(verdicts)
            lab = labels[sel]
            cal_rows.append({"length": int(L),
                             "fpr_synthetic": float((v[lab == 0] == "synthetic").mean()),
                             "human_uncertain": float((v[lab == 0] == "uncertain").mean()),
                             "tpr_synthetic": float((v[lab == 1] == "synthetic").mean())})
        rows.append({"detector": name, "group": "calibrated rule", "value": "per length",
                     "per_length": cal_rows})
    # attacks on both classes of the test split, with and without normalisation
    atk_rows = []
    rng = np.random.default_rng(seed)
    for label, reg, params in ATTACKS:
        atk_texts = []
        for i, t in enumerate(texts):
            if reg == "text-mix":
                if labels[i] == 0:
                    atk_texts.append(t)
                    continue
                atk = CopyPasteMix(human=attack_human[int(rng.integers(len(attack_human)))],
                                   seed=seed + i, **params)
            else:
                atk = attacks.create(reg, seed=seed + i, **params)
            atk_texts.append(atk(t))
        for name, det in dets.items():
            s_on = det.score(atk_texts)
            row = {"detector": name, "attack": label, "normalised": _metrics(labels, s_on)}
            if reg in ("text-homoglyph", "text-zerowidth"):
                det.normalize = False  # the same model, fed the attacked text as is
                try:
                    row["raw"] = _metrics(labels, det.score(atk_texts))
                finally:
                    det.normalize = True
            atk_rows.append(row)
    return {"rows": rows, "attacks": atk_rows, "timing": timing, "scores": scores_of,
            "ids": [r.id for r in recs], "labels": labels, "length": length}


def throughput(observer: Path, performer: Path | None, texts: list[str]) -> dict[str, Any]:
    import torch

    from detect.text.lm import LMScorer

    out = {"torch_threads": torch.get_num_threads()}
    for tag, perf in (("observer", None), ("observer+performer", performer)):
        if tag != "observer" and perf is None:
            continue
        sc = LMScorer(str(observer), str(perf) if perf else None, batch_size=8, cache_size=0)
        sc.stats(texts[:8])  # warm-up
        t0 = time.perf_counter()
        ts = sc.stats(texts)
        dt = time.perf_counter() - t0
        n = sum(t.n_scored + 1 for t in ts)
        out[tag] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt}
    return out


def ship(dets: dict[str, Any], observer: Path, performer: Path | None, corpus: Any,
         names: list[str]) -> None:
    """Ship the LMs and detectors (detect.app.release); zero-shot ones point at the shipped LMs."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from detect.app.release import Holdout, default_models_dir, release
    from detect.core.detector import load_detector
    from detect.text.zeroshot import HUMAN_CALIBRATION

    shipped_dir = default_models_dir()  # refuses an installed package before any work
    with tempfile.TemporaryDirectory(prefix="unmask-ship-") as tmp:
        stage = Path(tmp)
        models: dict[str, Path] = {}
        lm = {}  # the LM each shipped ref will name, to calibrate on before it is shipped
        for src, name in ((observer, "text-lm-a"), (performer, "text-lm-b")):
            lm[name] = shipped_dir / name
            if src is None:
                continue
            dest = stage / name
            # half precision on disk (the budget is 30 MB for every shipped model); scoring
            # upcasts to float32, and the detectors below are re-calibrated on these very weights
            AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).half() \
                .save_pretrained(dest)
            AutoTokenizer.from_pretrained(src).save_pretrained(dest)
            if (Path(src) / "unmask.json").is_file():
                shutil.copy(Path(src) / "unmask.json", dest / "unmask.json")
            models[name] = lm[name] = dest
        shipped = []
        for name in names:
            if name not in dets:
                continue
            if name == "text-classifier":
                continue  # 5.5 MB more than the budget allows; `unmask train text-classifier`
            det = load_detector(dets[name].model_dir_)
            if name.startswith("lm-"):
                det.observer = str(lm["text-lm-a"])
                if det.performer:
                    det.performer = str(lm["text-lm-b"])
                det.calibrate_on(corpus.split("calib"))
                # saved referring to the shipped LMs by name, not as copies
                det.observer = "shipped:text-lm-a"
                if det.performer:
                    det.performer = "shipped:text-lm-b"
            models[name] = det.save(stage / name)
            shipped.append(name)
        calib = corpus.split("calib").filter(lambda r: r.modality == "text" and r.label == 0)
        models[HUMAN_CALIBRATION] = stage / HUMAN_CALIBRATION
        with open(models[HUMAN_CALIBRATION], "w", encoding="utf-8") as f:
            for r in calib.records:
                f.write(json.dumps({"text": (corpus.root / r.path).read_text(encoding="utf-8"),
                                    "id": r.id, "source": r.provenance.get("source")},
                                   ensure_ascii=False) + "\n")
        # a small held-out sample beside the tests, so the shipped text models stay checked
        held_s = set(corpus.header.get("held_out_sampling", []))
        held_g = set(corpus.header.get("held_out_generators", []))

        def seen(r: Any) -> bool:  # what the shipped models are meant to handle
            p = r.provenance.get("params") or {}
            return r.label == 0 or ((p.get("sampling") or {}).get("name") not in held_s
                                    and p.get("entry") not in held_g)

        test = corpus.split("test").filter(lambda r: r.modality == "text" and seen(r))
        picked = []
        for lab in (0, 1):
            recs = [r for r in test.records if r.label == lab]
            picked += recs[::max(1, len(recs) // 16)][:16]
        release(models,
                defaults={"text": shipped, "text_recipe": "datasets/recipes/text.toml",
                          "text_corpus_hash": corpus.content_hash},
                holdout=Holdout("shipped-holdout-text", corpus, picked, filename=lambda r:
                                f"{'human' if r.label == 0 else 'machine'}-{r.id[:12]}.txt"))
    log(f"shipped {', '.join(shipped)} and the LMs into {shipped_dir}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(recipe_path("text")))
    ap.add_argument("--work", default="runs/text")
    ap.add_argument("--out", default=None, help="publish results here (e.g. "
                    "benchmarks/results/text_detection)")
    ap.add_argument("--detectors", nargs="+", default=ZERO_SHOT + SUPERVISED)
    ap.add_argument("--observer", help="corpus LM entry that scores (default: the first not "
                    "held out)")
    ap.add_argument("--performer", help="second LM entry for binoculars (default: another "
                    "with the same tokenizer)")
    ap.add_argument("--update-defaults", action="store_true")
    ap.add_argument("--ship-only", action="store_true",
                    help="with --update-defaults: ship the trained models, skip the evaluation")
    ap.add_argument("--fastdetect-json", action="append", default=[],
                    help="also score a Fast-DetectGPT data file ({original, sampled})")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    t0 = time.perf_counter()
    from benchmarks.text_formats import read_fastdetect_json, write_raid_predictions
    from generators.recipe import build

    work = Path(a.work)
    corpus = build(a.recipe, work / "corpus", progress=True)
    lms = lm_dirs(corpus)
    observer, performer = pick_scorers(lms, a.observer, a.performer)
    log(f"observer {observer}, performer {performer}")
    dets = train_all(corpus, a.detectors, work, observer, performer)
    if a.ship_only:
        ship(dets, observer, performer, corpus, SHIP)
        return 0
    held_s = set(corpus.header.get("held_out_sampling", []))
    held_g = set(corpus.header.get("held_out_generators", []))
    train_h = corpus.split("train").filter(lambda r: r.label == 0 and r.modality == "text")
    human_pool = [(corpus.root / r.path).read_text(encoding="utf-8")
                  for r in train_h.records[:200]]
    ev = evaluate(dets, corpus, held_s, held_g, human_pool, a.seed)
    test_texts = [(corpus.root / r.path).read_text(encoding="utf-8")
                  for r in corpus.split("test").records[:64]]
    tp = throughput(observer, performer, test_texts)
    extra = {}
    for f in a.fastdetect_json:
        texts, labels, ids = read_fastdetect_json(f)
        extra[str(f)] = {n: _metrics(np.array(labels), d.score(texts)) for n, d in dets.items()}
    res = {"schema": "unmask.bench/1", "benchmark": "text_detection",
           "corpus": corpus.header.get("name"), "corpus_hash": corpus.content_hash,
           "observer": Path(observer).parent.name,
           "performer": Path(performer).parent.name if performer else None,
           "held_out_sampling": sorted(held_s), "held_out_generators": sorted(held_g),
           "lms": {e: {k: g.get(k) for k in ("n_params", "heldout_perplexity",
                                              "untrained_perplexity", "held_out")}
                   for e, g in lms.items()},
           "rows": ev["rows"], "attacks": ev["attacks"], "timing": ev["timing"],
           "throughput": tp, "fastdetect_json": extra, "machine": machine(),
           "seconds": time.perf_counter() - t0,
           "command": "python benchmarks/text_detection.py " + " ".join(sys.argv[1:])}
    out = Path(a.out) if a.out else work / "bench"
    res_plot = {**res, "scores": ev["scores"], "labels": ev["labels"], "length": ev["length"]}
    write_results(out, res, markdown(res), figure=lambda p: plot(res_plot, p))
    for name, s in ev["scores"].items():
        write_raid_predictions(out / "predictions" / f"{name}.json", ev["ids"], s.tolist(),
                               about={"detector": name, "corpus_hash": corpus.content_hash,
                                      "split": "test", "higher_means": "machine-generated"})
    log(f"wrote {out}/results.md")
    if a.update_defaults:
        ship(dets, observer, performer, corpus, SHIP)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
