"""Hostile and broken inputs: a folder of malformed files gives exactly one error record each
(and the good files beside them are scanned), and the loaders survive a fixed fuzzing budget
(hypothesis, derandomised): every input is either loaded or refused with InputError."""

from __future__ import annotations

import io
import json
import zlib

import hypothesis  # the [dev] extra, installed by setup.sh: missing is a failure, never a skip
import numpy as np
import pytest
from PIL import Image

from detect.core.errors import InputError
from detect.io.media import Limits, load_bytes


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_bomb(side: int) -> bytes:
    """A valid PNG header declaring side x side pixels, with a few bytes of data."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(
        b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def samples():
    from detect.io.video_encode import encode_video

    rng = np.random.default_rng(0)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    frames = [np.roll(img, k, axis=1) for k in range(8)]
    return {"png": _png(img), "jpeg": _jpeg(img), "avi": encode_video(frames, "mjpeg", 8.0),
            "text": ("A plain sentence about the weather, written by a person. " * 4).encode()}


def test_malformed_folder_one_error_record_each(samples, trained_models, tmp_path, capsys):
    from detect.cli import main

    good = {"ok.png": samples["png"], "ok.jpg": samples["jpeg"]}
    bad = {
        "truncated.jpg": samples["jpeg"][: len(samples["jpeg"]) // 3],
        "truncated.png": samples["png"][: len(samples["png"]) // 2],
        "empty.png": b"",
        "png-named.jpg": samples["png"][:40],  # a PNG under a JPEG name, cut short
        "bomb.png": _png_bomb(30_000),
        "bad-utf8.txt": "caf\u00e9 ".encode("latin-1") * 50,
        "huge.txt": b"word " * 450_000,  # 2.25M characters > the 2M default limit
        "corrupt.avi": samples["avi"][:64] + bytes(200) + samples["avi"][264:],
        "random.bin": np.random.default_rng(1).bytes(5000),
    }
    for name, data in {**good, **bad}.items():
        (tmp_path / name).write_bytes(data)
    main(["-q", "scan", str(tmp_path), "-m", str(trained_models["spectrum-test"]),
          "--max-pixels", "10000000", "--no-watermarks", "--fail-on", "never"])
    recs = {r["path"].rsplit("/", 1)[-1]: r
            for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(recs) == set(good) | set(bad)  # exactly one record per input
    for name in good:
        assert recs[name]["error"] is None, recs[name]
    for name in bad:
        r = recs[name]
        assert r["verdict"] == "error" and r["error"].startswith(str(tmp_path / name)), r
    assert "decompression bomb" in recs["bomb.png"]["error"]
    assert "bad UTF-8 at byte 3" in recs["bad-utf8.txt"]["error"]
    assert "empty file" in recs["empty.png"]["error"]
    assert "text too long" in recs["huge.txt"]["error"]
    assert "video" in recs["corrupt.avi"]["error"]


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Flip, cut or insert bytes at positions scaled into the file."""
    b = bytearray(data)
    for kind, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = val
        elif kind == 1:
            del b[i:]
        else:
            b[i:i] = bytes([val]) * (1 + val % 16)
    return bytes(b)


@pytest.mark.parametrize("kind", ["png", "jpeg", "text", "avi"])
def test_fuzz_loaders(samples, kind):
    st = hypothesis.strategies
    from detect.io.video import decode_item

    limits = Limits(max_pixels=4_000_000, max_frames=10_000)
    ops = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.integers(0, 255)),
                   min_size=1, max_size=6)

    @hypothesis.settings(max_examples=120 if kind != "avi" else 60, deadline=None,
                         derandomize=True, database=None)
    @hypothesis.given(ops)
    def run(o):
        data = _mutate(samples[kind], o)
        try:
            item = load_bytes(data, f"fuzz.{kind}", limits)
            if item.modality == "video":
                decode_item(item, limits)
        except InputError as e:
            assert str(e).startswith(f"fuzz.{kind}: ")

    run()


def test_fuzz_random_bytes():
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.binary(min_size=0, max_size=2048))
    def run(data):
        try:
            load_bytes(data, "fuzz.bin")
        except InputError as e:
            assert str(e).startswith("fuzz.bin: ")

    run()


def test_no_pickle_where_user_files_or_models_reach():
    """Static check of the shipped code: no pickle/joblib/dill import, every torch.load with
    weights_only=True, every np.load with allow_pickle=False. (facenet-pytorch loads its own
    packaged MTCNN weights; no user file reaches it.)"""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    bad = []
    for pkg in ("detect", "generators", "benchmarks"):
        for f in (root / pkg).rglob("*.py"):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    if any(n.split(".")[0] in ("pickle", "joblib", "dill", "cloudpickle")
                           for n in names):
                        bad.append(f"{f}:{node.lineno} imports pickle-like module")
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                    owner = getattr(node.func.value, "id", "")
                    if node.func.attr == "load" and owner == "torch" and \
                            kw.get("weights_only") is not True:
                        bad.append(f"{f}:{node.lineno} torch.load without weights_only=True")
                    if node.func.attr == "load" and owner == "np" and \
                            kw.get("allow_pickle") is not False:
                        bad.append(f"{f}:{node.lineno} np.load without allow_pickle=False")
    assert not bad, bad
