"""Where scan records go and how a scan resumes: formats, --from-list, --out appends,
--resume after a kill (torn last line included), --exit-zero. Real models, real files."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from detect.cli import main


@pytest.fixture()
def inbox(tiny_corpus, tmp_path):
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    recs = tiny_corpus.split("test").records
    for i, r in enumerate([r for r in recs if r.label == 0][:3]):
        shutil.copy(tiny_corpus.root / r.path, root / f"real{i}.png")
    for i, r in enumerate([r for r in recs if r.label == 1][:3]):
        shutil.copy(tiny_corpus.root / r.path, root / "sub" / f"fake{i}.png")
    shutil.copy(root / "real0.png", root / "sub" / "copy-of-real0.png")  # same bytes, 2 paths
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return root


def _scan(capsys, *args):
    code = main(["-q", "scan", *map(str, args)])
    return code, capsys.readouterr().out


def _key(d):
    return (d["path"], d["sha256"], d["verdict"], d["score"], d["error"])


def test_formats(inbox, trained_models, capsys):
    m = trained_models["spectrum-test"]
    code, out = _scan(capsys, inbox, "-m", m, "--format", "csv", "--fail-on", "never",
                      "--no-watermarks")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8 and code == 2  # one broken file, nothing flagged (--fail-on never)
    assert {r["verdict"] for r in rows} <= {"real", "synthetic", "uncertain", "error"}
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["verdict"] == "error" and "broken.png" in broken["error"]
    code, out = _scan(capsys, inbox, "-m", m, "--format", "text", "--no-watermarks")
    lines = out.splitlines()
    assert len(lines) == 8 and any(x.startswith("error") and "broken.png" in x for x in lines)
    assert all("spectrum-test" in x for x in lines if not x.startswith("error"))


def test_from_list_file_and_stdin(inbox, trained_models, capsys, tmp_path, monkeypatch):
    m = trained_models["spectrum-test"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{inbox / 'real0.png'}\n\n{inbox / 'sub'}\n{inbox / 'gone.png'}\n")
    code, out = _scan(capsys, "--from-list", listing, "-m", m, "--no-watermarks")
    recs = [json.loads(x) for x in out.splitlines()]
    assert len(recs) == 1 + 4 + 1  # a file, a folder of four, a missing file
    missing = recs[-1]
    assert missing["verdict"] == "error" and "no such file" in missing["error"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{inbox / 'real1.png'}\n"))
    code, out = _scan(capsys, "--from-list", "-", "-m", m, "--no-watermarks")
    assert [json.loads(x)["path"] for x in out.splitlines()] == [str(inbox / "real1.png")]


def test_resume_after_a_kill_gives_the_uninterrupted_record_set(inbox, trained_models,
                                                                 capsys, tmp_path):
    m = trained_models["spectrum-test"]
    whole = tmp_path / "whole.jsonl"
    code_whole, out = _scan(capsys, inbox, "-m", m, "--out", whole, "--no-watermarks")
    assert out == ""  # records went to the file
    full = [json.loads(x) for x in whole.read_text().splitlines()]
    assert len(full) == 8

    # a run killed after three records, in the middle of writing the fourth
    cut = tmp_path / "cut.jsonl"
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    code, _ = _scan(capsys, inbox, "-m", m, "--out", cut, "--resume", "--no-watermarks")
    resumed = [json.loads(x) for x in cut.read_text().splitlines()]
    assert sorted(map(_key, resumed)) == sorted(map(_key, full))
    assert code == code_whole
    # resuming a finished scan adds nothing
    _scan(capsys, inbox, "-m", m, "--out", cut, "--resume", "--no-watermarks")
    assert len(cut.read_text().splitlines()) == 8

    # without --resume, --out appends (nothing is ever overwritten)
    _scan(capsys, inbox / "real0.png", "-m", m, "--out", cut, "--no-watermarks")
    assert len(cut.read_text().splitlines()) == 9


def test_resume_needs_an_output_and_exit_zero(inbox, trained_models, capsys):
    m = trained_models["spectrum-test"]
    assert main(["-q", "scan", str(inbox), "-m", str(m), "--resume"]) == 2
    assert "--resume needs --out FILE" in capsys.readouterr().err
    code, _ = _scan(capsys, inbox, "-m", m, "--fail-on", "uncertain", "--exit-zero",
                    "--no-watermarks")
    assert code == 0


@pytest.mark.slow
def test_workers_give_the_same_records_in_the_same_order(inbox, trained_models, capsys):
    m = trained_models["spectrum-test"]
    _, one = _scan(capsys, inbox, "-m", m, "--no-watermarks")
    _, two = _scan(capsys, inbox, "-m", m, "--no-watermarks", "--workers", "2")
    a = [json.loads(x) for x in one.splitlines()]
    b = [json.loads(x) for x in two.splitlines()]
    assert [_key(x) for x in a] == [_key(x) for x in b] and len(a) == 8


def test_timeout_gives_one_error_record_and_the_scan_goes_on(inbox, trained_models, capsys,
                                                             monkeypatch):
    import time

    import detect.app.scan

    m = trained_models["spectrum-test"]
    slow = inbox / "slow.png"
    shutil.copy(inbox / "real2.png", slow)
    real_load = detect.app.scan.load

    def load(path, *args, **kwargs):
        """Loading ``slow.png`` takes two minutes of Python-level waiting: far beyond the
        timeout on any machine, and interruptible by it (a long C call would end first)."""
        item = real_load(path, *args, **kwargs)
        if Path(path).name == "slow.png":
            end = time.monotonic() + 120
            while time.monotonic() < end:
                time.sleep(0.01)
        return item

    monkeypatch.setattr(detect.app.scan, "load", load)
    # lazy imports are paid for first, without a timeout, so that no input below comes near it
    _scan(capsys, inbox / "real0.png", "-m", m, "--no-watermarks")
    timeout = 2.0  # a small PNG takes milliseconds once warm: a wide margin for slow machines
    code, out = _scan(capsys, inbox / "real0.png", slow, inbox / "real1.png", "-m", m,
                      "--no-watermarks", "--timeout", timeout)
    recs = [json.loads(x) for x in out.splitlines()]
    assert len(recs) == 3
    assert recs[0]["verdict"] in ("real", "synthetic", "uncertain") and recs[0]["error"] is None
    assert recs[1]["verdict"] == "error" and "timed out after 2 s" in recs[1]["error"]
    assert recs[1]["path"] == str(slow)
    # the alarm cut the slow input short (not the two minutes), and not before its time
    assert 0.95 * timeout * 1000 <= recs[1]["elapsed_ms"] < 60_000, recs[1]["elapsed_ms"]
    # the input after it is scanned normally: the alarm was cleared
    assert recs[2]["verdict"] in ("real", "synthetic", "uncertain") and recs[2]["error"] is None


@pytest.mark.slow
def test_ray_engine_on_a_local_instance_gives_the_same_records(inbox, trained_models, capsys):
    import ray  # noqa: F401  (installed by setup.sh's [dev] extra: missing is a failure)

    m = trained_models["spectrum-test"]
    _, one = _scan(capsys, inbox, "-m", m, "--no-watermarks")
    code, out = _scan(capsys, inbox, "-m", m, "--no-watermarks", "--engine", "ray",
                      "--workers", "2")
    a = [json.loads(x) for x in one.splitlines()]
    b = [json.loads(x) for x in out.splitlines()]
    assert [_key(x) for x in a] == [_key(x) for x in b] and len(b) == 8


@pytest.mark.slow
def test_sigkill_mid_scan_then_resume(inbox, trained_models, tmp_path):
    """A real kill: the scan process gets SIGKILL in the middle of a scan, --resume finishes
    the job. The scan reads standard input ('-') between two folders and blocks there until
    stdin closes, so the kill lands after exactly the first folder's records, on any machine."""
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    src = sorted(p for p in inbox.rglob("*.png") if p.name != "broken.png")
    n = 40  # per folder
    for part in ("a", "b"):
        (tmp_path / part).mkdir()
        for i in range(n):  # distinct bytes: a re-encode with one pixel changed
            img = Image.open(src[i % len(src)]).convert("RGB")
            img.putpixel((0, 0), (i, ord(part), 7))
            img.save(tmp_path / part / f"{i:03d}.png")
    stdin_bytes = (inbox / "real0.png").read_bytes()
    m = str(trained_models["spectrum-test"])
    cmd = [sys.executable, "-m", "detect.cli", "-q", "scan", str(tmp_path / "a"), "-",
           str(tmp_path / "b"), "-m", m, "--no-watermarks", "--fail-on", "never", "--out"]
    whole = tmp_path / "whole.jsonl"
    r = subprocess.run([*cmd, str(whole)], input=stdin_bytes, capture_output=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "killed.jsonl"
    log = tmp_path / "killed.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*cmd, str(out)], stdin=subprocess.PIPE, stderr=err)
    try:
        deadline = time.monotonic() + 600  # generous: only a broken scan takes this long
        while not (out.exists() and out.read_bytes().count(b"\n") >= n):
            assert proc.poll() is None, ("scan ended before reading stdin", log.read_text())
            assert time.monotonic() < deadline, ("no records after 600 s", log.read_text())
            time.sleep(0.05)
        assert proc.poll() is None  # still waiting on stdin: nothing more can be written
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()  # a no-op after the SIGKILL above; never leave a scan behind on failure
        proc.wait()
        proc.stdin.close()
    lines = out.read_text().splitlines()
    assert len(lines) == n and all(json.loads(x)["path"].startswith(str(tmp_path / "a"))
                                   for x in lines)  # killed mid-run, after folder a
    r = subprocess.run([*cmd, str(out), "--resume"], input=stdin_bytes, capture_output=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    a = sorted(map(_key, (json.loads(x) for x in whole.read_text().splitlines())))
    b = sorted(map(_key, (json.loads(x) for x in out.read_text().splitlines())))
    assert a == b and len(b) == 2 * n + 1
