"""How invisible image watermarks survive common edits, and what a better decoder recovers.

Real photos (skimage, scikit-learn, opencv-doc; centre crops at --size) are watermarked with
each scheme and a random payload per photo, then attacked with the shared attack suite (JPEG
95..30 at 4:2:0 and 4:4:4, resize, crop, blur, noise, brightness, rotation). Per scheme,
decoder and attack: mean bit accuracy and the detection rate at --target-fpr (one payload
checked, so no correction). The same attacks on the *unmarked* photos give the false-positive
count, which must stay 0.

Decoders: ``hard`` (unmask's hard decoder, bit-identical to invisible-watermark's) and ``soft``
(unmask's soft-decision decoder, the default of scan, inspect and verify) for dwtDct /
dwtDctSvd; rivaGan's own ONNX decoder.

``sdxl``: SDXL's fixed 48-bit payload put in by diffusers' own ``StableDiffusionXLWatermarker``
and the pipeline's ``VaeImageProcessor.postprocess`` (float pixels, then 8 bits), checked
against the catalog's ``sdxl`` payload (read as float pixels, as the embedder saw them) with
both decoders, and with ``hard-8bit``: the hard decoder reading 8-bit pixels (the
``sdxl-8bit`` entry; what scan reported before the catalog read SDXL as float).

    python benchmarks/watermark_robustness.py --out benchmarks/results/watermark_robustness
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.results import write_results

ATTACKS: list[tuple[str, str, dict]] = [("none", "none", {})]
ATTACKS += [(f"jpeg{q}-{ss.replace(':', '')}", "jpeg", {"quality": q, "subsampling": ss})
            for ss in ("4:2:0", "4:4:4") for q in (95, 90, 80, 70, 50, 30)]
ATTACKS += [
    ("resize0.5", "resize", {"scale": 0.5}), ("resize0.75", "resize", {"scale": 0.75}),
    ("resize1.5", "resize", {"scale": 1.5}),
    ("crop0.9", "crop", {"fraction": 0.9}), ("crop0.75", "crop", {"fraction": 0.75}),
    ("blur0.5", "blur", {"sigma": 0.5}), ("blur1", "blur", {"sigma": 1.0}),
    ("noise2", "noise", {"sigma": 2.0}), ("noise5", "noise", {"sigma": 5.0}),
    ("noise10", "noise", {"sigma": 10.0}),
    ("bright0.8", "brightness", {"factor": 0.8}), ("bright1.2", "brightness", {"factor": 1.2}),
    ("rotate1", "rotate", {"degrees": 1.0}), ("rotate5", "rotate", {"degrees": 5.0}),
]
SCHEMES = {"dwtDct": 48, "dwtDctSvd": 48, "rivaGan": 32, "sdxl": 48}


def _diffusers_sdxl(rgb: np.ndarray) -> np.ndarray:
    """The mark exactly as a diffusers SDXL pipeline leaves it (watermarker, then postprocess)."""
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from diffusers.pipelines.stable_diffusion_xl.watermark import StableDiffusionXLWatermarker

    batch = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    out = StableDiffusionXLWatermarker().apply_watermark(batch)
    return np.array(VaeImageProcessor().postprocess(out, output_type="pil")[0])


def _photos(n: int | None, size: int) -> list[tuple[str, np.ndarray]]:
    import cv2

    from generators.sources import photos

    out = []
    for p in photos("photos")[:n]:
        h, w = p.pixels.shape[:2]
        s = min(h, w)
        c = p.pixels[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
        out.append((p.name, np.ascontiguousarray(cv2.resize(c, (size, size),
                                                            interpolation=interp))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/watermark_robustness")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=None, help="at most this many photos")
    ap.add_argument("--target-fpr", type=float, default=1e-6)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    ap.add_argument("--riva-images", type=int, default=10,
                    help="rivaGan's ONNX decoder takes ~1.5 s per 512px image on 2 cores: "
                    "sweep it on this many photos only")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from tqdm.auto import tqdm

    from detect.core.registry import attacks
    from detect.evidence.watermark.image import verify_image
    from detect.evidence.watermark.image_codec import embed
    from detect.evidence.watermark.image_payloads import CATALOG, Payload

    imgs = _photos(a.images, a.size)
    atk = {name: (attacks.create(kind, **kw) if kind != "none" else (lambda x: x))
           for name, kind, kw in ATTACKS}
    rows: dict[tuple[str, str, str], dict] = {}
    t0 = time.perf_counter()
    todo = [(i, s) for i in range(len(imgs)) for s in a.schemes
            if s != "rivaGan" or i < a.riva_images]
    bar = tqdm(total=len(todo), desc="watermark sweep", file=sys.stderr)
    for i, (name, img) in enumerate(imgs):
        for scheme in a.schemes:
            if (i, scheme) not in todo:
                continue
            if scheme == "sdxl":
                marked = _diffusers_sdxl(img)
                checks = [("hard-8bit", CATALOG["sdxl-8bit"], "hard"),
                          ("hard", CATALOG["sdxl"], "hard"), ("soft", CATALOG["sdxl"], "soft")]
            else:
                rng = np.random.default_rng([a.seed, i, len(scheme)])
                bits = tuple(int(b) for b in rng.integers(0, 2, SCHEMES[scheme]))
                pl = Payload("user", scheme, bits)
                marked = embed(img, bits, scheme)
                checks = ([("onnx", pl, "hard")] if scheme == "rivaGan" else
                          [("hard", pl, "hard"), ("soft", pl, "soft")])
            for aname in atk:
                for label, src in (("marked", marked), ("clean", img)):
                    x = atk[aname](src)
                    for dec, pl, decoder in checks:
                        r = verify_image(x, [pl], target_fpr=a.target_fpr, decoder=decoder,
                                         path=name)[0]
                        row = rows.setdefault((scheme, dec, aname), {
                            "scheme": scheme, "decoder": dec, "attack": aname, "n": 0,
                            "bit_acc_sum": 0.0, "detected": 0, "clean_n": 0,
                            "false_positives": 0, "clean_min_p": 1.0})
                        if label == "marked":
                            row["n"] += 1
                            row["bit_acc_sum"] += r.statistic["bit_accuracy"]
                            row["detected"] += int(r.detected)
                        else:
                            row["clean_n"] += 1
                            row["false_positives"] += int(r.detected)
                            if r.p_value is not None:
                                row["clean_min_p"] = min(row["clean_min_p"], r.p_value)
            bar.update()
    bar.close()
    table = []
    for row in rows.values():
        table.append({"scheme": row["scheme"], "decoder": row["decoder"],
                      "attack": row["attack"], "images": row["n"],
                      "bit_accuracy": round(row["bit_acc_sum"] / row["n"], 4),
                      "detection_rate": round(row["detected"] / row["n"], 4),
                      "false_positives": f"{row['false_positives']}/{row['clean_n']}",
                      "clean_min_p": float(f"{row['clean_min_p']:.3g}")})
    elapsed = time.perf_counter() - t0
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, numpy {np.__version__}")
    res = {"schema": "unmask.bench/1", "benchmark": "watermark_robustness", "machine": machine,
           "images": len(imgs), "size": a.size, "target_fpr": a.target_fpr, "seed": a.seed,
           "elapsed_s": round(elapsed, 1), "attacks": ATTACKS, "rows": table}
    md = _markdown(table, len(imgs), a, machine, elapsed)
    write_results(a.out, res, md, figure=lambda p: _plot(table, p, a.target_fpr))
    print(md)
    return 0


def _series(table: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in table:
        out.setdefault(f"{r['scheme']} / {r['decoder']}", {})[r["attack"]] = r
    return out


def _markdown(table: list[dict], n: int, a: argparse.Namespace, machine: str,
              elapsed: float) -> str:
    series = _series(table)
    names = list(series)
    order = [x[0] for x in ATTACKS]
    lines = ["# Image watermark robustness", "",
             f"{n} real photos ({min(n, a.riva_images)} for rivaGan, whose decoder is slow), "
             f"centre-cropped to {a.size}x{a.size}, each watermarked with "
             "a random payload (48 bits for dwtDct / dwtDctSvd, 32 for rivaGan), then "
             f"attacked. Cells: mean bit accuracy / detection rate at FPR {a.target_fpr:g}. "
             "`hard` = unmask's hard decoder (bit-identical to invisible-watermark's own); "
             "`soft` = unmask's soft-decision decoder on the same embedding (the default of "
             "scan, inspect and verify). `sdxl` = SDXL's fixed payload put in by diffusers' "
             "StableDiffusionXLWatermarker (float pixels) and read as float pixels; "
             "`sdxl / hard-8bit` = the same files read as 8-bit pixels (what scan reported "
             "before).", "",
             "| attack | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for att in order:
        cells = []
        for s in names:
            r = series[s].get(att)
            cells.append("" if r is None else f"{r['bit_accuracy']:.3f} / "
                         f"{r['detection_rate']:.2f}")
        lines.append(f"| {att} | " + " | ".join(cells) + " |")
    fps = sum(int(r["false_positives"].split("/")[0]) for r in table)
    tot = sum(int(r["false_positives"].split("/")[1]) for r in table)
    minp = min(r["clean_min_p"] for r in table)
    lines += ["", f"False positives on the unmarked photos under the same attacks: {fps} of "
              f"{tot} checks (smallest p-value seen on an unmarked photo: {minp:.3g}).", "",
              f"Machine: {machine}; {elapsed:.0f} s.", "",
              "Reproduce: `python benchmarks/watermark_robustness.py --out "
              "benchmarks/results/watermark_robustness`"]
    return "\n".join(lines)


def _plot(table: list[dict], path: Path, fpr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(table)
    order = [x[0] for x in ATTACKS]
    fig, axes = plt.subplots(2, 1, figsize=(14, 8), sharex=True)
    x = np.arange(len(order))
    width = 0.8 / max(1, len(series))
    for k, (name, rs) in enumerate(series.items()):
        acc = [rs[o]["bit_accuracy"] if o in rs else np.nan for o in order]
        det = [rs[o]["detection_rate"] if o in rs else np.nan for o in order]
        axes[0].bar(x + k * width, acc, width, label=name)
        axes[1].bar(x + k * width, det, width, label=name)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("mean bit accuracy")
    axes[1].set_ylabel(f"detected at FPR {fpr:g}")
    axes[0].set_ylim(0.3, 1.02)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xticks(x + 0.4 - width / 2, order, rotation=60, ha="right", fontsize=8)
    axes[0].legend(fontsize=8, ncol=5, loc="lower left")
    axes[0].set_title("Invisible watermarks under attack (unmask vs invisible-watermark "
                      "decoding)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
