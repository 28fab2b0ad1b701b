"""``unmask serve`` over a real socket on loopback: uvicorn in a thread, plain HTTP requests."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import fastapi  # noqa: F401  (the [serve] extra, installed by setup.sh: missing is a failure)
import pytest
import uvicorn


@pytest.fixture(scope="module")
def server(trained_models, tiny_corpus):
    from detect.app.scan import ScanOptions
    from detect.app.serve import create_app
    from detect.core.models import load_detectors
    from detect.io.media import Limits

    dets = load_detectors(model_dirs=[trained_models["spectrum-test"]])
    app = create_app(dets, ScanOptions(limits=Limits(max_bytes=200_000), watermarks=False))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 120  # a generous bound: a loaded machine may start slowly
    while not srv.started:
        assert t.is_alive(), "uvicorn's thread ended before the server started"
        assert time.monotonic() < deadline, "the server did not start within 120 s"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def _post(url, body: bytes, ctype: str):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _multipart(name: str, data: bytes, field: str = "file"):
    b = "unmask-test-boundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def test_health(server):
    with urllib.request.urlopen(f"{server}/health", timeout=30) as r:
        h = json.loads(r.read())
    assert h["status"] == "ok" and h["detectors"] == ["spectrum-test"]


def test_upload_gives_the_scan_record(server, tiny_corpus, trained_models):
    from detect.app.scan import ScanOptions, scan_item
    from detect.core.models import load_detectors
    from detect.io.media import load

    r = tiny_corpus.split("test").records[0]
    data = (tiny_corpus.root / r.path).read_bytes()
    code, rec = _post(f"{server}/scan", *_multipart("photo.png", data))
    assert code == 200 and rec["schema"] == "unmask.finding/1"
    assert rec["path"] == "photo.png" and rec["sha256"] == r.id
    assert rec["verdict"] in ("real", "synthetic", "uncertain")
    # the same numbers as a scan of the file
    dets = load_detectors(model_dirs=[trained_models["spectrum-test"]])
    local = scan_item(load(tiny_corpus.root / r.path), dets, ScanOptions(watermarks=False))
    assert rec["score"] == pytest.approx(local.score) and rec["verdict"] == local.verdict


def test_bad_inputs_get_clear_4xx(server):
    code, rec = _post(f"{server}/scan", *_multipart("junk.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64))
    assert code == 422 and rec["verdict"] == "error" and rec["error"].startswith("junk.png: ")
    code, body = _post(f"{server}/scan", *_multipart("big.bin", b"x" * 300_000))
    assert code == 413 and "too large" in body["error"]
    code, body = _post(f"{server}/scan", *_multipart("a.png", b"abc", field="other"))
    assert code == 400 and "'file'" in body["error"]
    code, body = _post(f"{server}/scan", b"not json", "application/json")
    assert code == 400
    code, body = _post(f"{server}/scan", b"raw", "application/octet-stream")
    assert code == 400 and "multipart" in body["error"]


def test_text_body(server):
    code, rec = _post(f"{server}/scan", json.dumps({"text": "A short note."}).encode(),
                      "application/json")
    # no text detector is loaded in this server: a record that says so, not a failure
    assert code == 200 and rec["modality"] == "text" and "no loaded detector" in rec["error"]
