"""Invisible image watermarks: invisible-watermark's schemes, a fast decoder, and a decision.

invisible-watermark (``imwatermark``) is what Stable Diffusion's scripts and diffusers' SDXL
pipeline use. Its decoder always returns bits. Here every check ends in a p-value: the chance
that an unmarked image agrees with the payload in at least as many positions, decided at a
stated FPR. The naive binomial p-value (bits as fair coins) is reported too, but decisions use a
test conditioned on the number of ones decoded (see ``conditional_p_value``): unmarked photos
decode far from fair coins.

Decoders (``decoder=``):
- ``"soft"`` (the default of every verification) — each block votes with its distance from the
  quantiser's decision boundary (``-sin`` of its phase) instead of a hard 0/1, so blocks that
  rounding or an attack pushed near the boundary count little; a bit is the sign of its votes'
  mean. Same embedding, more bits recovered. The hard bits of the same blocks are kept in the
  result (``details.hard_bits``, ``statistic.hard_*``).
- ``"hard"`` (alias ``"fast"``) — the same decisions as imwatermark's, block for block, from
  whole-array numpy: the Haar approximation band is computed with pywt's exact floating-point
  order (so values that sit exactly on a quantiser boundary fall the same way), dwtDctSvd's top
  singular value comes from vectorised power iteration, and the few blocks whose value lies too
  close to a boundary to be sure are recomputed exactly as imwatermark does.
- ``"reference"`` — imwatermark's own decoder, for comparison.
- rivaGan (a learned encoder/decoder, 32-bit payloads) always runs through imwatermark's ONNX
  models; its soft outputs are kept.

Pixels (``Payload.pixels``): imwatermark converts whatever array it is given to YUV with
OpenCV, whose chroma offset is 128 for 8-bit input but 0.5 for float input. diffusers'
``StableDiffusionXLWatermarker`` and Stability's generative-models pass float32 pixels in
[0, 255], so SDXL's mark sits in chroma centred on ~0; dwtDct quantises the raw Haar values
(not DCT coefficients: no DC term is removed), so the offset changes which value carries the
bit and its phase. Reading an SDXL image as 8-bit pixels inverts the bits of warm-coloured
blocks. ``pixels="float"`` reads the way the embedder saw the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detect.core.errors import ConfigError, InputError
from detect.evidence.watermark import DEFAULT_TARGET_FPR, WatermarkResult, binomial_sf, decide

SCHEMES = ("dwtDct", "dwtDctSvd", "rivaGan")
DECODERS = ("soft", "hard", "reference")
DEFAULT_DECODER = "soft"
_DECODER_ALIASES = {"fast": "hard"}  # the hard decoder's name before soft became the default
PIXELS = ("uint8", "float")  # what the embedder handed imwatermark (see the module docstring)
# imwatermark's defaults: (Y, U, V) quantiser steps; its channel loop visits only Y and U
DEFAULT_SCALES = {"dwtDct": (0, 36, 36), "dwtDctSvd": (0, 36, 0)}
BLOCK = 4
MIN_PIXELS = 256 * 256  # imwatermark refuses smaller images; so does embedding here
_HAAR = 0.7071067811865476  # pywt.Wavelet("haar").dec_lo[0]


def _bits_of(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, dtype=np.uint8)))


def check_decoder(decoder: str) -> str:
    """The decoder's canonical name ("fast" is the hard decoder's old name)."""
    d = _DECODER_ALIASES.get(decoder, decoder)
    if d not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r} (known: {', '.join(DECODERS)})")
    return d


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


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown watermark scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def _check_rgb(rgb: np.ndarray, channel_order: str, pixels: str = "uint8") -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if channel_order not in ("bgr", "rgb"):
        raise ConfigError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    _check_pixels(pixels)


def _check_pixels(pixels: str) -> None:
    if pixels not in PIXELS:
        raise ConfigError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")


def _as_bgr(rgb: np.ndarray, channel_order: str, pixels: str = "uint8") -> np.ndarray:
    """The array imwatermark saw: BGR for a correct embedder, the RGB pixels themselves for one
    that forgot to swap channels; float32 for an embedder that passed float pixels."""
    _check_rgb(rgb, channel_order, pixels)
    x = np.ascontiguousarray(rgb[..., ::-1] if channel_order == "bgr" else rgb)
    return x.astype(np.float32) if pixels == "float" else x


# --------------------------------------------------------------------------- embedding


def embed(rgb: np.ndarray, bits: tuple[int, ...] | list[int], scheme: str = "dwtDct", *,
          channel_order: str = "bgr", pixels: str = "uint8") -> np.ndarray:
    """Embed ``bits`` with imwatermark's encoder (the reference embedder) into an RGB image.

    ``pixels="float"`` hands imwatermark float32 pixels and rounds its output back to 8 bits,
    as diffusers' SDXL pipelines do (``StableDiffusionXLWatermarker`` + ``postprocess``)."""
    _check_scheme(scheme)
    h, w = rgb.shape[:2]
    if h * w < MIN_PIXELS:
        raise ConfigError(f"image too small to watermark ({w}x{h}; needs at least 256x256 "
                          "pixels in area)")
    if not bits:
        raise ConfigError("empty payload")
    if scheme == "rivaGan" and len(bits) != 32:
        raise ConfigError(f"rivaGan carries exactly 32 bits, got {len(bits)}")
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", [int(b) for b in bits])
    if scheme == "rivaGan":
        WatermarkEncoder.loadModel()
    out = enc.encode(_as_bgr(rgb, channel_order, pixels), scheme)
    out = np.asarray(np.clip(np.round(out), 0, 255) if pixels == "float" else out,
                     dtype=np.uint8)
    return np.ascontiguousarray(out[..., ::-1] if channel_order == "bgr" else out)


# --------------------------------------------------------------------------- decoding


def _haar_approx(channel: np.ndarray) -> np.ndarray:
    """pywt.dwt2(x, 'haar')[0], bit for bit: rows paired first, then columns, each sum of two
    products by 1/sqrt(2) (the order decides how exact multiples of the step round). pywt
    computes float32 input in float32; so does this."""
    x = channel if channel.dtype == np.float32 else channel.astype(np.float64)
    h = x.dtype.type(_HAAR)
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    return (a * h + c * h) * h + (b * h + d * h) * h


def _blocks(ca: np.ndarray) -> np.ndarray:
    """(n_blocks, 4, 4) in imwatermark's raster order (row of blocks, then column)."""
    nr, nc = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    b = ca[:nr * BLOCK, :nc * BLOCK].reshape(nr, BLOCK, nc, BLOCK).transpose(0, 2, 1, 3)
    return b.reshape(nr * nc, BLOCK, BLOCK)


def _top_singular(blocks: np.ndarray, scale: float) -> np.ndarray:
    """Largest singular value of each block's 2-D DCT, deciding exactly as imwatermark does.

    The DCT is orthogonal, so it leaves singular values alone: a few power-iteration steps on
    the blocks themselves (vᵀ ← Bᵀ B v, all blocks at once) give them. Then a certificate per
    block: the Rayleigh quotient r lies within the residual of some eigenvalue of BᵀB, and since
    the eigenvalues are non-negative and sum to ‖B‖², ``2 (r - residual) > ‖B‖²`` proves that
    eigenvalue is the largest. Blocks without the certificate, or whose value lies within the
    error bound (plus a margin for imwatermark's own rounding) of a quantiser boundary, are
    recomputed exactly imwatermark's way (cv2.dct, then numpy's SVD), so decisions agree bit
    for bit. Flat regions put many values exactly on a boundary; they all take that path."""
    import cv2

    exact = blocks  # float32 when the embedder passed float pixels: imwatermark stays float32
    blocks = blocks.astype(np.float64)
    n = len(blocks)
    v = np.ones((n, BLOCK))
    for _ in range(3):
        v = np.einsum("nji,nj->ni", blocks, np.einsum("nij,nj->ni", blocks, v))
        v /= np.maximum(np.abs(v).max(axis=1, keepdims=True), 1e-300)
    u = np.einsum("nij,nj->ni", blocks, v)
    w = np.einsum("nji,nj->ni", blocks, u)
    vv = np.maximum(np.einsum("ni,ni->n", v, v), 1e-300)
    lam = np.einsum("ni,ni->n", u, u) / vv
    r = w - lam[:, None] * v
    resid = np.sqrt(np.einsum("ni,ni->n", r, r) / vv)
    frob = np.einsum("nij,nij->n", blocks, blocks)
    s = np.sqrt(lam)
    half = scale / 2
    phase = np.mod(s, half)
    dist = np.minimum(phase, half - phase)
    err = resid / np.maximum(s, 1e-300)  # |s - s_true| <= resid / (s + s_true) <= this
    # imwatermark's own rounding: float64 ~1e-16 relative, float32 ~1e-7 (wide margins)
    margin = 1e-7 * scale if exact.dtype == np.float64 else 1e-4 * np.maximum(s, scale)
    redo = ~(2 * (lam - resid) > frob * (1 + 1e-9)) | (dist <= err + margin)
    idx = np.flatnonzero(redo)
    if len(idx):
        d = np.stack([cv2.dct(np.ascontiguousarray(exact[i])) for i in idx])
        s[idx] = np.linalg.svd(d)[1][:, 0]  # batched == per-block (compute_uv=False is not)
    return s


def block_values(rgb: np.ndarray, scheme: str, *, channel_order: str = "bgr",
                 scales: tuple[int, ...] | None = None,
                 pixels: str = "uint8") -> list[tuple[np.ndarray, float]]:
    """Per-block quantised values the decoder thresholds, for each channel it reads, in
    imwatermark's order: [(values, scale), ...]. Payload-independent, so a catalog check
    computes them once for every payload length."""
    import cv2

    if scheme not in DEFAULT_SCALES:
        raise ConfigError(f"{scheme} has no block decoder (it is a learned model)")
    scales = tuple(scales or DEFAULT_SCALES[scheme])
    _check_rgb(rgb, channel_order, pixels)
    if pixels == "float":
        # OpenCV's float conversion rounds differently for RGB2YUV and for BGR2YUV on the
        # swapped array: convert exactly the array imwatermark was given
        yuv = cv2.cvtColor(_as_bgr(rgb, channel_order, pixels), cv2.COLOR_BGR2YUV)
    else:
        # imwatermark converts the BGR array it is given; converting our RGB array with
        # RGB2YUV gives the identical result without the copy (and BGR2YUV for an embedder
        # that passed RGB)
        code = cv2.COLOR_RGB2YUV if channel_order == "bgr" else cv2.COLOR_BGR2YUV
        yuv = cv2.cvtColor(np.ascontiguousarray(rgb), code)
    rows, cols = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    out = []
    for ch in range(2):  # imwatermark's loop: `for channel in range(2)` (Y and U only)
        if scales[ch] <= 0:
            continue
        blocks = _blocks(_haar_approx(yuv[:rows, :cols, ch]))
        if scheme == "dwtDct":
            flat = np.abs(blocks.reshape(len(blocks), -1)[:, 1:])
            vals = flat[np.arange(len(flat)), np.argmax(flat, axis=1)]  # first max wins, as np
        else:
            vals = _top_singular(blocks, float(scales[ch]))
        out.append((vals, float(scales[ch])))
    return out


def bits_from_values(values: list[tuple[np.ndarray, float]], n_bits: int, *,
                     soft: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(bits, per-bit confidence in [-1, 1], fewest blocks behind any bit).

    Hard: each block votes 1 when ``value mod step > step / 2``; a bit is 1 when the votes'
    mean * 255 > 127 (imwatermark's exact rule, ties included). Soft: each block votes
    ``-sin(2π · phase)`` (+1 at the centre of the "1" cell, −1 at the centre of the "0" cell)."""
    sums = np.zeros(n_bits)
    counts = np.zeros(n_bits)
    for vals, scale in values:
        idx = np.arange(len(vals)) % n_bits  # the block counter restarts for every channel
        if soft:
            vote = -np.sin(2 * np.pi * np.mod(vals, scale) / scale)
        else:
            vote = (np.mod(vals, scale) > 0.5 * scale).astype(np.float64)
        sums += np.bincount(idx, weights=vote, minlength=n_bits)
        counts += np.bincount(idx, minlength=n_bits)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    if soft:
        bits = mean > 0
        conf = np.nan_to_num(mean)
    else:
        bits = mean * 255 > 127  # NaN (no block) -> False, as in imwatermark
        conf = np.nan_to_num(2 * mean - 1)
    return bits.astype(np.uint8), conf, int(counts.min()) if n_bits else 0


def decode_reference(rgb: np.ndarray, n_bits: int, scheme: str, *,
                     channel_order: str = "bgr", pixels: str = "uint8") -> np.ndarray:
    """imwatermark's own decoder (slow; the yardstick for the fast one), given the pixels the
    way the embedder gave them."""
    _check_scheme(scheme)
    from imwatermark import WatermarkDecoder

    if scheme == "rivaGan":
        WatermarkDecoder.loadModel()
    dec = WatermarkDecoder("bits", n_bits)
    return np.asarray(dec.decode(_as_bgr(rgb, channel_order, pixels), scheme), dtype=np.uint8)


def _rivagan_soft(rgb: np.ndarray, channel_order: str) -> np.ndarray:
    """rivaGan's raw decoder outputs (imwatermark thresholds them at 0.52)."""
    from imwatermark import WatermarkDecoder
    from imwatermark.rivaGan import RivaWatermark

    WatermarkDecoder.loadModel()
    frame = _as_bgr(rgb, channel_order).astype(np.float32)[None] / 127.5 - 1.0
    frame = np.transpose(frame, (3, 0, 1, 2))[None]  # (1, C, T=1, H, W), as imwatermark feeds it
    return np.asarray(RivaWatermark.decoder.run(None, {"frame": frame})[0][0], dtype=np.float64)


def decode(rgb: np.ndarray, n_bits: int, scheme: str = "dwtDct", *, decoder: str = "hard",
           channel_order: str = "bgr", pixels: str = "uint8") -> np.ndarray:
    """Decoded bits (uint8 0/1) of length ``n_bits``; by default what imwatermark returns
    (verification defaults to the soft decoder, see ``verify_image``)."""
    _check_scheme(scheme)
    decoder = check_decoder(decoder)
    if scheme == "rivaGan":
        if n_bits != 32:
            raise ConfigError(f"rivaGan carries exactly 32 bits, got {n_bits}")
        return (_rivagan_soft(rgb, channel_order) > 0.52).astype(np.uint8)
    if decoder == "reference":
        return decode_reference(rgb, n_bits, scheme, channel_order=channel_order, pixels=pixels)
    vals = block_values(rgb, scheme, channel_order=channel_order, pixels=pixels)
    return bits_from_values(vals, n_bits, soft=decoder == "soft")[0]


# --------------------------------------------------------------------------- verification


def conditional_p_value(decoded: np.ndarray, payload: np.ndarray) -> float:
    """P(at least this many matches | the decoded string's and the payload's numbers of ones)
    when the decoded bits are exchangeable: a hypergeometric (permutation) test.

    Why not the plain binomial: an unmarked image does not decode fair coins. Natural images
    have nearly grey chroma, so imwatermark's U-channel cells are mostly "0": the astronaut
    decodes to 48 zeros, and a binomial test would "detect" any zero-heavy payload in every
    clean photo. Conditioning on the count of ones makes the test exact whatever the bias."""
    from scipy.stats import hypergeom

    n = len(payload)
    m1, k1 = int(payload.sum()), int(decoded.sum())
    x = int(((decoded == 1) & (payload == 1)).sum())
    return float(hypergeom.sf(x - 1, n, m1, k1))


def _result(payload: Payload, decoded: np.ndarray, *, label: str, target_fpr: float,
            n_tests: int, decoder: str, min_blocks: int | None,
            extra: dict[str, Any] | None = None,
            hard: np.ndarray | None = None) -> WatermarkResult:
    """``hard``: the hard-decision bits of the same blocks when ``decoded`` are soft ones,
    reported beside the decision (``hard_bits``, ``hard_bit_accuracy``, ``hard_p_value``)."""
    expect = np.asarray(payload.bits, dtype=np.uint8)
    n = len(expect)
    matches = int((decoded == expect).sum())
    details = {"decoder": decoder, "channel_order": payload.channel_order,
               "pixels": payload.pixels,
               "decoded_bits": "".join(map(str, decoded.tolist())),
               "source": payload.source}
    testable = True
    if min_blocks is not None:
        details["blocks_per_bit"] = min_blocks
        if min_blocks < 1:
            testable = False
            details["reason"] = "image too small: some payload bits have no block"
    if expect.min() == expect.max():
        testable = False
        details["reason"] = ("a constant payload (all 0 or all 1) cannot be told apart from an "
                             "unmarked image's biased bits")
    p = conditional_p_value(decoded, expect) if testable else None
    status, alpha = decide(p, target_fpr, n_tests)
    details.update(extra or {})
    statistic = {"bit_accuracy": round(matches / n, 4), "matches": matches, "n_bits": n,
                 "exact_match": matches == n, "decoded_ones": int(decoded.sum()),
                 "payload_ones": int(expect.sum()),
                 "p_value_binomial": binomial_sf(matches, n)}
    if hard is not None:
        hm = int((hard == expect).sum())
        details["hard_bits"] = "".join(map(str, hard.tolist()))
        statistic.update(hard_bit_accuracy=round(hm / n, 4), hard_matches=hm,
                         hard_p_value=conditional_p_value(hard, expect) if testable else None)
    return WatermarkResult(
        kind="image", scheme=payload.scheme, payload=label, status=status, p_value=p,
        alpha=alpha, target_fpr=target_fpr, n_tests=n_tests, statistic=statistic,
        details=details)


def verify_image(rgb: np.ndarray, payloads: list[Payload] | None = None, *,
                 target_fpr: float = DEFAULT_TARGET_FPR, decoder: str = DEFAULT_DECODER,
                 path: str = "<image>") -> list[WatermarkResult]:
    """Check an RGB image against ``payloads`` (default: the whole public catalog).

    The false-positive rate is for the whole call: each check's threshold is
    ``target_fpr / len(payloads)``. Block values are computed once per (scheme, channel
    order, pixels) and shared by every payload length. The soft decoder (default) decides;
    its results also carry the hard bits of the same blocks and their p-value."""
    decoder = check_decoder(decoder)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(path, f"watermark check needs an RGB image, got shape {rgb.shape}")
    plist = list(CATALOG.values()) if payloads is None else list(payloads)
    if not plist:
        raise ConfigError("no payload to check")
    n_tests = len(plist)
    cache: dict[tuple[str, str], Any] = {}
    results = []
    for pl in plist:
        _check_scheme(pl.scheme)
        label = pl.name
        extra: dict[str, Any] = {}
        if pl.scheme == "rivaGan":
            if pl.n_bits != 32:
                raise ConfigError(f"payload {pl.name!r}: rivaGan carries exactly 32 bits, got "
                                  f"{pl.n_bits}")
            key = ("rivaGan", pl.channel_order)
            if key not in cache:
                cache[key] = _rivagan_soft(rgb, pl.channel_order)
            raw = cache[key]
            decoded = (raw > 0.52).astype(np.uint8)
            extra["soft_outputs"] = [round(float(x), 4) for x in raw]
            results.append(_result(pl, decoded, label=label, target_fpr=target_fpr,
                                   n_tests=n_tests, decoder="onnx", min_blocks=None,
                                   extra=extra))
            continue
        if decoder == "reference":
            h, w = rgb.shape[:2]
            if h * w < MIN_PIXELS:
                raise InputError(path, f"imwatermark's reference decoder needs at least "
                                       f"256x256 pixels in area, got {w}x{h}")
            decoded = decode_reference(rgb, pl.n_bits, pl.scheme,
                                       channel_order=pl.channel_order, pixels=pl.pixels)
            results.append(_result(pl, decoded, label=label, target_fpr=target_fpr,
                                   n_tests=n_tests, decoder=decoder, min_blocks=None))
            continue
        key = (pl.scheme, pl.channel_order, pl.pixels)
        if key not in cache:
            cache[key] = block_values(rgb, pl.scheme, channel_order=pl.channel_order,
                                      pixels=pl.pixels)
        hard, _, min_blocks = bits_from_values(cache[key], pl.n_bits)
        if decoder == "soft":
            decoded = bits_from_values(cache[key], pl.n_bits, soft=True)[0]
        else:
            decoded, hard = hard, None
        results.append(_result(pl, decoded, label=label, target_fpr=target_fpr,
                               n_tests=n_tests, decoder=decoder, min_blocks=min_blocks,
                               hard=hard))
    _mark_cross_talk(results, plist, rgb.shape)
    return results


def _n_blocks(shape: tuple[int, ...]) -> int:
    rows, cols = shape[0] // 4 * 4, shape[1] // 4 * 4
    return (rows // 2 // BLOCK) * (cols // 2 // BLOCK)


def expected_decode(carrier: tuple[int, ...], n_bits: int, n_blocks: int) -> np.ndarray:
    """What decoding ``n_bits`` returns from a perfect embedding of ``carrier``: block k holds
    carrier bit k mod len(carrier), and read bit i is the majority over blocks k ≡ i."""
    k = np.arange(n_blocks)
    votes = np.asarray(carrier, dtype=np.float64)[k % len(carrier)]
    sums = np.bincount(k % n_bits, weights=votes, minlength=n_bits)
    counts = np.bincount(k % n_bits, minlength=n_bits)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts * 255 > 127).astype(np.uint8)


def _mark_cross_talk(results: list[WatermarkResult], plist: list[Payload],
                     shape: tuple[int, ...]) -> None:
    """A strong mark also "matches" other payloads of the same scheme: "SDV2" and
    "StableDiffusionV1" are both ASCII (every byte starts 0b01...), so an image carrying one
    agrees with the other well beyond chance. A detection whose decoded bits agree at least
    as well with what the stronger detected payload would produce is relabelled
    ``cross-talk`` (with ``explained_by``) instead of claiming a second watermark. The same
    bits read another way (other channel order or pixel type) are one mark, not two."""
    n_blocks = _n_blocks(shape)
    found = sorted((i for i, r in enumerate(results) if r.detected),
                   key=lambda i: results[i].p_value or 0.0)
    for rank, i in enumerate(found):
        a, pa = results[i], plist[i]
        if pa.scheme == "rivaGan":
            continue
        got = np.array([int(c) for c in a.details["decoded_bits"]], dtype=np.uint8)
        own = int((got == np.asarray(pa.bits)).sum())
        for j in found[:rank]:
            b, pb = results[j], plist[j]
            if b.status != "detected" or pb.scheme != pa.scheme:
                continue
            if (pb.channel_order, pb.pixels) != (pa.channel_order, pa.pixels):
                explained = pb.bits == pa.bits  # one mark, read another way
            else:
                pred = expected_decode(pb.bits, pa.n_bits, n_blocks)
                explained = int((got == pred).sum()) >= own
            if explained:
                a.status = "cross-talk"
                a.details["explained_by"] = b.payload
                break


def user_payloads(bits: tuple[int, ...], schemes: list[str] | None = None,
                  channel_orders: tuple[str, ...] = ("bgr",),
                  pixels: tuple[str, ...] = ("uint8",)) -> list[Payload]:
    """A user's payload checked under each scheme it could have been embedded with (every
    scheme, channel order and pixel type tried counts in the FPR correction; rivaGan reads
    only 8-bit pixels)."""
    if schemes is None:
        schemes = ["dwtDct", "dwtDctSvd"] + (["rivaGan"] if len(bits) == 32 else [])
    for px in pixels:
        _check_pixels(px)
    out = []
    for s in schemes:
        _check_scheme(s)
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


def summarize(results: list[WatermarkResult]) -> dict[str, Any]:
    """One line per file: which payloads were found, and the smallest p-value seen."""
    found = [r.payload for r in results if r.detected]
    ps = [r.p_value for r in results if r.p_value is not None]
    return {"status": "detected" if found else (
                "absent" if any(r.status == "absent" for r in results) else "insufficient"),
            "found": found, "min_p_value": min(ps) if ps else None,
            "n_tests": len(results)}
