"""Scanning: one Finding per input, whatever happens to it.

A bad file becomes an ``error`` record and the scan goes on; nothing is skipped silently. The
first applicable detector decides the verdict (at its calibrated false-positive rate, or one
re-derived from its saved calibration scores); every detector's result is in ``detectors``.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from detect.app.collect import ScanOptions, collect_evidence
from detect.core.errors import ConfigError, UnmaskError
from detect.core.types import Finding
from detect.io.media import iter_paths, load, load_bytes


def scan_item(item: Any, detectors: list[Any], options: ScanOptions = ScanOptions()) -> Finding:
    """One Finding: detector verdicts, watermark checks (the public image payload catalog;
    text only against the given key files) and provenance metadata (file tags, C2PA); the
    compact form of :func:`detect.app.collect.collect_evidence`."""
    return collect_evidence(item, detectors, options)


class _TimedOut(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TimedOut


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise ``_TimedOut`` in this thread after ``seconds`` (SIGALRM: Unix, main thread). The
    check runs between Python bytecodes, so a long C call ends before it fires."""
    if not seconds or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def scan_path(p: str | Path, detectors: list[Any], options: ScanOptions = ScanOptions(),
              data: bytes | None = None) -> Finding:
    """The Finding of one input ('-' = standard input; ``data``: bytes already received,
    e.g. an upload, labelled ``p``), whatever happens to it."""
    t0 = time.perf_counter()
    limits, timeout = options.limits, options.timeout
    try:
        with _deadline(timeout):
            if data is not None:
                item = load_bytes(data, str(p), limits)
            elif p == "-":
                item = load_bytes(sys.stdin.buffer.read(), "<stdin>", limits)
            else:
                item = load(p, limits)
            if item.modality == "video":
                from detect.io.video import decode_item

                item = decode_item(item, limits, options.sampling)
            finding = scan_item(item, detectors, options)
    except _TimedOut:
        finding = Finding(path=str(p), error=f"{p}: timed out after {timeout:g} s (--timeout)")
    except UnmaskError as e:
        finding = Finding(path=str(p), error=str(e))
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a batch
        if options.debug:
            raise
        finding = Finding(path=str(p), error=f"{p}: internal error {type(e).__name__}: {e}")
    finding.elapsed_ms = round((time.perf_counter() - t0) * 1000, 2)
    return finding


_WORKER: dict[str, Any] = {}


def _worker_init(options: ScanOptions) -> None:
    """Each worker process loads its own detectors once (from names and folders: nothing
    but paths and options crosses the process boundary on the way in)."""
    import torch

    torch.set_num_threads(1)  # N workers share the cores; more threads only contend
    _WORKER["detectors"] = options.load_detectors_fn()
    _WORKER["options"] = options


def _worker_scan(p: str) -> Finding:
    return scan_path(p, _WORKER["detectors"], _WORKER["options"])


def scan(paths: Iterable[str], detectors: list[Any], options: ScanOptions = ScanOptions(), *,
         done: set[tuple[str, str | None]] | None = None,
         skipped: list[Path] | None = None) -> Iterator[Finding]:
    """Yield exactly one Finding per input path ('-' reads standard input), in input order.

    ``done`` holds (path, sha256) of inputs an earlier run already recorded (sha256 None for
    its error records): those are skipped, so a resumed run adds exactly the missing records.

    Videos are decoded once, right after loading (``options.sampling`` picks the frames, the
    limits' resolution, frame and duration caps apply); a corrupt one becomes its error record.
    ``options.timeout`` bounds each input's seconds (an error record when exceeded).

    ``options.workers > 1`` scans in that many processes, each loading its detectors once
    through ``options.load_detectors_fn``; standard input is read in this process.
    ``engine="ray"`` runs the same scan on Ray actors (``workers`` of them) on a local instance
    or the cluster at ``ray_address`` (``ray://host:10001``); paths must be readable where the
    actors run.

    Hidden entries inside folders are left out unless ``options.include_hidden``; they are
    appended to ``skipped`` so the caller can report them (nothing is dropped without a word).
    """
    from tqdm.auto import tqdm

    expanded: list[str | Path] = []
    for p in paths:
        expanded.extend(["-"] if p == "-" else
                        iter_paths([p], include_hidden=options.include_hidden,
                                   skipped=skipped))
    if done:
        from detect.app.output import file_sha256

        expanded = [p for p in expanded if p == "-" or not (
            (str(p), None) in done or (str(p), file_sha256(p)) in done)]
    workers, engine = options.workers, options.engine
    bar = tqdm(total=len(expanded), desc="scan", unit="file", file=sys.stderr,
               disable=not options.progress)
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "local" and (workers <= 1 or len(expanded) < 2):
        for p in expanded:
            yield scan_path(p, detectors, options)
            bar.update(1)
        bar.close()
        return
    if options.load_detectors_fn is None:
        raise ConfigError("scan with workers > 1 needs load_detectors_fn")
    if engine == "ray":
        yield from _scan_ray(expanded, detectors, options, bar)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": a fresh interpreter per worker, never a fork of a process holding torch threads
    ctx = multiprocessing.get_context("spawn")
    window: collections.deque[tuple[str | Path, Any]] = collections.deque()
    todo = iter(expanded)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(options,)) as pool:
        while True:
            # a bounded window of submitted inputs keeps memory flat for any number of files
            while len(window) < 4 * workers:
                p = next(todo, None)
                if p is None:
                    break
                window.append((p, None if p == "-" else pool.submit(_worker_scan, str(p))))
            if not window:
                break
            p, job = window.popleft()
            if job is None:
                yield scan_path(p, detectors, options)
            else:
                try:
                    yield job.result()
                except Exception as e:  # noqa: BLE001 - a dead worker costs a record, not the run
                    yield Finding(path=str(p), error=f"{p}: worker failed "
                                  f"({type(e).__name__}: {e})")
            bar.update(1)
    bar.close()


def _scan_ray(expanded: list[str | Path], detectors: list[Any], options: ScanOptions,
              bar: Any) -> Iterator[Finding]:
    """The scan on Ray: one actor per worker loads the models once; inputs go out in order
    through an ActorPool, records come back as plain dicts (JSON-able, no user objects)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'ray[data]'") from None
    workers, address = options.workers, options.ray_address
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else max(1, workers),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)

    @ray.remote(num_cpus=1)
    class Scanner:
        def __init__(self, options: ScanOptions) -> None:
            import torch

            torch.set_num_threads(1)
            self.detectors, self.options = options.load_detectors_fn(), options

        def scan(self, p: str) -> dict[str, Any]:
            return scan_path(p, self.detectors, self.options).to_dict()

    try:
        actors = [Scanner.remote(options) for _ in range(max(1, workers))]
        pool = ActorPool(actors)
        remote = [p for p in expanded if p != "-"]
        results = pool.map(lambda a, p: a.scan.remote(str(p)), remote)
        for p in expanded:
            if p == "-":
                yield scan_path(p, detectors, options)
            else:
                try:
                    d = next(results)
                except Exception as e:  # noqa: BLE001 - a dead actor costs a record
                    d = Finding(path=str(p), error=f"{p}: ray worker failed "
                                f"({type(e).__name__}: {e})").to_dict()
                yield Finding.from_dict(d)
            bar.update(1)
    finally:
        bar.close()
        if started:
            ray.shutdown()


def watermarked(f: Finding) -> bool:
    return any(w.get("status") == "detected" for w in f.watermarks)


def exit_code(findings: list[Finding], fail_on: str = "synthetic") -> int:
    """0 clean, 1 at least one finding at or above ``fail_on``, 2 errors and no findings.

    ``fail_on`` is a comma-separated set of synthetic, uncertain (implies synthetic),
    watermarked, or ``never``."""
    parts = {p.strip() for p in fail_on.split(",") if p.strip()}
    unknown = parts - {"synthetic", "uncertain", "watermarked", "never"}
    if unknown:
        raise ConfigError(f"--fail-on: unknown value(s) {', '.join(sorted(unknown))} "
                          "(synthetic, uncertain, watermarked, never)")
    flagged = set()
    if "synthetic" in parts or "uncertain" in parts:
        flagged.add("synthetic")
    if "uncertain" in parts:
        flagged.add("uncertain")
    if "never" in parts:
        flagged, parts = set(), set()
    if any(f.verdict in flagged or ("watermarked" in parts and watermarked(f))
           for f in findings):
        return 1
    if any(f.verdict == "error" for f in findings):
        return 2
    return 0
