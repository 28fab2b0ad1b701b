"""invisible-watermark's image schemes: the reference embedder and three decoders.

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

import numpy as np

from detect.core.errors import ConfigError

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



def check_decoder(decoder: str) -> str:
    """The decoder's canonical name ("fast" is the hard decoder's old name)."""
    d = _DECODER_ALIASES.get(decoder, decoder)
    if d not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r} (known: {', '.join(DECODERS)})")
    return d




def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown watermark scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def _check_rgb(rgb: np.ndarray, channel_order: str, pixels: str = "uint8") -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if channel_order not in ("bgr", "rgb"):
        raise ConfigError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    check_pixels(pixels)


def check_pixels(pixels: str) -> None:
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
    check_scheme(scheme)
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
    check_scheme(scheme)
    from imwatermark import WatermarkDecoder

    if scheme == "rivaGan":
        WatermarkDecoder.loadModel()
    dec = WatermarkDecoder("bits", n_bits)
    return np.asarray(dec.decode(_as_bgr(rgb, channel_order, pixels), scheme), dtype=np.uint8)


def rivagan_soft(rgb: np.ndarray, channel_order: str) -> np.ndarray:
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
    check_scheme(scheme)
    decoder = check_decoder(decoder)
    if scheme == "rivaGan":
        if n_bits != 32:
            raise ConfigError(f"rivaGan carries exactly 32 bits, got {n_bits}")
        return (rivagan_soft(rgb, channel_order) > 0.52).astype(np.uint8)
    if decoder == "reference":
        return decode_reference(rgb, n_bits, scheme, channel_order=channel_order, pixels=pixels)
    vals = block_values(rgb, scheme, channel_order=channel_order, pixels=pixels)
    return bits_from_values(vals, n_bits, soft=decoder == "soft")[0]
