"""What the command modules share: logging to stderr, ``--set`` parsing, the limits, frame
sampling and watermark-FPR arguments."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from detect.core.errors import ConfigError


def _log(msg: str) -> None:
    print(f"unmask: {msg}", file=sys.stderr, flush=True)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise ConfigError(f"--set expects key=value, got {p!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _video_args(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("video")
    g.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames sampled per video, spread evenly (default 16); with "
                   "--frame-every, the cap")
    g.add_argument("--frame-every", type=int, default=None, metavar="N",
                   help="sample every Nth frame from the start instead (at most --frames)")
    g.add_argument("--max-duration", type=float, default=3600.0, metavar="SECONDS",
                   help="refuse longer videos (default 3600)")
    g.add_argument("--max-frames", type=int, default=100_000, metavar="N",
                   help="refuse videos declaring more frames (default 100000)")


def _sampling(a: argparse.Namespace) -> Any:
    from detect.io.video import FrameSampling

    if a.frame_every:
        return FrameSampling(mode="every", n=a.frames, every=a.frame_every)
    return FrameSampling(n=a.frames)


def _limits(a: argparse.Namespace) -> Any:
    from detect.io.media import Limits

    kw = {"max_bytes": a.max_bytes, "max_pixels": a.max_pixels} if hasattr(a, "max_bytes") \
        else {}
    return Limits(text_errors=a.text_errors, max_duration_s=a.max_duration,
                  max_frames=a.max_frames, **kw)


def _watermark_fpr_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--wm-target-fpr", type=float, default=None, metavar="FPR",
                   help="false-positive rate for watermark decisions, per file over all "
                   "payloads tried (default 1e-6)")
    s.add_argument("--wm-key", action="append", default=[], metavar="KEY.json",
                   help="text watermark key file to check text inputs against (repeat)")
