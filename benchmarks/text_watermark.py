"""Text watermark detection: KGW (lefthash, selfhash) and SynthID-Text, from decoded text.

No model can be downloaded here, so the benchmark builds its own: a byte-level BPE tokenizer
and a small GPT-2 trained for a few minutes on the English prose that ships with Python
(``pydoc_data.topics``), saved with ``save_pretrained`` and loaded back by path. A quarter of
the paragraphs is held out: their openings are the prompts, their text the human controls.

For every scheme it generates watermarked continuations with transformers' ``generate(...,
watermarking_config=...)``, decodes them, and verifies from the *text* (re-tokenised) with
``detect.evidence.watermark.text``. Reported: detection rate at target FPR 1e-6 and 1e-2 and mean z
against length; robustness at 200 tokens to word substitution and deletion; copy-paste mixing
(a watermarked stretch inside human text, whole-text test against the windowed scan); false
positives on held-out human text and on unwatermarked output of the same model.

    python benchmarks/text_watermark.py --out benchmarks/results/text_watermark
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

# the small language model (benchmarks/lm_tools.py) and the data and tokenizer (generators
# package), also used by tests/test_text_watermark.py; re-exported here unchanged
from benchmarks.lm_tools import build_lm
from benchmarks.lm_tools import generate_batched as generate_ids
from benchmarks.runner import machine
from generators.text.sources import prose_paragraphs, split_paragraphs
from generators.text.tokenizer import train_tokenizer

RESULTS_SCHEMA = "unmask.bench-text-watermark/1"
LENGTHS = (25, 50, 100, 200, 400)
FPRS = (1e-6, 1e-2)


__all__ = ["build_lm", "generate_ids", "prose_paragraphs", "split_paragraphs", "train_tokenizer"]


# ---------------------------------------------------------------------------------------------
# attacks on text


def substitute_words(text: str, fraction: float, vocabulary: list[str], rng: random.Random
                     ) -> str:
    """Replace ``fraction`` of the words by random words of human text (a crude paraphrase)."""
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if w]
    for i in rng.sample(idx, round(fraction * len(idx))):
        words[i] = rng.choice(vocabulary)
    return " ".join(words)


def delete_words(text: str, fraction: float, rng: random.Random) -> str:
    """Delete ``fraction`` of the words."""
    words = text.split(" ")
    drop = set(rng.sample(range(len(words)), round(fraction * len(words))))
    return " ".join(w for i, w in enumerate(words) if i not in drop)


# ---------------------------------------------------------------------------------------------
# the benchmark


def _machine() -> dict[str, Any]:
    import torch

    return {**machine(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "transformers": __import__("transformers").__version__}


def _summ(results: list[Any], weighted: bool = False) -> dict[str, Any]:
    """Detection rates at each FPR, mean z and tokens scored, for a list of WatermarkResults
    (``weighted``: SynthID's weighted-mean z and p instead of the exact mean test)."""
    if weighted:
        ps = [r.statistic["p_weighted"] if r.status != "insufficient" else None for r in results]
        zs = [r.statistic["z_weighted"] for r in results if r.statistic.get("z_weighted")]
    else:
        ps = [r.p_value for r in results]
        zs = [r.statistic["z"] for r in results if r.statistic.get("z") is not None]
    row: dict[str, Any] = {"n": len(results)}
    for f in FPRS:
        row[f"detected@{f:g}"] = sum(1 for p in ps if p is not None and p <= f)
    row["insufficient"] = sum(1 for r in results if r.status == "insufficient")
    row["mean_z"] = sum(zs) / len(zs) if zs else None
    scored = [r.statistic.get("tokens_scored", 0) for r in results]
    row["mean_tokens_scored"] = sum(scored) / len(scored) if scored else None
    return row


def _scan_summ(results: list[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(results)}
    for f in FPRS:
        # the scan's p is the best window's; the result's alpha already carries the m windows
        row[f"detected@{f:g}"] = sum(
            1 for r in results if r.p_value is not None
            and r.p_value * r.statistic["windows_tested"] <= f)
    zs = [r.statistic["best_window"]["z"] for r in results if "best_window" in r.statistic]
    row["mean_z"] = sum(zs) / len(zs) if zs else None
    return row


def run(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from detect.evidence.watermark.text import scan_kgw, scan_synthid, verify_text
    from detect.evidence.watermark.text_keys import TextWatermarkKey, retokenization_drift

    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    t_start = time.perf_counter()
    work = Path(a.work)
    lm_dir = work / "lm"
    trained = a.retrain or not (lm_dir / "config.json").exists()
    if trained:
        print(f"training the LM into {lm_dir}", file=sys.stderr)
        build_lm(lm_dir, vocab_size=a.vocab, n_layer=a.layers, n_embd=a.embd, n_head=a.heads,
                 n_positions=512, steps=a.steps, block=a.block, batch=a.batch, lr=a.lr,
                 seed=a.seed, threads=a.threads, progress=True)
    tok = AutoTokenizer.from_pretrained(lm_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    info = json.loads((lm_dir / "train_info.json").read_text())

    _, held = split_paragraphs()
    rng = random.Random(a.seed)
    # prompts: the first tokens of held-out paragraphs long enough to have them
    opening = [tok(p)["input_ids"] for p in held]
    prompts = [ids[:a.prompt_tokens] for ids in opening if len(ids) > a.prompt_tokens + 4]
    rng.shuffle(prompts)
    prompts = prompts[:a.prompts]
    # human text: the held-out paragraphs as one token stream, cut into chunks per length
    stream: list[int] = []
    for p in held:
        stream += tok(" " + p)["input_ids"]
    words = sorted({w for p in split_paragraphs()[0] for w in p.split()})

    keys = {
        "kgw-lefthash": TextWatermarkKey.new("kgw", tok, seed=a.seed, name="kgw-lefthash",
                                             vocab_size=model.config.vocab_size,
                                             seeding_scheme="lefthash"),
        "kgw-selfhash": TextWatermarkKey.new("kgw", tok, seed=a.seed + 1, name="kgw-selfhash",
                                             vocab_size=model.config.vocab_size,
                                             seeding_scheme="selfhash", context_width=2),
        "synthid": TextWatermarkKey.new("synthid", tok, seed=a.seed + 2, name="synthid",
                                        vocab_size=model.config.vocab_size, depth=30,
                                        ngram_len=5),
    }
    n_max = max(LENGTHS)
    t0 = time.perf_counter()
    gens = {name: generate_ids(model, prompts, n_max, watermarking_config=k.to_transformers(),
                               seed=a.seed, progress=True, desc=f"generate {name}")
            for name, k in keys.items()}
    plain = generate_ids(model, prompts, n_max, watermarking_config=None, seed=a.seed + 99,
                         progress=True, desc="generate plain")
    gen_s = time.perf_counter() - t0

    def dec(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    def human_chunks(n: int) -> list[str]:
        return [dec(stream[i:i + n]) for i in range(0, len(stream) - n + 1, n)][:a.human_max]

    rows: list[dict[str, Any]] = []

    def add(name: str, condition: str, n: int, results: list[Any], **extra: Any) -> None:
        rows.append({"scheme": name, "condition": condition, "tokens": n, **_summ(results),
                     **extra})
        if name == "synthid":  # the same g-values, scored with the paper's layer weights
            rows.append({"scheme": "synthid-weighted", "condition": condition, "tokens": n,
                         **_summ(results, weighted=True), **extra})

    total = len(keys) * (len(LENGTHS) * 3 + 9)
    bar = tqdm(total=total, desc="verify", file=sys.stderr)
    for name, key in keys.items():
        scan = scan_kgw if key.scheme == "kgw" else scan_synthid

        def verify(texts: list[str], key: TextWatermarkKey = key) -> list[Any]:
            return [verify_text(t, key, tok) for t in texts]

        for n in LENGTHS:
            texts = [dec(g[:n]) for g in gens[name]]
            drift = [retokenization_drift(g[:n], tok)["n_changed"] for g in gens[name]]
            t0 = time.perf_counter()
            results = verify(texts)
            ms = 1000 * (time.perf_counter() - t0) / len(texts)
            add(name, "clean", n, results, retokenized_changed_mean=sum(drift) / len(drift),
                verify_ms_per_text=ms)
            bar.update()
            add(name, "human", n, verify(human_chunks(n)))
            bar.update()
            add(name, "unwatermarked model", n, verify([dec(g[:n]) for g in plain]))
            bar.update()
        base = [dec(g[:200]) for g in gens[name]]
        for frac in (0.1, 0.3):
            r = random.Random(a.seed)
            add(name, f"substitute {frac:.0%} words", 200,
                verify([substitute_words(t, frac, words, r) for t in base]))
            bar.update()
            add(name, f"delete {frac:.0%} words", 200,
                verify([delete_words(t, frac, r) for t in base]))
            bar.update()
        # copy-paste: a watermarked stretch in the middle of human text, 400 tokens in all
        humans = human_chunks(400)
        for share in (0.25, 0.5):
            n_wm = round(400 * share)
            n_h = (400 - n_wm) // 2
            mixed = []
            for i, g in enumerate(gens[name]):
                h = tok(humans[i % len(humans)])["input_ids"]
                mixed.append(dec(h[:n_h]) + dec(g[:n_wm]) + dec(h[n_h:2 * n_h]))
            add(name, f"paste {share:.0%} in human, whole text", 400, verify(mixed))
            bar.update()
            rows.append({"scheme": name, "condition": f"paste {share:.0%} in human, scan",
                         "tokens": 400, **_scan_summ([scan(t, key, tok) for t in mixed])})
            bar.update()
        rows.append({"scheme": name, "condition": "human, scan", "tokens": 400,
                     **_scan_summ([scan(t, key, tok) for t in humans])})
        bar.update()
    bar.close()
    return {"schema": RESULTS_SCHEMA, "command": " ".join(["python"] + sys.argv),
            "machine": _machine(),
            "machine_line": f"{_machine()['processor']}/{os.cpu_count()} CPUs, "
                            f"torch {torch.__version__}",
            "lm": {**info, "dir": str(lm_dir), "trained_this_run": trained},
            "prompts": len(prompts), "prompt_tokens": a.prompt_tokens,
            "keys": {n: {"scheme": k.scheme, "fingerprint": k.fingerprint,
                         **({"greenlist_ratio": k.greenlist_ratio, "bias": k.bias,
                             "seeding_scheme": k.seeding_scheme,
                             "context_width": k.context_width} if k.scheme == "kgw" else
                            {"depth": len(k.keys), "ngram_len": k.ngram_len})}
                     for n, k in keys.items()},
            "schemes": list(dict.fromkeys(r["scheme"] for r in rows)),
            "examples": {n: dec(g[0][:80]) for n, g in gens.items()},
            "generate_seconds": gen_s, "total_seconds": time.perf_counter() - t_start,
            "rows": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _rate(r: dict[str, Any], f: float) -> str:
    return f"{r[f'detected@{f:g}']}/{r['n']}"


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Text watermark detection (from decoded text)", "",
             f"{res['prompts']} held-out prompts ({res['prompt_tokens']} tokens) per scheme; "
             f"small GPT-2 ({res['lm']['n_layer']} layers, {res['lm']['n_embd']} wide, vocab "
             f"{res['lm']['vocab_size']}, {res['lm']['steps']} steps on "
             f"{res['lm']['train_tokens']} tokens of pydoc prose, final loss "
             f"{res['lm']['final_loss']:.2f}); pure sampling (temperature 1, no top-k). Keys: "
             + "; ".join(f"{n}: " + ", ".join(f"{k} {v}" for k, v in d.items()
                                              if k not in ("scheme", "fingerprint"))
                         for n, d in res["keys"].items())
             + ". Detection is from the decoded text, re-tokenised; p-values are exact binomial "
             "tails (synthid-weighted: the SynthID paper's 10->1 layer weights, normal tail); "
             "repeated n-grams / contexts are scored once. Detected = p <= target FPR.", "",
             "## Detection against length", "",
             "| scheme | tokens | detected @1e-6 | detected @1e-2 | mean z | scored | "
             "re-tokenised changed | human FP @1e-6 | human FP @1e-2 | unwatermarked FP @1e-2 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rows = res["rows"]

    def find(scheme: str, cond: str, n: int) -> dict[str, Any]:
        return next(r for r in rows if r["scheme"] == scheme and r["condition"] == cond
                    and r["tokens"] == n)

    for scheme in res["schemes"]:
        for n in LENGTHS:
            c, h, u = (find(scheme, k, n) for k in ("clean", "human", "unwatermarked model"))
            lines.append(
                f"| {scheme} | {n} | {_rate(c, 1e-6)} | {_rate(c, 1e-2)} | {_f(c['mean_z'])} | "
                f"{c['mean_tokens_scored']:.0f} | {c['retokenized_changed_mean']:.2f} | "
                f"{_rate(h, 1e-6)} | {_rate(h, 1e-2)} | {_rate(u, 1e-2)} |")
    lines += ["", "## Attacks (200 tokens) and copy-paste (400 tokens)", "",
              "| scheme | condition | tokens | detected @1e-6 | detected @1e-2 | mean z |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r["condition"] in ("clean", "human", "unwatermarked model"):
            continue
        lines.append(f"| {r['scheme']} | {r['condition']} | {r['tokens']} | "
                     f"{_rate(r, 1e-6)} | {_rate(r, 1e-2)} | {_f(r['mean_z'])} |")
    lines += ["", "Scan rows: the best window's z, its p-value Bonferroni-corrected for every "
              "window tried (sizes 32/64/128/256 tokens, stride a quarter window, whole text "
              "included). `human, scan` is the scan's false-positive count on pure human text.",
              "", f"Machine: {res['machine_line']} ({res['machine']['platform']}), "
              f"{res['machine']['torch_threads']} torch threads; LM training "
              f"{res['lm'].get('train_seconds', 0):.0f} s"
              f"{'' if res['lm'].get('trained_this_run') else ' (earlier run, reused)'}, "
              f"generation {res['generate_seconds']:.0f} s, total {res['total_seconds']:.0f} s. "
              f"Command: `{res['command']}`.", ""]
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, scheme in enumerate(res["schemes"]):
        for f, style in zip(FPRS, ("-", "--"), strict=True):
            pts = [(r["tokens"], r[f"detected@{f:g}"] / r["n"]) for r in rows
                   if r["scheme"] == scheme and r["condition"] == "clean"]
            ax1.plot(*zip(*pts, strict=True), style, marker="o", color=colors[k % len(colors)],
                     label=f"{scheme} @FPR {f:g}")
        h = [(r["tokens"], r["detected@0.01"] / r["n"]) for r in rows
             if r["scheme"] == scheme and r["condition"] == "human"]
        ax1.plot(*zip(*h, strict=True), ":", marker="x", color="grey",
                 label="human FP @1e-2" if scheme == res["schemes"][0] else None)
    ax1.set_xscale("log")
    ax1.minorticks_off()
    ax1.set_xticks(list(LENGTHS), [str(n) for n in LENGTHS])
    ax1.set_xlabel("tokens")
    ax1.set_ylabel("detection rate")
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_title("Detection vs length (from text)")
    ax1.legend(fontsize=7, loc="lower right")
    conds = [c for c in dict.fromkeys(r["condition"] for r in rows)
             if c not in ("clean", "human", "unwatermarked model")]
    width = 0.8 / len(res["schemes"])
    for i, scheme in enumerate(res["schemes"]):
        vals = []
        for c in conds:
            r = next((r for r in rows if r["scheme"] == scheme and r["condition"] == c), None)
            vals.append(r["detected@1e-06"] / r["n"] if r else 0.0)
        ax2.bar([j + i * width for j in range(len(conds))], vals, width, label=scheme)
    ax2.set_xticks([j + 0.4 - width / 2 for j in range(len(conds))], conds, rotation=35, ha="right",
                   fontsize=7)
    ax2.set_ylabel("detection rate @ FPR 1e-6")
    ax2.set_ylim(0, 1.18)
    ax2.set_title("Attacks (200 tok), copy-paste (400 tok), scan FP on human")
    ax2.legend(fontsize=7, ncol=len(res["schemes"]), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/text_watermark")
    ap.add_argument("--work", default="runs/text_watermark", help="where the LM is kept")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--prompt-tokens", type=int, default=12)
    ap.add_argument("--human-max", type=int, default=60, help="human chunks per length")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: small models gain nothing from more)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from benchmarks.results import write_results

    res = run(a)
    write_results(a.out, res, markdown(res), figure=lambda p: plot(res, p))
    print(markdown(res))


if __name__ == "__main__":
    main()
