"""Face forgeries and videos, end to end: corpus -> face detectors -> frame and video tables.

    python benchmarks/face_detection.py --work runs/faces --out benchmarks/results/face_detection
    python benchmarks/face_detection.py --work runs/faces --update-defaults   # ship face-meso4

1. Builds (or resumes) the corpus of ``datasets/recipes/faces.toml``: LFW faces, their
   self-blends (the training forgery), face swaps and GAN / VAE faces (test only), and clips
   filmed over the shipped photographs that contain a face, forged in a stretch of frames.
2. Trains and calibrates each face detector on the train / calib splits (faces), and its
   video rule on the calib clips.
3. Scores the test split as the field reports it:
   - face level: AUROC, AP, EER, TPR at 1% FPR per forgery kind (self-blend seen in training;
     swap, DCGAN and VAE never seen), and the realised FPR at the calibrated threshold;
   - frame level (clips): every sampled frame with a face against its frame label;
   - video level: each aggregation (mean, top-k, most suspicious stretch) against the clip
     label, plus the realised FPR of the video rule.
   Also a ROC plot and the timeline of one forged test clip.
4. ``--update-defaults`` copies the chosen model into ``detect/models`` and lists it under
   "face" in ``defaults.json`` (face detectors decide first for pictures with a face).
"""

from __future__ import annotations

import argparse
import json
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
from detect.core.resources import recipe_path  # noqa: E402

DETECTORS = ["face-meso4", "face-efficientnet", "face-xception"]
SHIP = "face-meso4"
AGGS = ["mean", "topk", "stretch"]


def log(msg: str) -> None:
    print(f"[face-bench] {msg}", file=sys.stderr, flush=True)


def kind_of(r: Any) -> str:
    return "real" if r.label == 0 else str(r.provenance.get("generator", "?")).removeprefix(
        "face-")


def table(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None
          ) -> dict[str, Any]:
    ok = np.isfinite(scores)
    labels, scores = labels[ok], scores[ok]
    out: dict[str, Any] = {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum())}
    if out["n_real"] and out["n_fake"]:
        out.update(auroc=round(M.auroc(labels, scores), 4),
                   ap=round(M.average_precision(labels, scores), 4),
                   eer=round(M.eer(labels, scores), 4),
                   tpr_at_1pct_fpr=round(M.tpr_at_fpr(labels, scores, 0.01), 4))
        lo, hi = M.bootstrap_ci(labels, scores, M.auroc, n=200)
        out["auroc_ci95"] = [round(lo, 4), round(hi, 4)]
    if threshold is not None:
        out.update({k: round(v, 4) for k, v in M.at_threshold(labels, scores, threshold).items()})
    return out


def train(name: str, corpus: Any, work: Path, retrain: bool) -> Any:
    from detect.core.detector import load_detector
    from detect.core.registry import detectors

    d = work / "models" / name
    if (d / "weights.safetensors").exists() and not retrain:
        log(f"{name}: re-using {d}")
        return load_detector(d), None
    t0 = time.time()
    det = detectors.create(name).fit(corpus)
    took = time.time() - t0
    det.save(d)
    log(f"{name}: trained and calibrated in {took:.0f} s")
    return load_detector(d), round(took, 1)


def evaluate(det: Any, corpus: Any) -> dict[str, Any]:
    test = corpus.split("test")
    faces = test.filter(lambda r: r.modality == "image")
    crops = np.stack([it.content for it in faces.iter_items()])
    t0 = time.time()
    scores = det.score_crops(crops)
    per_s = len(crops) / max(time.time() - t0, 1e-9)
    kinds = np.array([kind_of(r) for r in faces.records])
    labels = faces.labels
    thr = det.calibration_.threshold
    res: dict[str, Any] = {"faces": {"all": table(labels, scores, thr)},
                           "crops_per_s": round(per_s, 1)}
    for k in sorted(set(kinds) - {"real"}):
        m = (kinds == "real") | (kinds == k)
        res["faces"][k] = table(labels[m], scores[m], thr)

    clips = test.filter(lambda r: r.modality == "video")
    frame_l, frame_s, vids = [], [], []
    t0 = time.time()
    for r, item in zip(clips.records, clips.iter_items(), strict=True):
        a = det.analyse(item)
        fl = r.provenance["params"]["frame_labels"]
        for e in a["timeline"]:
            if e["score"] is not None:
                frame_l.append(fl[e["index"]])
                frame_s.append(e["score"])
        fs = np.array([np.nan if e["score"] is None else e["score"] for e in a["timeline"]])
        vids.append((r, fs, a))
    res["clips_per_s"] = round(len(vids) / max(time.time() - t0, 1e-9), 2)
    res["frames"] = table(np.array(frame_l), np.array(frame_s), thr)
    from detect.face.detector import aggregate

    vl = np.array([r.label for r, _, _ in vids])
    res["videos"] = {}
    for agg in AGGS:
        vs = np.array([aggregate(fs, agg, det.topk, det.window) for _, fs, _ in vids])
        res["videos"][agg] = table(vl, vs)
    vcal = getattr(det, "video_calibration_", None)
    if vcal is not None:
        vs = np.array([a["score"] for _, _, a in vids])
        res["videos"]["calibrated rule (" + det.aggregate + ")"] = table(vl, vs, vcal.threshold)
        res["video_calibration"] = {"n_real": vcal.n_real, "n_fake": vcal.n_fake,
                                    "faceless_left_out": det.video_calib_faceless_}
    res["videos_without_face"] = int(sum(1 for _, fs, _ in vids if not np.isfinite(fs).any()))
    res["_roc"] = (labels, scores)
    res["_forged_clip"] = next((item_r for item_r in vids if item_r[0].label == 1
                                and np.isfinite(item_r[1]).any()), None)
    return res


def markdown(results: dict[str, Any], corpus: Any, took: dict[str, Any]) -> str:
    c = corpus.header
    lines = [
        "# Face forgeries and videos", "",
        f"Corpus `{c['name']}` (recipe `datasets/recipes/faces.toml`, seed {c['seed']}), content "
        f"hash `{corpus.content_hash[:16]}`; counts {json.dumps(c['counts'])}. Faces: LFW "
        "(scikit-image) upscaled 4x, found by MTCNN, aligned, 32 px grey crops. Detectors train "
        "on real faces and self-blends only; swaps, DCGAN and VAE faces are test-only. Clips: a "
        "virtual camera over the shipped photographs with a face (never in the face corpus), "
        "MJPEG, 16 frames, half of them forged in a stretch.", "",
        f"Machine: {machine()}. Command: `python benchmarks/face_detection.py --work runs/faces "
        "--out benchmarks/results/face_detection`.", "",
        "## Face level (test split)", "",
        "| detector | forgery | real / fake | AUROC [95% CI] | AP | EER | TPR@1%FPR | "
        "realised FPR |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for kind, t in r["faces"].items():
            ci = t.get("auroc_ci95", ["-", "-"])
            lines.append(f"| {name} | {kind} | {t['n_real']} / {t['n_fake']} | "
                         f"{t.get('auroc', '-')} [{ci[0]}, {ci[1]}] | {t.get('ap', '-')} | "
                         f"{t.get('eer', '-')} | {t.get('tpr_at_1pct_fpr', '-')} | "
                         f"{t.get('fpr', '-')} |")
    lines += ["", "## Frame and video level (test clips)", "",
              "| detector | level | real / fake | AUROC | AP | EER | TPR@1%FPR | realised FPR |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows = [("frames", r["frames"])] + [(f"video: {k}", t) for k, t in r["videos"].items()]
        for lvl, t in rows:
            lines.append(f"| {name} | {lvl} | {t['n_real']} / {t['n_fake']} | "
                         f"{t.get('auroc', '-')} | {t.get('ap', '-')} | {t.get('eer', '-')} | "
                         f"{t.get('tpr_at_1pct_fpr', '-')} | {t.get('fpr', '-')} |")
    lines += ["", "## Cost", "", "| detector | train + calibrate (s) | face crops/s | clips/s "
              "(16 frames: decode, MTCNN, score) | test clips without a face |",
              "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {took.get(name) or 're-used'} | {r['crops_per_s']} | "
                     f"{r['clips_per_s']} | {r['videos_without_face']} |")
    lines += ["", "![ROC](results.png)", "", "![timeline of a forged test clip](timeline.png)", ""]
    return "\n".join(lines)


def plots(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, r in results.items():
        labels, scores = r["_roc"]
        fpr, tpr, _ = M.roc(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {r['faces']['all'].get('auroc')})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("Face level, all forgeries (test)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)  # the ROC
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/faces")
    ap.add_argument("--out", default=None, help="write results.json/.md and plots here")
    ap.add_argument("--recipe", default=str(recipe_path("faces")))
    ap.add_argument("--detectors", nargs="+", default=DETECTORS)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--update-defaults", action="store_true")
    a = ap.parse_args(argv)

    import torch

    from generators.recipe import build

    torch.set_num_threads(2)
    work = Path(a.work)
    t0 = time.time()
    corpus = build(a.recipe, work / "corpus")
    log(f"corpus ready in {time.time() - t0:.0f} s: {corpus.counts()}")
    results, took, models = {}, {}, {}
    for name in a.detectors:
        det, took[name] = train(name, corpus, work, a.retrain)
        models[name] = det
        results[name] = evaluate(det, corpus)
        log(f"{name}: faces {results[name]['faces']['all'].get('auroc')}, frames "
            f"{results[name]['frames'].get('auroc')}, videos "
            f"{ {k: v.get('auroc') for k, v in results[name]['videos'].items()} }")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        plots(results, out)
        first = results[a.detectors[0]]
        clip = first.get("_forged_clip")
        if clip is not None:
            from detect.app.inspect import inspect_item, timeline_png

            r = clip[0]
            item = next(iter(corpus.filter(lambda x: x.id == r.id).iter_items()))
            report = inspect_item(item, [models[a.detectors[0]]])
            report["path"] = f"test clip {r.id[:12]} (forged frames "\
                f"{r.provenance['params']['frame_labels']})"
            timeline_png(report, out / "timeline.png")
        clean = {n: {k: v for k, v in r.items() if not k.startswith("_")}
                 for n, r in results.items()}
        write_results(out, {"machine": machine(), "corpus": corpus.header["name"],
                            "content_hash": corpus.content_hash, "counts": corpus.counts(),
                            "train_seconds": took, "results": clean},
                      markdown(results, corpus, took))
        log(f"wrote {out}/results.md")
    if a.update_defaults:
        ship(work / "models" / SHIP, corpus)
    return 0


def save_holdout(corpus: Any, n: int = 24) -> Any:
    """Test-split crops the shipped model never saw (real and self-blended: the forgery it is
    meant for) and two test clips (one real, one forged), for tests/test_shipped.py."""
    import random

    from detect.app.release import Holdout

    test = corpus.split("test")
    real = [r for r in test.records if r.modality == "image" and r.label == 0]
    sbi = [r for r in test.records if r.modality == "image"
           and r.provenance.get("generator") == "face-sbi"]
    clips = [r for r in test.records if r.modality == "video"]
    rng = random.Random(0)
    picked = rng.sample(real, n) + rng.sample(sbi, n)
    picked += [next(r for r in clips if r.label == 0), next(r for r in clips if r.label == 1)]
    return Holdout("shipped-holdout-faces", corpus, picked,
                   filename=lambda r: f"{r.id[:16]}{Path(r.path).suffix}")


def ship(model_dir: Path, corpus: Any) -> None:
    """The face model as the "face" default, with its held-out sample (detect.app.release)."""
    from detect.app.release import release

    release({model_dir.name: model_dir},
            defaults={"face": [model_dir.name], "face_recipe": "datasets/recipes/faces.toml",
                      "face_corpus_hash": corpus.content_hash},
            holdout=save_holdout(corpus))


if __name__ == "__main__":
    sys.exit(main())
