"""Image watermark payloads: the public catalog (what popular generators' reference scripts
embed by default) and a user's bits, each with the scheme and the pixels its embedder used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.evidence.watermark.image_codec import check_pixels, check_scheme


def _bits_of(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, dtype=np.uint8)))



@dataclass(frozen=True)
class Payload:
    """A known watermark: the bits, the scheme, and what pixels the embedder handed
    imwatermark (channel order; 8-bit or float values)."""

    name: str
    scheme: str
    bits: tuple[int, ...]
    channel_order: str = "bgr"  # "rgb": the embedder passed RGB pixels where BGR was expected
    source: str = ""
    pixels: str = "uint8"  # "float": float32 in [0, 255] (diffusers' and Stability's SDXL)

    @property
    def n_bits(self) -> int:
        return len(self.bits)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scheme": self.scheme, "n_bits": self.n_bits,
                "bits": "".join(map(str, self.bits)), "channel_order": self.channel_order,
                "pixels": self.pixels, "source": self.source}



_SDXL_BITS = tuple(int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:])

# Public payloads: what the reference scripts of popular generators embed by default.
CATALOG: dict[str, Payload] = {p.name: p for p in (
    Payload("sd-v1", "dwtDct", _bits_of(b"StableDiffusionV1"),
            source="CompVis stable-diffusion scripts/txt2img.py: bytes 'StableDiffusionV1'"),
    Payload("sd-v2", "dwtDct", _bits_of(b"SDV2"),
            source="Stability-AI stablediffusion scripts/txt2img.py: bytes 'SDV2'"),
    Payload("sdxl", "dwtDct", _SDXL_BITS, pixels="float",
            source="diffusers StableDiffusionXLWatermarker and Stability-AI generative-models: "
                   "48-bit WATERMARK_MESSAGE embedded into float32 BGR pixels in [0, 255]"),
    Payload("sdxl-rgb", "dwtDct", _SDXL_BITS, channel_order="rgb", pixels="float",
            source="early diffusers SDXL releases embedded the same 48 bits into float RGB "
                   "pixels passed as BGR"),
    Payload("sdxl-8bit", "dwtDct", _SDXL_BITS,
            source="the same 48 bits embedded into 8-bit pixels (invisible-watermark's own "
                   "command line; `unmask watermark embed --catalog sdxl` before it embedded "
                   "as diffusers does); a float-embedded SDXL mark sometimes reads better so"),
)}



def parse_payload(*, bits: str | None = None, data: str | None = None,
                  hex_: str | None = None) -> tuple[int, ...]:
    """A user's payload from exactly one of: a 0/1 string, a UTF-8 text, or hex bytes."""
    given = [x for x in (bits, data, hex_) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one payload: --bits 0101..., --bytes TEXT or --hex ABCD")
    if bits is not None:
        s = bits.replace(" ", "").replace("_", "")
        if not s or set(s) - {"0", "1"}:
            raise ConfigError(f"--bits must be a string of 0 and 1, got {bits!r}")
        return tuple(int(c) for c in s)
    if data is not None:
        if not data:
            raise ConfigError("--bytes payload is empty")
        return _bits_of(data.encode("utf-8"))
    try:
        raw = bytes.fromhex(hex_ or "")
    except ValueError as e:
        raise ConfigError(f"--hex is not valid hexadecimal: {e}") from None
    if not raw:
        raise ConfigError("--hex payload is empty")
    return _bits_of(raw)



def user_payloads(bits: tuple[int, ...], schemes: list[str] | None = None,
                  channel_orders: tuple[str, ...] = ("bgr",),
                  pixels: tuple[str, ...] = ("uint8",)) -> list[Payload]:
    """A user's payload checked under each scheme it could have been embedded with (every
    scheme, channel order and pixel type tried counts in the FPR correction; rivaGan reads
    only 8-bit pixels)."""
    if schemes is None:
        schemes = ["dwtDct", "dwtDctSvd"] + (["rivaGan"] if len(bits) == 32 else [])
    for px in pixels:
        check_pixels(px)
    out = []
    for s in schemes:
        check_scheme(s)
        if s == "rivaGan" and len(bits) != 32:
            raise ConfigError(f"rivaGan carries exactly 32 bits, the payload has {len(bits)}")
        for px in (("uint8",) if s == "rivaGan" else pixels):
            out += [Payload(f"user:{s}" + ("" if o == "bgr" else f":{o}")
                            + ("" if px == "uint8" else f":{px}"), s, tuple(bits), o,
                            source="user payload", pixels=px) for o in channel_orders]
    return out


def catalog_payloads(names: list[str] | None = None) -> list[Payload]:
    if not names:
        return list(CATALOG.values())
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise ConfigError(f"unknown catalog payload(s) {', '.join(unknown)} (known: "
                          f"{', '.join(CATALOG)})")
    return [CATALOG[n] for n in names]
