"""Generator metadata read from files the tests write the way the tools write them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, PngImagePlugin

from detect.evidence.metadata import parse_a1111, read_metadata

A1111 = ("a cat in a hat, oil painting\nNegative prompt: blurry, lowres\n"
         'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x512, '
         'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2"')


def _png(tmp_path, name, size=8, **text):
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    p = tmp_path / name
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(p, pnginfo=info)
    return p


def test_a1111_parameters_are_parsed():
    got = parse_a1111(A1111)
    assert got["prompt"] == "a cat in a hat, oil painting"
    assert got["negative_prompt"] == "blurry, lowres"
    assert got["Steps"] == "20" and got["Sampler"] == "DPM++ 2M" and got["Seed"] == "1234"
    assert got["Model"] == "v1-5-pruned-emaonly" and got["Lora hashes"] == "a: 1, b: 2"
    assert parse_a1111("just a caption") == {}


def test_png_text_chunks_of_a1111_and_comfyui(tmp_path):
    graph = {"3": {"class_type": "KSampler", "inputs": {}},
             "4": {"class_type": "CheckpointLoaderSimple", "inputs": {}}}
    p = _png(tmp_path, "gen.png", parameters=A1111, prompt=json.dumps(graph),
             workflow=json.dumps({"nodes": [{"type": "KSampler"}, {"type": "SaveImage"}]}))
    md = read_metadata(p)
    assert md["tools"] == ["AUTOMATIC1111", "ComfyUI"]
    by = {s["source"]: s for s in md["signals"]}
    assert by["png:text:parameters"]["parsed"]["Seed"] == "1234"
    assert by["png:text:parameters"]["value"] == A1111  # the raw value, for the analyst
    assert by["png:text:prompt"]["parsed"]["node_types"] == ["CheckpointLoaderSimple", "KSampler"]
    assert by["png:text:workflow"]["parsed"]["node_types"] == ["KSampler", "SaveImage"]
    assert read_metadata(p.read_bytes()) == md  # bytes and path give the same answer


def test_exif_software_and_xmp_digital_source_type(tmp_path):
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly 2.0"
    exif[0x013B] = "someone"
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
           b'xmp:CreatorTool="Midjourney v6" Iptc4xmpExt:DigitalSourceType='
           b'"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
           b'</rdf:RDF></x:xmpmeta>')
    p = tmp_path / "a.jpg"
    img.save(p, exif=exif, xmp=xmp)
    md = read_metadata(p)
    by = {s["source"]: s for s in md["signals"]}
    assert by["exif:Software"] == {"source": "exif:Software", "tool": "Adobe Firefly",
                                   "value": "Adobe Firefly 2.0"}
    assert by["exif:Artist"]["tool"] is None
    assert by["xmp:CreatorTool"]["tool"] == "Midjourney"
    assert md["ai_source_type"] == "trainedAlgorithmicMedia"
    assert md["tools"] == ["Adobe Firefly", "Midjourney"]


def test_a_camera_photo_and_a_broken_file(tmp_path):
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    p = tmp_path / "camera.jpg"
    img.save(p, exif=exif)
    md = read_metadata(p)
    assert md["tools"] == [] and md["ai_source_type"] is None
    assert {s["source"] for s in md["signals"]} == {"exif:Make", "exif:Model"}
    assert "error" in read_metadata(b"not an image at all")


def test_inspect_reports_the_metadata(tmp_path, trained_models):
    import os
    import subprocess
    import sys
    from pathlib import Path

    p = _png(tmp_path, "gen.png", size=64, parameters=A1111)
    exe = Path(sys.executable).parent / "unmask"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "detect.cli"]
    r = subprocess.run([*cmd, "inspect", str(p), "-m", str(trained_models["spectrum-test"])],
                       capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=300)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    md = json.loads(r.stdout)["provenance"]["metadata"]
    assert md["tools"] == ["AUTOMATIC1111"]
    assert md["signals"][0]["parsed"]["Model"] == "v1-5-pruned-emaonly"



def test_scan_record_carries_compact_generator_tags(tmp_path, trained_models):
    from detect.app.scan import scan_item
    from detect.core.models import load_detectors
    from detect.io.media import load

    dets = load_detectors([], [trained_models["spectrum-test"]])
    tagged = scan_item(load(_png(tmp_path, "gen.png", size=32, parameters=A1111)), dets)
    assert tagged.provenance["generator_tags"] == {
        "tools": ["AUTOMATIC1111"], "ai_source_type": None,
        "sources": ["png:text:parameters"]}
    plain = scan_item(load(_png(tmp_path, "plain.png", size=32)), dets)
    assert "generator_tags" not in plain.provenance
