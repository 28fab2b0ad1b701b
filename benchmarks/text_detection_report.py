"""The report of ``benchmarks/text_detection.py``: its Markdown tables and its figure (AUROC
against length, ROC at 200 tokens), from the results record alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import metrics as M


def markdown(res: dict[str, Any]) -> str:
    rows = res["rows"]
    dets = list(dict.fromkeys(r["detector"] for r in rows))
    lines = ["# Machine-text detection", "",
             f"Corpus `{res['corpus']}` ({res['corpus_hash'][:12]}), test split. Observer "
             f"`{res['observer']}`, performer `{res['performer']}`; held-out sampling "
             f"{res['held_out_sampling']}, held-out generator {res['held_out_generators']}. "
             "Cells: AUROC / TPR at 1% FPR (oracle cut on the test data).", ""]

    def cell(det: str, group: str, value: str) -> str:
        r = next((r for r in rows if r["detector"] == det and r["group"] == group
                  and r["value"] == value), None)
        if not r or "auroc" not in r:
            return "-"
        return f"{r['auroc']:.3f} / {r['tpr_at_1pct_fpr']:.2f}"

    lengths = sorted({r["value"] for r in rows if r["group"] == "length (seen configs)"},
                     key=int)
    held_s = res["held_out_sampling"]
    held_g = res["held_out_generators"]
    head = (["detector", "all test", "seen configs"] + [f"{L} tok" for L in lengths]
            + [f"held-out sampling {s}" for s in held_s]
            + [f"held-out sampling {s} @{L}" for s in held_s for L in lengths]
            + [f"held-out LM {g}" for g in held_g])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in dets:
        cells = [cell(d, "all", "all lengths"), cell(d, "all seen", "all lengths")]
        cells += [cell(d, "length (seen configs)", L) for L in lengths]
        cells += [cell(d, "held-out sampling", s) for s in held_s]
        cells += [cell(d, f"held-out sampling @{L}", s) for s in held_s for L in lengths]
        cells += [cell(d, "held-out generator", g) for g in held_g]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    samp = sorted({r["value"] for r in rows if r["group"] == "sampling"})
    lines += ["", "## Per sampling config (all lengths)", "",
              "| detector | " + " | ".join(samp) + " |", "|---|" + "---|" * len(samp)]
    for d in dets:
        lines.append(f"| {d} | " + " | ".join(cell(d, "sampling", s) for s in samp) + " |")
    lines += ["", "## Calibrated thresholds (target FPR 1%, per length bucket)", "",
              "Realised on the test split: human texts flagged synthetic / abstained (uncertain)"
              " / machine texts flagged.", "",
              "| detector | " + " | ".join(f"{L} tok" for L in lengths) + " |",
              "|---|" + "---|" * len(lengths)]
    for d in dets:
        r = next(r for r in rows if r["detector"] == d and r["group"] == "calibrated rule")
        by = {str(c["length"]): c for c in r["per_length"]}
        lines.append(f"| {d} | " + " | ".join(
            f"{by[L]['fpr_synthetic']:.3f} / {by[L]['human_uncertain']:.2f} / "
            f"{by[L]['tpr_synthetic']:.2f}" if L in by else "-" for L in lengths) + " |")
    atk = res["attacks"]
    names = list(dict.fromkeys(a["attack"] for a in atk))
    lines += ["", "## Attacks (both classes of the test split; AUROC with normalisation, and "
              "without where it applies)", "",
              "| detector | clean | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for d in dets:
        cells = [cell(d, "all", "all lengths").split(" / ")[0]]
        for n in names:
            a = next((a for a in atk if a["detector"] == d and a["attack"] == n), None)
            if not a or "auroc" not in a["normalised"]:
                cells.append("-")
                continue
            c = f"{a['normalised']['auroc']:.3f}"
            if "raw" in a and "auroc" in a["raw"]:
                c += f" (raw {a['raw']['auroc']:.3f})"
            cells.append(c)
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    tp = res["throughput"]
    lines += ["", "## Throughput of the shared zero-shot pass", ""]
    for k in ("observer", "observer+performer"):
        if k in tp:
            lines.append(f"- {k}: {tp[k]['tokens_per_s']:.0f} tokens/s "
                         f"({tp[k]['tokens']} tokens, torch threads {tp['torch_threads']})")
    lines += ["", "LMs (held-out perplexity on human test documents): " + "; ".join(
        f"{e}: {g.get('n_params')} params, ppl {g.get('heldout_perplexity')}"
        for e, g in res["lms"].items()), "",
        f"Machine: {res['machine']}. Time: {res['seconds']:.0f} s. Command: `{res['command']}`."]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    dets = list(dict.fromkeys(r["detector"] for r in rows))
    for d in dets:
        pts = sorted((int(r["value"]), r["auroc"]) for r in rows if r["detector"] == d
                     and r["group"] == "length (seen configs)" and "auroc" in r)
        if pts:
            axes[0].plot(*zip(*pts, strict=True), marker="o", label=d)
    axes[0].set(xscale="log", xlabel="length bucket (tokens)", ylabel="AUROC",
                title="AUROC against length (seen sampling configs)")
    axes[0].legend(fontsize=7)
    labels, length = res["labels"], res["length"]
    L = 200 if 200 in set(length.tolist()) else int(np.median(length))
    sel = length == L
    for d in dets:
        s = res["scores"][d][sel]
        ok = np.isfinite(s)
        if len(set(labels[sel][ok].tolist())) == 2:
            fpr, tpr, _ = M.roc(labels[sel][ok], s[ok])
            axes[1].plot(fpr, tpr, label=d)
    axes[1].set(xscale="log", xlim=(1e-3, 1), xlabel="false-positive rate (log)",
                ylabel="true-positive rate", title=f"ROC at {L} tokens (all test texts)")
    axes[1].axvline(0.01, color="grey", ls="--", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
