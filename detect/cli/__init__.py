"""The ``unmask`` command line.

Results go to stdout (JSON Lines, JSON or Markdown), progress and logs to stderr. Each error is
one clean line (``--debug`` for a traceback). Sub-commands that need generators or benchmarks
import them inside, so ``unmask scan`` never loads what it does not use.

One module per command group, each registering its sub-parsers and handlers: ``listing``
(list), ``train`` (generate, train-generator, train, bench), ``scan`` (scan, inspect, serve),
``watermark`` (embed, verify, catalog, keygen) and ``quickstart``; ``_common`` holds what they
share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from detect import __version__
from detect.cli import listing, quickstart, scan, train, watermark
from detect.cli.quickstart import DEFAULT_RECIPE
from detect.core.errors import UnmaskError

__all__ = ["DEFAULT_RECIPE", "build_parser", "main"]

# in the order `unmask --help` lists the commands
REGISTER: tuple[Callable[[Any], None], ...] = (
    listing.register, train.register, scan.register, watermark.register, scan.register_serve,
    quickstart.register)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unmask", description="Detect generated media; verify "
                                "watermarks and provenance. Results on stdout, logs on stderr.")
    p.add_argument("--version", action="version", version=f"unmask {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTER:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # also silences bars deep inside training loops
    try:
        return a.func(a)
    except UnmaskError as e:
        if a.debug:
            raise
        print(f"unmask: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unmask: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
