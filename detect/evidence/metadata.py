"""Generator metadata in image files: what AI front ends and tools write about themselves.

Evidence, never a verdict on its own (metadata is trivially stripped or forged), reported with
the raw value so an analyst can read it: PNG text chunks written by AUTOMATIC1111
(``parameters``), ComfyUI (``prompt`` / ``workflow``, JSON graphs), InvokeAI and NovelAI; EXIF
software / artist / description tags; XMP ``CreatorTool`` and IPTC ``DigitalSourceType`` (e.g.
``trainedAlgorithmicMedia``). Pillow's parsers only: no code from the file is ever run.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

METADATA_SCHEMA = "unmask.metadata/1"
RAW_LIMIT = 4000  # characters of a raw value kept in a report

# (pattern, tool) for free-text fields such as EXIF Software or XMP CreatorTool
TOOL_SIGNATURES = [
    (r"automatic1111|stable[- ]diffusion[- ]webui", "AUTOMATIC1111"),
    (r"comfyui", "ComfyUI"),
    (r"invokeai", "InvokeAI"),
    (r"novelai", "NovelAI"),
    (r"midjourney", "Midjourney"),
    (r"dall[- ]?e|openai", "DALL-E / OpenAI"),
    (r"firefly", "Adobe Firefly"),
    (r"imagen|gemini", "Google Imagen / Gemini"),
    (r"stable ?diffusion|stability ai|sdxl", "Stable Diffusion"),
    (r"\bflux\b|black forest labs", "FLUX"),
    (r"leonardo\.ai", "Leonardo.Ai"),
]
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                   "algorithmicMedia")
_EXIF_TAGS = {0x0131: "Software", 0x013B: "Artist", 0x010E: "ImageDescription",
              0x9286: "UserComment", 0x010F: "Make", 0x0110: "Model"}


def _tool_in(text: str) -> str | None:
    low = text.lower()
    for pattern, tool in TOOL_SIGNATURES:
        if re.search(pattern, low):
            return tool
    return None


def _raw(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"… ({len(text)} chars)"


def parse_a1111(text: str) -> dict[str, Any]:
    """AUTOMATIC1111's ``parameters``: prompt, negative prompt, then ``Key: value, ...``."""
    lines = text.strip().splitlines()
    settings_at = next((i for i in range(len(lines) - 1, -1, -1)
                        if re.match(r"^Steps: \d+", lines[i])), None)
    if settings_at is None:
        return {}
    head, settings = lines[:settings_at], lines[settings_at]
    neg_at = next((i for i, ln in enumerate(head) if ln.startswith("Negative prompt:")), None)
    out: dict[str, Any] = {
        "prompt": "\n".join(head[:neg_at] if neg_at is not None else head).strip()}
    if neg_at is not None:
        out["negative_prompt"] = "\n".join(head[neg_at:]).removeprefix("Negative prompt:").strip()
    for key, value in re.findall(r'([A-Za-z][\w /-]*): ("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)',
                                 settings):
        out[key.strip()] = value.strip().strip('"')
    return out


def parse_comfyui(text: str) -> dict[str, Any]:
    """A ComfyUI graph (API ``prompt`` or UI ``workflow``): the node types it ran."""
    try:
        graph = json.loads(text)
    except json.JSONDecodeError:
        return {}
    nodes = graph.get("nodes") if isinstance(graph, dict) and "nodes" in graph else \
        list(graph.values()) if isinstance(graph, dict) else []
    types = sorted({str(n.get("class_type") or n.get("type")) for n in nodes
                    if isinstance(n, dict) and (n.get("class_type") or n.get("type"))})
    return {"node_types": types} if types else {}


def read_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """Every generator-metadata signal in an image file (a path or its bytes).

    Returns ``{"schema", "signals": [{"source", "tool", "value", "parsed"?}], "tools",
    "ai_source_type"}``; an unreadable image gives ``{"schema", "error"}``, never an exception.
    """
    from PIL import Image, UnidentifiedImageError

    data = Path(source).read_bytes() if not isinstance(source, bytes) else source
    out: dict[str, Any] = {"schema": METADATA_SCHEMA, "signals": [], "tools": [],
                           "ai_source_type": None}
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return {"schema": METADATA_SCHEMA, "error": f"no image metadata readable ({e})"}
    signals = out["signals"]
    with img:
        for key, value in (getattr(img, "text", None) or img.info).items():
            if not isinstance(value, str | bytes) or key in ("icc_profile", "exif"):
                continue
            text, sig = _raw(value), {"source": f"{img.format.lower()}:text:{key}", "tool": None}
            if key == "parameters":
                sig.update(tool="AUTOMATIC1111", parsed=parse_a1111(text))
            elif key in ("prompt", "workflow") and text.lstrip().startswith("{"):
                sig.update(tool="ComfyUI", parsed=parse_comfyui(text))
            elif key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
                sig["tool"] = "InvokeAI"
            elif key in ("Software", "Source", "Comment", "Description", "Title", "Author"):
                sig["tool"] = _tool_in(text)
                if key == "Comment" and text.lstrip().startswith("{") and sig["tool"] is None \
                        and '"steps"' in text:
                    sig["tool"] = "NovelAI"
            elif key.startswith("XML:com.adobe.xmp") or key == "xmp":
                continue  # read below with the other XMP sources
            sig["value"] = text
            signals.append(sig)
        try:
            exif = img.getexif()
        except Exception:  # noqa: BLE001 - a corrupt EXIF block is evidence of nothing
            exif = {}
        for tag, name in _EXIF_TAGS.items():
            if tag in exif and str(exif[tag]).strip("\x00 "):
                text = _raw(exif[tag])
                signals.append({"source": f"exif:{name}", "tool": _tool_in(text), "value": text})
        xmp = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if xmp is None:
        start = data.find(b"<x:xmpmeta")
        end = data.find(b"</x:xmpmeta>", start)
        xmp = data[start:end + 12] if start >= 0 and end > start else None
    if xmp:
        text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
        creator = re.search(r"CreatorTool(?:>|=\")([^<\"]+)", text)
        if creator:
            signals.append({"source": "xmp:CreatorTool", "tool": _tool_in(creator.group(1)),
                            "value": _raw(creator.group(1))})
        dst = re.search(r"DigitalSourceType(?:>|=\")([^<\"]+)", text)
        if dst:
            value = dst.group(1).strip()
            signals.append({"source": "xmp:DigitalSourceType", "tool": None, "value": value})
            kind = value.rsplit("/", 1)[-1]
            out["ai_source_type"] = kind if kind in AI_SOURCE_TYPES else None
    out["tools"] = sorted({s["tool"] for s in signals if s.get("tool")})
    return out
