"""Invisible image watermarks, verified: a decision at a stated FPR for each payload tried.

invisible-watermark (``imwatermark``) is what Stable Diffusion's scripts and diffusers' SDXL
pipeline use. Its decoder always returns bits. Here every check ends in a p-value: the chance
that an unmarked image agrees with the payload in at least as many positions, decided at a
stated FPR. The naive binomial p-value (bits as fair coins) is reported too, but decisions use a
test conditioned on the number of ones decoded (see ``conditional_p_value``): unmarked photos
decode far from fair coins.

The embedder and decoders are in :mod:`detect.evidence.watermark.image_codec`, the payloads
(the public catalog, a user's bits) in :mod:`detect.evidence.watermark.image_payloads`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detect.core.errors import ConfigError, InputError
from detect.evidence.watermark import DEFAULT_TARGET_FPR, WatermarkResult, binomial_sf, decide
from detect.evidence.watermark.image_codec import (
    BLOCK,
    DEFAULT_DECODER,
    MIN_PIXELS,
    bits_from_values,
    block_values,
    check_decoder,
    check_scheme,
    decode_reference,
    rivagan_soft,
)
from detect.evidence.watermark.image_payloads import CATALOG, Payload


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
        check_scheme(pl.scheme)
        label = pl.name
        extra: dict[str, Any] = {}
        if pl.scheme == "rivaGan":
            if pl.n_bits != 32:
                raise ConfigError(f"payload {pl.name!r}: rivaGan carries exactly 32 bits, got "
                                  f"{pl.n_bits}")
            key = ("rivaGan", pl.channel_order)
            if key not in cache:
                cache[key] = rivagan_soft(rgb, pl.channel_order)
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



def summarize(results: list[WatermarkResult]) -> dict[str, Any]:
    """One line per file: which payloads were found, and the smallest p-value seen."""
    found = [r.payload for r in results if r.detected]
    ps = [r.p_value for r in results if r.p_value is not None]
    return {"status": "detected" if found else (
                "absent" if any(r.status == "absent" for r in results) else "insufficient"),
            "found": found, "min_p_value": min(ps) if ps else None,
            "n_tests": len(results)}
