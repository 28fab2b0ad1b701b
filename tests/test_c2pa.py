"""C2PA manifests signed here, with a certificate chain made here, then read back.

c2pa refuses to sign with a certificate outside the C2PA profile, so the chain is a real one:
an ES256 root CA and an end-entity certificate with a digitalSignature key usage, an
emailProtection extended key usage and an authority key identifier. The root is nobody's
trust anchor, so c2pa reports the signer as untrusted unless a test hands the root in.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import c2pa  # a hard dependency (c2pa-python): missing is a failure, never a skip
import numpy as np
import pytest
from cryptography import x509  # the [dev] extra
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from detect.evidence.c2pa import SOURCE_TYPE_AI, read_c2pa

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
_NO_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unmask tests")])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(subject, subject_key, issuer, issuer_key, *, ca, eku=True, aki=True):
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                                      **_NO_USAGE), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()),
                        critical=False))
    if eku and not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                            critical=False)
    if aki and subject != issuer:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _signer_pems(**ee_options):
    """(chain PEM: end entity then root, end-entity key PEM, root PEM)."""
    root_key, ee_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root = _cert("unmask test root", root_key, "unmask test root", root_key, ca=True)
    ee = _cert("unmask test signer", ee_key, "unmask test root", root_key, ca=False,
               **ee_options)
    key = ee_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return _pem(ee) + _pem(root), key, _pem(root)


@pytest.fixture(scope="module")
def pki():
    return _signer_pems()


def _image(fmt, size=(48, 64)):
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _manifest(source_type="trainedAlgorithmicMedia", action="c2pa.created", ingredient=None):
    act = {"action": action, "softwareAgent": {"name": "unmask-gen", "version": "1.0"}}
    if ingredient:  # c2pa requires "opened" to name its ingredient by the label given to it
        act["parameters"] = {"ingredientIds": [ingredient]}
    if source_type:
        act["digitalSourceType"] = DST + source_type
    return {"claim_generator_info": [{"name": "unmask-tests", "version": "0.1"}],
            "title": "generated", "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [act]}}]}


def _sign(pki, data, mime, manifest=None, *, chain=None, key=None, ingredient=None):
    chain, key = chain or pki[0], key or pki[1]
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key,
                                                       None))
    out = io.BytesIO()
    with signer, c2pa.Builder(manifest or _manifest()) as builder:
        if ingredient is not None:
            builder.add_ingredient({"title": "parent.jpg", "relationship": "parentOf",
                                    "label": "parent"},
                                   "image/jpeg", io.BytesIO(ingredient))
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def signed(pki):
    return {"jpeg": _sign(pki, _image("JPEG"), "image/jpeg"),
            "png": _sign(pki, _image("PNG"), "image/png")}


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_signed_generated_image_is_read_back(tmp_path, signed, kind):
    path = tmp_path / f"gen.{kind}"
    path.write_bytes(signed[kind])
    got = read_c2pa(path)
    assert got["schema"] == "unmask.c2pa/1" and got["present"] is True
    # Signature and hashes check out, but the self-made root is not a trust anchor: c2pa says
    # validation_state "Valid" with the one failure signingCredential.untrusted.
    assert got["status"] == "untrusted" and got["validation_state"] == "Valid"
    assert got["validation_codes"]["failure"] == ["signingCredential.untrusted"]
    assert {"claimSignature.validated", "assertion.dataHash.match"} <= set(
        got["validation_codes"]["success"])
    assert got["format"] == f"image/{kind}" and got["title"] == "generated"
    assert got["claim_generator"] == "unmask-tests/0.1"
    assert got["claim_generator_info"] == [{"name": "unmask-tests", "version": "0.1"}]
    assert got["signature"]["alg"] == "ES256" and got["signature"]["issuer"] == "unmask tests"
    assert got["signature"]["common_name"] == "unmask test signer"
    assert got["actions"] == [{"action": "c2pa.created",
                               "digitalSourceType": DST + "trainedAlgorithmicMedia",
                               "softwareAgent": "unmask-gen 1.0", "when": None}]
    assert [(t["name"], t["ai"], t["active"]) for t in got["digital_source_type"]] == [
        ("trainedAlgorithmicMedia", True, True)]
    assert got["ai_generated"] is True
    assert got["manifests"] == 1 and got["ingredients"] == []
    # c2pa writes claims v2, where c2pa.actions becomes c2pa.actions.v2; raw keeps all of it
    labels = [a["label"] for a in got["raw"]["manifests"][got["active_manifest"]]["assertions"]]
    assert "c2pa.actions.v2" in labels
    assert json.loads(json.dumps(got)) == got
    assert read_c2pa(signed[kind]) == got  # bytes and path give the same answer


def test_root_given_as_trust_anchor_makes_it_valid(tmp_path, pki, signed):
    got = read_c2pa(signed["jpeg"], trust_anchors=pki[2].decode())
    assert got["status"] == "valid" and got["validation_state"] == "Trusted"
    assert "signingCredential.trusted" in got["validation_codes"]["success"]
    assert got["validation_codes"]["failure"] == []
    (tmp_path / "root.pem").write_bytes(pki[2])
    assert read_c2pa(signed["jpeg"], trust_anchors=tmp_path / "root.pem")["status"] == "valid"
    assert read_c2pa(signed["jpeg"])["status"] == "untrusted"  # other anchors, other context


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_pixels_changed_after_signing_is_invalid(signed, kind):
    data = bytearray(signed[kind])
    if kind == "jpeg":
        data[-200] ^= 0xFF  # inside the entropy-coded scan, just before EOI
    else:
        data[data.find(b"IDAT") + 20] ^= 0xFF
    got = read_c2pa(bytes(data))
    assert got["present"] is True and got["status"] == "invalid"
    assert got["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in got["validation_codes"]["failure"]
    assert "assertion.dataHash.mismatch" in {f["code"] for f in got["validation_failures"]}
    assert got["ai_generated"] is True  # what it claims is still reported, marked invalid


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "GIF"])
def test_plain_image_has_no_manifest(tmp_path, fmt):
    data = _image(fmt)
    got = read_c2pa(data)
    assert got["present"] is False and got["status"] == "no manifest" and got["error"] is None
    assert got["raw"] is None and got["ai_generated"] is None
    path = tmp_path / "plain.img"  # a wrong or missing extension does not matter
    path.write_bytes(data)
    assert read_c2pa(path) == got


def test_unsupported_formats_are_not_errors():
    assert read_c2pa(_image("BMP"))["status"] == "unsupported format"
    assert read_c2pa(b"just some text, not an image")["status"] == "unsupported format"
    assert read_c2pa(b"")["status"] == "unsupported format"
    assert read_c2pa(_image("PNG"), fmt="image/x-nothing")["status"] == "unsupported format"
    assert read_c2pa(_image("PNG"), fmt="png")["status"] == "no manifest"


def test_truncated_files_do_not_raise(signed):
    half = read_c2pa(signed["jpeg"][: len(signed["jpeg"]) // 2])
    assert half["status"] == "error" and half["error"]
    assert half["present"] is True  # the manifest store is there, the file around it is not
    head = read_c2pa(signed["png"][:10])
    assert head["status"] == "error" and head["present"] is False
    for data in (signed["png"][:3000], _image("JPEG")[:300], _image("PNG")[:100]):
        assert read_c2pa(data)["status"] in ("error", "no manifest")


def test_edit_of_a_generated_image_keeps_its_source_type(pki, signed):
    edited = _sign(pki, _image("JPEG", (40, 40)), "image/jpeg",
                   _manifest(None, "c2pa.opened", "parent"), ingredient=signed["jpeg"])
    got = read_c2pa(edited)
    assert got["manifests"] == 2 and got["status"] == "untrusted"
    assert got["actions"][0]["action"] == "c2pa.opened"
    assert got["actions"][0]["digitalSourceType"] is None
    [ingredient] = got["ingredients"]
    assert ingredient["title"] == "parent.jpg" and ingredient["relationship"] == "parentOf"
    assert ingredient["manifest"] in got["raw"]["manifests"]
    [term] = got["digital_source_type"]
    assert term["name"] == "trainedAlgorithmicMedia" and term["active"] is False
    assert term["manifest"] == ingredient["manifest"] and got["ai_generated"] is True


@pytest.mark.parametrize(("term", "expected"), [("digitalCapture", False), ("composite", None),
                                                ("compositeWithTrainedAlgorithmicMedia", True)])
def test_source_type_terms_decide_ai_generated(pki, term, expected):
    got = read_c2pa(_sign(pki, _image("PNG"), "image/png", _manifest(term)))
    assert got["digital_source_type"][0]["name"] == term
    assert got["ai_generated"] is expected and SOURCE_TYPE_AI[term] is expected


def test_remote_manifest_is_reported_not_fetched(pki):
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, pki[0], pki[1],
                                                       None))
    url = "http://127.0.0.1:9/never-fetched.c2pa"
    out = io.BytesIO()
    with signer, c2pa.Builder(_manifest()) as builder:
        builder.set_no_embed()
        builder.set_remote_url(url)
        builder.sign(signer, "image/jpeg", io.BytesIO(_image("JPEG")), out)
    got = read_c2pa(out.getvalue())
    assert got["status"] == "remote manifest" and got["present"] is True
    assert got["remote_url"] == url


@pytest.mark.parametrize("options", [{"eku": False}, {"aki": False}])
def test_c2pa_refuses_certificates_outside_its_profile(options):
    """Why the chain above carries an EKU and an AKI: without either c2pa will not sign."""
    chain, key, _ = _signer_pems(**options)
    with pytest.raises(c2pa.C2paError.Signature):
        _sign(None, _image("JPEG"), "image/jpeg", chain=chain, key=key)


def test_import_does_not_load_c2pa():
    code = "import sys, detect.evidence.c2pa; print('c2pa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
