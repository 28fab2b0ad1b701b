"""``unmask serve``: the scan as a small HTTP API (FastAPI + uvicorn).

- ``POST /scan`` with a multipart ``file`` (image, video or text, sniffed like ``unmask scan``)
  or a JSON body ``{"text": "..."}`` returns the same Finding record a scan writes.
- ``GET /health`` says which detectors are loaded.

Bad input gets a 4xx with a message that names the problem: 413 for an upload over the size
limit (checked on the declared length first, then while reading, never buffering more than
the limit), 422 for a file that cannot be scanned (the Finding, with its error, is the body),
400 for a request without a file or text. Models load once at start; requests are scored one
at a time (a lock), so one server process never holds two decodes in memory at once.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
# runtime, and ``Request`` is imported inside create_app (fastapi loads only when serving).
import threading
from typing import Any

from detect import __version__
from detect.app.scan import ScanOptions, scan_path
from detect.core.types import Finding

CHUNK = 1 << 20


def create_app(detectors: list[Any], options: ScanOptions = ScanOptions()) -> Any:
    """The app scoring each request with ``detectors`` under ``options`` (limits, target FPR,
    frame sampling, watermarks); ``options.limits.max_bytes`` caps an upload."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="unmask", version=__version__)
    lock = threading.Lock()
    limits = options.limits

    def finding_response(f: Finding) -> JSONResponse:
        # nothing could be read from the input: the client sent something unusable
        status = 422 if f.verdict == "error" and f.sha256 is None else 200
        return JSONResponse(f.to_dict(), status_code=status)

    def scan_bytes(data: bytes, name: str) -> Finding:
        with lock:  # the whole load-decode-score of one request at a time
            return scan_path(name, detectors, options, data=data)

    def too_large(n: int | str) -> JSONResponse:
        return JSONResponse({"error": f"upload too large ({n} bytes > limit {limits.max_bytes})"},
                            status_code=413)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "detectors": [d.name for d in detectors], "max_bytes": limits.max_bytes}

    @app.post("/scan")
    async def scan(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        # a multipart envelope adds a few hundred bytes around the file itself
        if declared and declared.isdigit() and int(declared) > limits.max_bytes + 64 * 1024:
            return too_large(declared)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str):
                return JSONResponse({"error": 'JSON body must be {"text": "..."}'},
                                    status_code=400)
            data = text.encode("utf-8")
            if len(data) > limits.max_bytes:
                return too_large(len(data))
            return finding_response(scan_bytes(data, str(body.get("name") or "<text>")))
        if not ctype.startswith("multipart/form-data"):
            return JSONResponse({"error": "send a multipart form with a 'file' field, or JSON "
                                 '{"text": "..."}'}, status_code=400)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return JSONResponse({"error": "the form has no 'file' field with a file in it"},
                                status_code=400)
        buf = bytearray()
        while chunk := await upload.read(CHUNK):
            buf += chunk
            if len(buf) > limits.max_bytes:
                return too_large(f"more than {len(buf)}")
        name = upload.filename or "<upload>"
        return finding_response(scan_bytes(bytes(buf), name))

    return app


def serve(detectors: list[Any], host: str = "127.0.0.1", port: int = 8000,
          options: ScanOptions = ScanOptions()) -> None:
    import uvicorn

    uvicorn.run(create_app(detectors, options), host=host, port=port, log_level="info")
