"""C2PA Content Credentials: the signed provenance manifest a file may carry.

Unlike EXIF or XMP (``detect.evidence.metadata``), a C2PA manifest is signed and hash-bound to the
file's bytes, so an edit after signing is detectable and the signer is named by a certificate.
It is still evidence, not a verdict: a stripped manifest proves nothing, and a manifest signed
by a certificate that chains to no trusted root ("untrusted") says only what its signer claims.

The reading, hashing and signature checks are c2pa-python's (the CAI Rust SDK); this module
turns its manifest-store JSON into a stable summary and keeps the store itself under ``raw``.
No network: remote manifests are not fetched (their URL comes from the file) and OCSP is off.
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from detect.io.sniff import sniff

C2PA_SCHEMA = "unmask.c2pa/1"

# The JUMBF description box UUID of a C2PA manifest store ("c2pa" + 0011-0010-8000-00AA00389B71);
# looked for only after a read failed, to say whether the broken part is a manifest.
_STORE_UUID = b"c2pa\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71"

# Validation status codes (C2PA spec, "Standard status codes") that decide the status below.
UNTRUSTED_CODE = "signingCredential.untrusted"  # signature fine, chain ends at no trusted anchor
TRUSTED_CODE = "signingCredential.trusted"

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source type (last path segment) -> does it say the content was generated?
# True: made, wholly or in part, by a generative or purely algorithmic process.
# False: captured, scanned, or made or edited by a person (an algorithm at most retouched it).
# None: the term does not say (``composite``: "may or may not" include generative AI).
# Terms not listed here also give None.
SOURCE_TYPE_AI: dict[str, bool | None] = {
    "trainedAlgorithmicMedia": True,
    "compositeWithTrainedAlgorithmicMedia": True,
    "algorithmicMedia": True,  # purely algorithmic, no training data (e.g. procedural)
    "compositeSynthetic": True,
    "trainedAlgorithmicData": True,  # the C2PA namespace's term for non-media data
    "digitalCapture": False,
    "computationalCapture": False,
    "negativeFilm": False,
    "positiveFilm": False,
    "print": False,
    "minorHumanEdits": False,
    "humanEdits": False,
    "algorithmicallyEnhanced": False,  # minor correction of a capture, not generation
    "digitalCreation": False,
    "dataDrivenMedia": False,
    "screenCapture": False,
    "virtualRecording": False,
    "compositeCapture": False,
    "digitalArt": False,  # retired IPTC term, now digitalCreation
    "composite": None,
}

_SNIFFED_MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif",
                 "bmp": "image/bmp", "webp": "image/webp", "tiff": "image/tiff",
                 "mp4": "video/mp4", "mov": "video/quicktime", "avi": "video/avi",
                 "webm": "video/webm", "mkv": "video/x-matroska"}
_ACTIONS_LABEL = re.compile(r"^c2pa\.actions(\.v2)?(__\d+)?$")


def _report(status: str, fmt: str | None, **extra: Any) -> dict[str, Any]:
    """Every key of the schema, always: absent parts are None or empty, never missing."""
    out: dict[str, Any] = {
        "schema": C2PA_SCHEMA, "present": False, "status": status, "error": None,
        "format": fmt, "validation_state": None,
        "validation_codes": {"success": [], "informational": [], "failure": []},
        "validation_failures": [], "active_manifest": None, "claim_generator": None,
        "claim_generator_info": [], "title": None, "signature": None, "actions": [],
        "digital_source_type": [], "ai_generated": None, "ingredients": [], "manifests": 0,
        "remote_url": None, "raw": None}
    out.update(extra)
    return out


@lru_cache(maxsize=8)
def _context(trust_anchors: str | None) -> Any:
    """One c2pa Context per trust configuration, reused across files (building one is not free)."""
    import c2pa

    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return c2pa.Context.from_dict(settings)


@lru_cache(maxsize=1)
def _supported() -> frozenset[str]:
    import c2pa

    return frozenset(c2pa.Reader.get_supported_mime_types())


def _asset_format(head: bytes, path: Path | None, fmt: str | None) -> str | None:
    """The format handed to c2pa: the caller's, else the magic bytes', else the extension's.

    None lets c2pa detect it from the bytes (HEIC, AVIF, PDF, SVG... that ``sniff`` leaves out).
    """
    if fmt:
        return fmt.strip().lower().lstrip(".")
    kind = sniff(head)
    if kind and kind[1] in _SNIFFED_MIME:
        return _SNIFFED_MIME[kind[1]]
    if path is not None:
        if path.suffix.lower() == ".c2pa":
            return "application/c2pa"
        return mimetypes.guess_type(path.name)[0]
    return None


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def _codes(entries: Any) -> list[str]:
    return _unique(e["code"] for e in entries or [] if isinstance(e, dict) and e.get("code"))


def _status(state: str | None, failures: list[str], success: list[str]) -> str:
    """c2pa's validation_state in unmask's words, checked against the codes it reports.

    c2pa says "Trusted" (well-formed, signature and hashes fine, signer chains to a trust
    anchor), "Valid" (all that but no trusted chain: ``signingCredential.untrusted``) or
    "Invalid" (some other failure code, e.g. ``assertion.dataHash.mismatch``).
    """
    if state == "Invalid" or any(code != UNTRUSTED_CODE for code in failures):
        return "invalid"
    if state == "Trusted" or (state is None and TRUSTED_CODE in success):
        return "valid"
    return "untrusted"


def _agent(value: Any) -> str | None:
    """softwareAgent: a string in actions v1, a ClaimGeneratorInfo map in actions v2."""
    if isinstance(value, dict):
        parts = [str(value[k]) for k in ("name", "version") if value.get(k)]
        return " ".join(parts) or None
    return str(value) if value else None


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for assertion in manifest.get("assertions") or []:
        if not _ACTIONS_LABEL.match(str(assertion.get("label", ""))):
            continue
        for act in (assertion.get("data") or {}).get("actions") or []:
            if isinstance(act, dict):
                out.append({"action": act.get("action"),
                            "digitalSourceType": act.get("digitalSourceType"),
                            "softwareAgent": _agent(act.get("softwareAgent")),
                            "when": act.get("when")})
    return out


def _source_types(store: dict[str, Any], active: str | None) -> list[dict[str, Any]]:
    """Every digitalSourceType in the store's actions, the active manifest's first.

    Earlier manifests (of ingredients) count too: editing a generated image does not make it
    a photograph, and the edit's own manifest often names no source type at all.
    """
    manifests = store.get("manifests") or {}
    order = ([active] if active in manifests else []) + [k for k in manifests if k != active]
    seen: dict[str, dict[str, Any]] = {}
    for label in order:
        for act in _actions(manifests[label]):
            uri = act["digitalSourceType"]
            if not uri or uri in seen:
                continue
            name = str(uri).rstrip("/").rsplit("/", 1)[-1]
            seen[uri] = {"uri": uri, "name": name, "ai": SOURCE_TYPE_AI.get(name),
                         "manifest": label, "active": label == active}
    return list(seen.values())


def _ai_generated(types: list[dict[str, Any]]) -> bool | None:
    """True if any term says generated; False if every term says not; else None (unknown)."""
    flags = [t["ai"] for t in types]
    if True in flags:
        return True
    if flags and all(f is False for f in flags):
        return False
    return None


def _summarise(store: dict[str, Any], fmt: str | None) -> dict[str, Any]:
    active = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(active) or {}
    results = (store.get("validation_results") or {}).get("activeManifest")
    if results is not None:
        codes = {k: _codes(results.get(k)) for k in ("success", "informational", "failure")}
    else:  # older stores: only the flat list of problems
        codes = {"success": [], "informational": [],
                 "failure": _codes(store.get("validation_status"))}
    ingredient_failures = _unique(
        code for delta in (store.get("validation_results") or {}).get("ingredientDeltas") or []
        for code in _codes(((delta or {}).get("validationDeltas") or {}).get("failure")))
    if ingredient_failures:
        codes["ingredient_failure"] = ingredient_failures
    state = store.get("validation_state")
    info = [{"name": g.get("name"), "version": g.get("version")}
            for g in manifest.get("claim_generator_info") or [] if isinstance(g, dict)]
    generator = manifest.get("claim_generator")  # claims v1; v2 keeps only claim_generator_info
    if not generator and info and info[0]["name"]:
        generator = "/".join(str(v) for v in (info[0]["name"], info[0]["version"]) if v)
    sig = manifest.get("signature_info") or {}
    alg = sig.get("alg")
    if alg:  # c2pa spells them "Es256"; the spec says ES256 ... Ed25519
        alg = "Ed25519" if str(alg).lower() == "ed25519" else str(alg).upper()
    types = _source_types(store, active)
    return _report(
        _status(state, codes["failure"], codes["success"]), manifest.get("format") or fmt,
        present=True, validation_state=state, validation_codes=codes,
        validation_failures=[e for e in store.get("validation_status") or []
                             if isinstance(e, dict)],
        active_manifest=active, claim_generator=generator, claim_generator_info=info,
        title=manifest.get("title"),
        signature={"issuer": sig.get("issuer"), "common_name": sig.get("common_name"),
                   "time": sig.get("time"), "alg": alg,
                   "cert_serial_number": sig.get("cert_serial_number")} if sig else None,
        actions=_actions(manifest), digital_source_type=types, ai_generated=_ai_generated(types),
        ingredients=[{"title": i.get("title"), "relationship": i.get("relationship"),
                      "format": i.get("format"), "manifest": i.get("active_manifest")}
                     for i in manifest.get("ingredients") or [] if isinstance(i, dict)],
        manifests=len(store.get("manifests") or {}), raw=store)


def _has_store(source: Path | bytes) -> bool:
    data = source if isinstance(source, bytes) else source.read_bytes()
    return _STORE_UUID in data


def read_c2pa(path_or_bytes: str | Path | bytes, *, fmt: str | None = None,
              trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """The C2PA manifest store of a file (a path or its bytes), summarised, never raising on
    what a scan meets: no manifest, a format c2pa cannot carry, corrupt or truncated data.

    ``status`` is "no manifest", "unsupported format", "remote manifest" (only a URL to one;
    not fetched), "error" (c2pa could not read the file; ``error`` says why, ``present`` says
    whether a manifest store is in it), or the verdict on a manifest: "valid" (signer chains
    to a trust anchor), "untrusted" (intact and correctly signed, but the certificate chains
    to no trusted root: the default, as no anchors ship with c2pa) or "invalid" (a failure
    code such as ``assertion.dataHash.mismatch``: the file changed after signing, or the
    manifest is broken). ``fmt`` is a MIME type or extension; by default the magic bytes
    decide. ``trust_anchors``: PEM root certificates (text or a file) to trust.

    A missing file raises OSError, as for any reader; a missing c2pa-python gives "error".
    """
    path = None if isinstance(path_or_bytes, bytes | bytearray | memoryview) \
        else Path(path_or_bytes)
    data = None if path is not None else bytes(path_or_bytes)
    if path is not None:
        with path.open("rb") as fh:
            head = fh.read(8192)
    else:
        head = data[:8192]
    asset_fmt = _asset_format(head, path, fmt)
    try:
        import c2pa
    except ImportError as e:
        return _report("error", asset_fmt, error=f"c2pa-python is not installed ({e})")
    if asset_fmt and asset_fmt not in _supported():
        return _report("unsupported format", asset_fmt)
    anchors = trust_anchors
    if isinstance(anchors, Path) or (isinstance(anchors, str) and "-----BEGIN" not in anchors):
        anchors = Path(anchors).read_text()
    try:
        with (path.open("rb") if path is not None else io.BytesIO(data)) as stream, \
                c2pa.Reader(asset_fmt, stream, context=_context(anchors or None)) as reader:
            text = reader.json()
    except c2pa.C2paError.ManifestNotFound:
        return _report("no manifest", asset_fmt)
    except c2pa.C2paError.NotSupported:
        return _report("unsupported format", asset_fmt)
    except c2pa.C2paError as e:
        message = str(e) or type(e).__name__
        # c2pa 0.38 raises the base class with "Remote: ... url <url>" for a remote-only store
        if isinstance(e, c2pa.C2paError.RemoteManifest) or message.startswith("Remote"):
            url = re.search(r"(https?://\S+)", message)
            return _report("remote manifest", asset_fmt, present=True,
                          remote_url=url.group(1) if url else None, error=message)
        return _report("error", asset_fmt, error=message,
                      present=_has_store(path if path is not None else data))
    return _summarise(json.loads(text), asset_fmt)
