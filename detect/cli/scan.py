"""``unmask scan``, ``inspect`` and ``serve``: the detectors over files, one file in full, or
an HTTP API. Everything heavy is imported inside the handlers, so building the parser and
``unmask scan`` load only what the scan uses."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from detect.cli._common import _limits, _log, _sampling, _video_args, _watermark_fpr_args
from detect.core.errors import ConfigError


def _load_for_scan(a: argparse.Namespace) -> list[Any]:
    """The detectors scan / inspect run: named, saved, or shipped; zero-shot text detectors
    re-pointed at ``--scorer`` (and re-calibrated) when one is given."""
    from detect.core.models import load_detectors

    dets = load_detectors(a.detector, a.model)
    if a.performer and not a.scorer:
        raise ConfigError("--performer goes with --scorer")
    if a.scorer:
        from detect.text.zeroshot import with_scorer

        dets = with_scorer(dets, a.scorer, a.performer, log=_log)
    return dets


def _options(a: argparse.Namespace, **kw: Any) -> Any:
    """The one ScanOptions scan, inspect and serve build from their arguments."""
    from detect.app.collect import ScanOptions
    from detect.evidence.watermark.checks import load_text_keys

    return ScanOptions(
        limits=_limits(a), target_fpr=a.target_fpr, sampling=_sampling(a),
        watermarks=not getattr(a, "no_watermarks", False),
        wm_target_fpr=getattr(a, "wm_target_fpr", None),
        text_keys=tuple(load_text_keys(getattr(a, "wm_key", []))),  # a bad key file fails now
        **kw)


def cmd_scan(a: argparse.Namespace) -> int:
    from detect.app.scan import exit_code, scan

    exit_code([], a.fail_on)  # a typo in --fail-on fails before any work
    options = _options(a, progress=not a.quiet, debug=a.debug,
                       include_hidden=a.include_hidden, timeout=a.timeout, workers=a.workers,
                       load_detectors_fn=functools.partial(_load_for_scan, a),
                       engine=a.engine, ray_address=a.ray_address)
    detectors = _load_for_scan(a)
    from detect.app.output import FindingWriter, recorded

    paths = list(a.paths) + _from_list(a.from_list)
    if not paths:
        raise ConfigError("nothing to scan: give files, folders, - or --from-list FILE")
    earlier: list[Any] = []
    if a.resume:
        if not a.output:
            raise ConfigError("--resume needs --out FILE (the records to resume from)")
        earlier = recorded(Path(a.output), a.format)
        _log(f"resuming: {len(earlier)} record(s) already in {a.output}")
    done = {(f.path, f.sha256) for f in earlier}
    findings = []
    skipped: list[Path] = []
    with FindingWriter(a.output, a.format) as out:
        for f in scan(paths, detectors, options, done=done, skipped=skipped):
            out.write(f)
            findings.append(f)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    _log(f"scanned {len(findings)} input(s): " +
         ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if skipped:
        _log(f"left out {len(skipped)} hidden entr{'y' if len(skipped) == 1 else 'ies'} "
             f"(e.g. {skipped[0]}); --include-hidden scans them")
    for f in findings:
        if f.error and not a.quiet:
            _log(f"error: {f.error}")
    code = exit_code(earlier + findings, a.fail_on)  # a resumed run answers for all records
    return 0 if a.exit_zero else code


def cmd_serve(a: argparse.Namespace) -> int:
    from detect.app.serve import serve

    detectors = _load_for_scan(a)
    _log(f"serving {len(detectors)} detector(s) on http://{a.host}:{a.port} (POST /scan)")
    serve(detectors, a.host, a.port, _options(a))
    return 0


def _from_list(path: str | None) -> list[str]:
    """Paths from ``--from-list`` (one per line; '-' reads them from standard input)."""
    if path is None:
        return []
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--from-list {path}: cannot read ({e})") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def cmd_inspect(a: argparse.Namespace) -> int:
    from detect.app.inspect import inspect_item
    from detect.io.media import load

    options = _options(a)
    detectors = _load_for_scan(a)
    item = load(a.file, options.limits)
    if item.modality == "video":
        from detect.io.video import decode_item

        item = decode_item(item, options.limits, options.sampling)
    report = inspect_item(item, detectors, options)
    if a.timeline:
        from detect.app.inspect import timeline_png

        if item.modality == "video":
            report["timeline"] = str(timeline_png(report, a.timeline))
        else:
            _log(f"no timeline for {item.modality} input")
    if a.heatmap:
        from detect.app.inspect import heatmap_png

        if item.modality == "image":
            report["heatmap"] = str(heatmap_png(item.content, report, a.heatmap))
        else:
            _log(f"no heat map for {item.modality} input")
    if a.html:
        from detect.app.report import html_report

        report["html"] = str(html_report(report, item, a.html))
    from detect.core.types import _finite

    text = json.dumps(_finite(report), indent=2, allow_nan=False)
    if a.output:
        Path(a.output).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def _scan_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("paths", nargs="*", help="files, folders, or - for stdin")
    s.add_argument("--from-list", metavar="FILE",
                   help="also scan the paths listed in FILE, one per line (- = stdin)")
    s.add_argument("--out", "--output", "-o", dest="output", metavar="FILE",
                   help="append records to FILE (one whole line per write) instead "
                   "of stdout")
    s.add_argument("--format", choices=["jsonl", "csv", "text"], default="jsonl",
                   help="record format (default jsonl)")
    s.add_argument("--resume", action="store_true",
                   help="skip inputs that already have a record in --out (same path "
                   "and sha256); a torn last line is dropped first")
    s.add_argument("--exit-zero", action="store_true",
                   help="exit 0 whatever was found (records still say it)")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="scan in N processes, each with its own models (default 1)")
    s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on an input after this long (an error record)")
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: the same scan on Ray actors (--workers of them)")
    s.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --engine ray: a cluster (ray://host:10001); default: a "
                   "local instance")
    s.add_argument("--fail-on", default="synthetic", metavar="WHAT",
                   help="what makes the exit code 1: comma-separated synthetic, "
                   "uncertain, watermarked; or never (default: synthetic)")
    s.add_argument("--no-watermarks", action="store_true",
                   help="skip the image watermark catalog check")
    s.add_argument("--max-bytes", type=int, default=256 * 2**20)
    s.add_argument("--max-pixels", type=int, default=64_000_000)
    s.add_argument("--include-hidden", action="store_true",
                   help="also scan hidden files and folders inside given folders")


def _inspect_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("file")
    s.add_argument("--output", "-o", help="also write the JSON report here")
    s.add_argument("--heatmap", metavar="PNG",
                   help="write the per-patch heat map of every detector as a PNG")
    s.add_argument("--timeline", metavar="PNG",
                   help="video: write the per-frame score timeline as a PNG")
    s.add_argument("--html", metavar="FILE",
                   help="write a self-contained HTML report (evidence pictures "
                   "embedded)")
    s.add_argument("--json", dest="output", metavar="FILE",
                   help="write the JSON report (schema-versioned) to FILE")


def _detector_args(s: argparse.ArgumentParser) -> None:
    """What scan and inspect share: the detectors, thresholds, text scorer and decoding."""
    s.add_argument("--detector", "-d", action="append", default=[],
                   help="shipped model by registry name (repeat); default: all shipped")
    s.add_argument("--model", "-m", action="append", default=[],
                   help="saved model folder (repeat)")
    s.add_argument("--target-fpr", type=float, default=None,
                   help="re-derive thresholds for this FPR from the saved calibration scores")
    s.add_argument("--scorer", metavar="PATH_OR_ID",
                   help="score text with this causal LM (folder or hub id) instead of the "
                   "shipped one; zero-shot thresholds are re-derived on shipped human texts")
    s.add_argument("--performer", metavar="PATH_OR_ID",
                   help="with --scorer: the second LM for binoculars (same tokenizer)")
    s.add_argument("--text-errors", choices=["strict", "replace"], default="strict",
                   help="invalid UTF-8: an error record (strict) or decode with U+FFFD "
                   "and record how many bytes were replaced (replace)")
    _video_args(s)
    _watermark_fpr_args(s)


def register(sub: Any) -> None:
    for name, helptext, own_args, func in (
            ("scan", "scan files and folders; one JSON Lines record per input", _scan_args,
             cmd_scan),
            ("inspect", "every signal for one file, as JSON", _inspect_args, cmd_inspect)):
        s = sub.add_parser(name, help=helptext)
        own_args(s)
        _detector_args(s)
        s.set_defaults(func=func)


def register_serve(sub: Any) -> None:
    s = sub.add_parser("serve", help="the scan as an HTTP API: POST /scan (file or JSON text)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-bytes", type=int, default=64 * 2**20,
                   help="largest upload accepted (default 64 MiB; larger: 413)")
    s.add_argument("--max-pixels", type=int, default=64_000_000)
    s.add_argument("--detector", "-d", action="append", default=[])
    s.add_argument("--model", "-m", action="append", default=[])
    s.add_argument("--target-fpr", type=float, default=None)
    s.add_argument("--no-watermarks", action="store_true")
    s.set_defaults(func=cmd_serve, scorer=None, performer=None, text_errors="strict",
                   max_duration=3600.0, max_frames=100_000, frames=16, frame_every=None)
