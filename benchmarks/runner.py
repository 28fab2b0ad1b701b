"""Score saved detectors on a corpus split and publish a leaderboard (JSON, Markdown, ROC PNG).

Metrics come in two kinds, kept apart on purpose: threshold-free ones (AUROC, AP, EER, TPR at
1% FPR with the cut chosen on the test data itself, an optimistic oracle) and the ones a user
actually gets, at the threshold the detector calibrated on its own calib split (accuracy, the
realised FPR next to the promised target, TPR).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.detector import load_detector
from detect.core.registry import attacks as attack_registry
from detect.io.corpus import Corpus

from . import metrics as M

LEADERBOARD_SCHEMA = "unmask.leaderboard/1"


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    for dist in ("torch", "numpy", "scikit-learn", "timm"):
        with contextlib.suppress(md.PackageNotFoundError):
            info[dist] = md.version(dist)
    return info


def parse_attack(spec: str) -> Any:
    """``jpeg:quality=50`` -> the registered attack with that parameter."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        try:
            kwargs[k] = json.loads(v)
        except json.JSONDecodeError:
            kwargs[k] = v
    atk = attack_registry.create(name, **kwargs)
    atk.spec = spec
    return atk


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float,
             target_fpr: float) -> dict[str, Any]:
    row = {
        "auroc": M.auroc(labels, scores),
        "auroc_ci95": M.bootstrap_ci(labels, scores, M.auroc),
        "ap": M.average_precision(labels, scores),
        "eer": M.eer(labels, scores),
        "tpr_at_1pct_fpr": M.tpr_at_fpr(labels, scores, 0.01),
    }
    at = M.at_threshold(labels, scores, threshold)
    row.update({"threshold": threshold, "target_fpr": target_fpr,
                "accuracy_at_threshold": at["accuracy"], "fpr_at_threshold": at["fpr"],
                "tpr_at_threshold": at["tpr"], "n_real": int((labels == 0).sum()),
                "n_synthetic": int((labels == 1).sum())})
    return row


def run(corpus_dir: str | Path, model_dirs: list[str | Path], out_dir: str | Path, *,
        split: str = "test", attack_specs: list[str] | None = None,
        progress: bool = True) -> dict[str, Any]:
    from tqdm.auto import tqdm

    corpus = Corpus.open(corpus_dir)
    view = corpus.split(split).filter(lambda r: r.modality == "image")
    labels = view.labels
    if len(set(labels.tolist())) < 2:
        from detect.core.errors import ConfigError

        raise ConfigError(f"{corpus_dir}: split {split!r} needs real and synthetic images to "
                          f"bench on (has {view.counts().get(split, {}) or 'none'})")
    images = [it for it in view.iter_items()]
    conditions: list[tuple[str, Any]] = [("clean", None)]
    conditions += [(s, parse_attack(s)) for s in attack_specs or []]
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, float]] = {}
    seen: dict[str, str] = {}
    for mdir in model_dirs:
        det = load_detector(mdir)
        cal = det.calibration_for()
        # two models of one detector name (e.g. two trainings) keep apart in table and plot
        label = det.name if seen.setdefault(det.name, str(mdir)) == str(mdir) \
            else f"{det.name} ({mdir})"
        for cond, atk in conditions:
            batch = [it.content if atk is None else atk(it.content) for it in images]
            t0 = time.perf_counter()
            scores = np.concatenate([det.score(batch[i:i + 64]) for i in
                                     tqdm(range(0, len(batch), 64), desc=f"bench {det.name} {cond}",
                                          file=sys.stderr, disable=not progress, leave=False)])
            dt = time.perf_counter() - t0
            row = {"detector": det.name, "label": label, "model": str(mdir), "condition": cond,
                   **evaluate(labels, scores, cal.threshold, cal.target_fpr),
                   "images_per_s": len(batch) / dt if dt > 0 else None}
            rows.append(row)
            fpr, tpr, _ = M.roc(labels, scores)
            curves[(row["label"], cond)] = (fpr, tpr, row["auroc"])
    rows.sort(key=lambda r: (r["condition"] != "clean", r["condition"], -r["auroc"]))
    board = {"schema": LEADERBOARD_SCHEMA, "corpus": corpus.header.get("name"),
             "corpus_hash": corpus.content_hash, "split": split, "rows": rows,
             "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(board, indent=2) + "\n", encoding="utf-8")
    (out / "leaderboard.md").write_text(markdown(board), encoding="utf-8")
    plot_roc(curves, out / "roc.png", title=f"{board['corpus']} / {split}")
    return board


def machine_line(res: dict[str, Any]) -> str:
    """The closing line of a benchmark's Markdown: where it ran and how to run it again."""
    m = res["machine"]
    return (f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m.get('torch')}. "
            f"Command: `{res['command']}`.")


def markdown(board: dict[str, Any]) -> str:
    head = ("| detector | condition | AUROC (95% CI) | AP | EER | TPR@1%FPR | threshold @ target "
            "FPR | acc | FPR real | TPR | img/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in board["rows"]:
        lo, hi = r["auroc_ci95"]
        lines.append(
            f"| {r.get('label', r['detector'])} | {r['condition']} | "
            f"{r['auroc']:.3f} ({lo:.3f}-{hi:.3f}) | "
            f"{r['ap']:.3f} | {r['eer']:.3f} | {r['tpr_at_1pct_fpr']:.3f} | "
            f"{r['threshold']:.3g} @ {r['target_fpr']:g} | {r['accuracy_at_threshold']:.3f} | "
            f"{r['fpr_at_threshold']:.3f} | {r['tpr_at_threshold']:.3f} | "
            f"{(r['images_per_s'] or 0):.0f} |")
    n = board["rows"][0] if board["rows"] else {}
    m = board["machine"]
    foot = (f"\nCorpus `{board['corpus']}` ({board['corpus_hash'][:12]}), split `{board['split']}`"
            f": {n.get('n_real', 0)} real, {n.get('n_synthetic', 0)} synthetic. TPR@1%FPR picks "
            "its cut on the test data (oracle); acc / FPR real / TPR use the threshold each "
            "detector calibrated on its own calib split. Machine: "
            f"{m.get('platform')}, {m.get('cpus')} CPUs, torch {m.get('torch', '-')}.\n")
    return f"# Leaderboard\n\n{head}" + "\n".join(lines) + "\n" + foot


def plot_roc(curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, float]], path: Path,
             title: str = "") -> None:
    """Linear and log-FPR ROC panels; colour = detector, line style = condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    dets = list(dict.fromkeys(d for d, _ in curves))
    conds = list(dict.fromkeys(c for _, c in curves))
    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1))]
    for (det, cond), (fpr, tpr, auc) in curves.items():
        color = plt.cm.tab10(dets.index(det) % 10)
        ls = styles[conds.index(cond) % len(styles)]
        for ax in axes:
            ax.plot(fpr, tpr, color=color, ls=ls, lw=1.4, label=f"{det} ({cond}): AUROC {auc:.3f}")
    axes[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[0].set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC {title}")
    axes[1].set_xscale("log")
    axes[1].set_xlim(1e-3, 1)
    axes[1].axvline(0.01, color="grey", ls="--", lw=0.8)
    axes[1].set(xlabel="false-positive rate (log)", title="low-FPR region (1% marked)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
