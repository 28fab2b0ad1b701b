"""How the shipped stack does on a labelled folder nobody here made: GenImage, Synthbuster, your
own uploads.

    python benchmarks/wild.py DIR [--out FOLDER] [--detector NAME ...] [--model DIR ...]
                              [--target-fpr 0.01] [--bootstrap 1000] [--limit N]

``DIR`` holds ``real/`` and ``fake/`` (any depth below them; each first-level sub-folder of
``real/`` or ``fake/`` is reported as its own group, e.g. ``fake/midjourney``), or is a manifest
file (``.jsonl`` with ``{"path", "label": 0|1|"real"|"fake", "group"?}`` per line, or ``.csv``
with those columns; relative paths are read from the manifest's folder). Every file goes through
``unmask scan`` exactly as a moderation script would run it (the same loading limits, the same
verdict rule); an unreadable file is counted as an error, never dropped.

Reported per fake group (against all the reals) and per real group: AUROC and AP of the stack's
score and of every member's, TPR at the shipped threshold (the verdict "synthetic" for the stack,
``score > threshold`` for a member), the realised FPR on reals at that same threshold, each with
a bootstrap interval (AUROC, AP) or an exact Clopper-Pearson interval (rates); ROC curves in
``results.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # `python benchmarks/wild.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.metrics import auroc, average_precision, bootstrap_ci, clopper_pearson, roc
from benchmarks.results import write_results
from detect.core.errors import ConfigError

_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1, "synthetic": 1}


def labelled_files(source: str | Path) -> list[tuple[str, int, str]]:
    """(path, label, group) for every file of a ``real/`` + ``fake/`` folder or a manifest."""
    src = Path(source)
    if src.is_file():
        return _manifest(src)
    if not src.is_dir():
        raise ConfigError(f"{src}: no such folder or manifest")
    out = []
    for label, sub in ((0, "real"), (1, "fake")):
        root = src / sub
        if not root.is_dir():
            raise ConfigError(f"{src}: needs a {sub}/ sub-folder (or pass a manifest)")
        for p in sorted(root.rglob("*")):
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
                rel = p.relative_to(root).parts
                group = f"{sub}/{rel[0]}" if len(rel) > 1 else sub
                out.append((str(p), label, group))
    if not any(lab == 0 for _, lab, _ in out) or not any(lab == 1 for _, lab, _ in out):
        raise ConfigError(f"{src}: needs at least one file under real/ and one under fake/")
    return out


def _manifest(path: Path) -> list[tuple[str, int, str]]:
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}:{i}: not JSON ({e.msg})") from None
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise ConfigError(f"{path}: a manifest is .jsonl or .csv")
    out = []
    for i, r in enumerate(rows, 1):
        lab = _LABELS.get(str(r.get("label", "")).strip().lower())
        if lab is None or not r.get("path"):
            raise ConfigError(f"{path}: row {i} needs a path and a label (0/1, real/fake)")
        p = Path(r["path"])
        p = p if p.is_absolute() else path.parent / p
        out.append((str(p), lab, str(r.get("group") or ("real" if lab == 0 else "fake"))))
    return out


def rate(k: int, n: int) -> dict[str, Any]:
    """k of n as a rate with its exact (Clopper-Pearson) 95% interval."""
    return {"value": round(k / n, 4) if n else None, "k": k, "n": n,
            "ci95": clopper_pearson(k, n) if n else None}


def _curve_metrics(labels: np.ndarray, scores: np.ndarray, n_boot: int) -> dict[str, Any]:
    ok = np.isfinite(scores)
    labels, scores = labels[ok], scores[ok]
    if len(set(labels.tolist())) < 2:
        return {"auroc": None, "ap": None}
    out: dict[str, Any] = {"auroc": round(auroc(labels, scores), 4),
                           "ap": round(average_precision(labels, scores), 4)}
    if n_boot:
        out["auroc_ci95"] = [round(v, 4) for v in bootstrap_ci(labels, scores, auroc, n=n_boot)]
        out["ap_ci95"] = [round(v, 4) for v in bootstrap_ci(labels, scores, average_precision,
                                                             n=n_boot)]
    return out


def evaluate(records: list[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    """Metrics per group from scan records that carry ``label`` and ``group``."""
    members = sorted({m for r in records for m, d in (r.get("detectors") or {}).items()
                      if d.get("score") is not None and math.isfinite(float(d["score"]))})
    reals = [r for r in records if r["label"] == 0]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["group"]].append(r)

    def block(rs: list[dict[str, Any]], key: str | None) -> dict[str, Any]:
        """One scorer's metrics over ``rs`` (the stack when ``key`` is None)."""
        def score(r: dict[str, Any]) -> float:
            if key is None:
                s = r.get("score")
            else:
                s = (r.get("detectors") or {}).get(key, {}).get("score")
            return math.nan if s is None else float(s)

        def flagged(r: dict[str, Any]) -> bool:
            if key is None:
                return r.get("verdict") == "synthetic"
            d = (r.get("detectors") or {}).get(key)
            return bool(d) and d.get("score") is not None and d.get("threshold") is not None \
                and float(d["score"]) > float(d["threshold"])

        if key is not None:  # a member is judged on the files it scored (its modality, a face)
            rs = [r for r in rs if math.isfinite(score(r))]
        labels = np.array([r["label"] for r in rs])
        scores = np.array([score(r) for r in rs])
        fakes = [r for r in rs if r["label"] == 1 and r.get("verdict") != "error"]
        real = [r for r in rs if r["label"] == 0 and r.get("verdict") != "error"]
        out = _curve_metrics(labels, scores, n_boot)
        out["tpr_at_shipped"] = rate(sum(map(flagged, fakes)), len(fakes))
        out["fpr_at_shipped"] = rate(sum(map(flagged, real)), len(real))
        return out

    result: dict[str, Any] = {"groups": {}, "members": members}
    for g, rs in sorted(groups.items()):
        label = rs[0]["label"]
        pool = rs + reals if label == 1 else rs  # a fake group against every real
        entry: dict[str, Any] = {"label": "fake" if label == 1 else "real", "n": len(rs),
                                 "errors": sum(r.get("verdict") == "error" for r in rs),
                                 "verdicts": _count(r.get("verdict") for r in rs)}
        if label == 1:
            entry["stack"] = block(pool, None)
            entry["members"] = {m: block(pool, m) for m in members}
        else:
            entry["fpr_at_shipped"] = block(pool, None)["fpr_at_shipped"]
            entry["member_fpr_at_shipped"] = {m: block(pool, m)["fpr_at_shipped"] for m in members}
        result["groups"][g] = entry
    everything = records
    result["all"] = {"stack": block(everything, None),
                     "members": {m: block(everything, m) for m in members},
                     "n_real": len(reals), "n_fake": len(records) - len(reals),
                     "errors": sum(r.get("verdict") == "error" for r in records)}
    return result


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return dict(sorted(out.items()))


def markdown(res: dict[str, Any], source: str) -> str:
    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    def show(r: dict[str, Any]) -> str:
        if not r["n"]:
            return "–"
        lo, hi = r["ci95"]
        return f"{r['value']:.3f} ({r['k']}/{r['n']}; {lo:.3f}–{hi:.3f})"

    a = res["all"]
    lines = [f"# The shipped stack on `{source}`", "",
             f"{a['n_real']} real and {a['n_fake']} fake files, {a['errors']} errors. "
             "TPR/FPR at the shipped threshold with exact 95% intervals; AUROC with a bootstrap "
             "95% interval.", "",
             "| group | n | AUROC (stack) | AP | TPR at shipped | realised FPR |",
             "|---|---|---|---|---|---|"]
    st = a["stack"]
    lines.append(f"| all | {a['n_real'] + a['n_fake']} | {fmt(st['auroc'])} "
                 f"{_ci(st.get('auroc_ci95'))} | {fmt(st['ap'])} | {show(st['tpr_at_shipped'])} "
                 f"| {show(st['fpr_at_shipped'])} |")
    for g, e in res["groups"].items():
        if e["label"] == "fake":
            s = e["stack"]
            lines.append(f"| {g} | {e['n']} | {fmt(s['auroc'])} {_ci(s.get('auroc_ci95'))} | "
                         f"{fmt(s['ap'])} | {show(s['tpr_at_shipped'])} | |")
        else:
            lines.append(f"| {g} | {e['n']} | | | | {show(e['fpr_at_shipped'])} |")
    if res["members"]:
        lines += ["", "## Members (all files)", "", "| member | AUROC | AP | TPR at its threshold "
                  "| FPR at its threshold |", "|---|---|---|---|---|"]
        for m, b in a["members"].items():
            lines.append(f"| {m} | {fmt(b['auroc'])} | {fmt(b['ap'])} | "
                         f"{show(b['tpr_at_shipped'])} | {show(b['fpr_at_shipped'])} |")
    return "\n".join(lines) + "\n"


def _ci(ci: list[float] | None) -> str:
    return f"({ci[0]:.3f}–{ci[1]:.3f})" if ci else ""


def figure(records: list[dict[str, Any]], res: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    reals = [r for r in records if r["label"] == 0 and r.get("score") is not None]
    for g, e in res["groups"].items():
        if e["label"] != "fake":
            continue
        rs = reals + [r for r in records if r["group"] == g and r.get("score") is not None]
        labels = np.array([r["label"] for r in rs])
        scores = np.array([float(r["score"]) for r in rs])
        if len(set(labels.tolist())) < 2:
            continue
        fpr, tpr, _ = roc(labels, scores)
        ax.plot(fpr, tpr, label=f"{g} (AUROC {e['stack']['auroc']:.2f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("false-positive rate (real files flagged)")
    ax.set_ylabel("true-positive rate")
    ax.set_title("the shipped stack, per fake group")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a folder with real/ and fake/, or a .jsonl/.csv manifest")
    ap.add_argument("--out", default=None, help="results folder (default: "
                    "benchmarks/results/wild/<source name>)")
    ap.add_argument("--detector", action="append", default=[], help="shipped detector name "
                    "(repeatable; default: the shipped defaults)")
    ap.add_argument("--model", action="append", default=[], help="a saved model folder")
    ap.add_argument("--target-fpr", type=float, default=None,
                    help="verdicts at this FPR (default: each model's shipped one)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: none)")
    ap.add_argument("--limit", type=int, default=None, help="at most N files per group")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    a = ap.parse_args(argv)
    started = time.time()

    from detect.app.collect import ScanOptions
    from detect.app.scan import scan
    from detect.core.models import load_detectors

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    files = labelled_files(a.source)
    if a.limit:
        per: dict[str, int] = defaultdict(int)
        kept = []
        for f in files:
            if per[f[2]] < a.limit:
                per[f[2]] += 1
                kept.append(f)
        files = kept
    dets = load_detectors(a.detector, a.model)
    options = ScanOptions(target_fpr=a.target_fpr, watermarks=False)
    records = []
    for (_, label, group), finding in zip(files, scan([f[0] for f in files], dets, options),
                                             strict=True):
        rec = finding.to_dict()
        rec.update(label=label, group=group)
        records.append(rec)
    res = evaluate(records, a.bootstrap)
    src_name = Path(a.source).stem if Path(a.source).is_file() else Path(a.source).name
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / "wild" / src_name
    data = {"schema": "unmask.bench.wild/1", "source": str(a.source),
            "detectors": [d.name for d in dets], "target_fpr": a.target_fpr, **res,
            "records": [{k: r.get(k) for k in ("path", "group", "label", "verdict", "score",
                                                "decided_by", "error")} for r in records]}
    write_results(out, data, markdown(res, str(a.source)), figure(records, res), started=started)
    print(markdown(res, str(a.source)))
    print(f"wild: results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
