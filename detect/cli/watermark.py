"""``unmask watermark embed / verify / catalog / keygen``: invisible image watermarks and
text watermark keys."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from detect.cli._common import _log
from detect.core.errors import ConfigError, UnmaskError


def _user_payload(a: argparse.Namespace) -> tuple[int, ...] | None:
    from detect.evidence.watermark.image_payloads import parse_payload

    if a.bits is None and a.bytes is None and a.hex is None:
        return None
    return parse_payload(bits=a.bits, data=a.bytes, hex_=a.hex)


def cmd_watermark_embed(a: argparse.Namespace) -> int:
    from PIL import Image

    from detect.evidence.watermark.image_codec import embed
    from detect.evidence.watermark.image_payloads import CATALOG, catalog_payloads
    from detect.io.media import Limits, load

    item = load(a.input, Limits())
    if item.modality != "image":
        raise ConfigError(f"{a.input}: is {item.modality}, not an image (text watermarks are "
                          "embedded during generation: see `unmask watermark keygen`)")
    bits = _user_payload(a)
    scheme, order, pixels = a.scheme, a.channel_order, a.pixels
    if a.catalog:
        if bits is not None:
            raise ConfigError("give either --catalog or a payload (--bits/--bytes/--hex)")
        pl = catalog_payloads([a.catalog])[0]
        bits, scheme, order, pixels = pl.bits, pl.scheme, pl.channel_order, pl.pixels
    if bits is None:
        raise ConfigError(f"no payload: give --bits, --bytes, --hex or --catalog "
                          f"({', '.join(CATALOG)})")
    out = Path(a.output)
    if out.suffix.lower() in (".jpg", ".jpeg") and not a.allow_lossy:
        raise ConfigError(f"{out}: JPEG would damage the mark before anyone reads it; write "
                          "PNG (or pass --allow-lossy to measure exactly that)")
    marked = embed(item.content, bits, scheme, channel_order=order, pixels=pixels)
    Image.fromarray(marked).save(out)
    rec = {"schema": "unmask.watermark-embed/1", "input": item.path, "output": str(out),
           "scheme": scheme, "n_bits": len(bits), "bits": "".join(map(str, bits)),
           "channel_order": order, "pixels": pixels, "psnr_db": _psnr(item.content, marked)}
    print(json.dumps(rec))
    return 0


def _psnr(a: Any, b: Any) -> float | None:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else round(10 * np.log10(255.0 ** 2 / mse), 2)


def cmd_watermark_verify(a: argparse.Namespace) -> int:
    from detect.core.types import _finite
    from detect.evidence.watermark import DEFAULT_TARGET_FPR
    from detect.evidence.watermark.checks import check_item, load_text_keys
    from detect.evidence.watermark.image import summarize
    from detect.evidence.watermark.image_payloads import catalog_payloads, user_payloads
    from detect.io.media import Limits, iter_paths, load

    text_keys = load_text_keys(a.wm_key)
    bits = _user_payload(a)
    payloads = user_payloads(bits, a.scheme or None, tuple(a.channel_order or ["bgr"]),
                             tuple(a.pixels or ["uint8"])) if bits is not None else None
    if a.catalog or payloads is None:
        payloads = catalog_payloads(a.catalog) + (payloads or [])
    fpr = a.target_fpr or DEFAULT_TARGET_FPR
    found = errors = 0
    for p in iter_paths(a.paths):
        rec: dict[str, Any] = {"schema": "unmask.watermark-verify/1", "path": str(p)}
        try:
            item = load(p, Limits())
            rec.update(sha256=item.sha256, modality=item.modality)
            if item.modality == "text" and not a.wm_key:
                raise ConfigError(f"{p}: text can only be checked against its key: pass "
                                  "--wm-key KEY.json")
            if item.modality not in ("image", "text"):
                raise ConfigError(f"{p}: no watermark check for {item.modality} input")
            results = check_item(item, target_fpr=fpr, payloads=payloads,
                                 text_keys=text_keys, decoder=a.decoder)
            summary = summarize(results)
            rec.update(status=summary["status"], found=summary["found"],
                       min_p_value=summary["min_p_value"], target_fpr=fpr,
                       results=[r.to_dict() for r in results], error=None)
            found += bool(summary["found"])
        except UnmaskError as e:
            rec.update(status="error", error=str(e))
            errors += 1
        print(json.dumps(_finite(rec), allow_nan=False), flush=True)
        if rec["status"] == "error" and not a.quiet:
            _log(f"error: {rec['error']}")
    return 1 if found else (2 if errors else 0)


def cmd_watermark_catalog(a: argparse.Namespace) -> int:
    from detect.evidence.watermark.image_payloads import CATALOG

    for pl in CATALOG.values():
        print(json.dumps(pl.describe()))
    return 0


def cmd_watermark_keygen(a: argparse.Namespace) -> int:
    """Write a text watermark key: a fresh secret, or a transformers config wrapped with its
    tokenizer. The key itself never goes to stdout; its fingerprint does."""
    from detect.evidence.watermark.text_keys import TextWatermarkKey

    out = Path(a.out)
    if out.exists() and not a.force:
        raise ConfigError(f"{out}: exists; a key is a secret that text was marked with, so it is "
                          "never overwritten silently (--force)")
    params: dict[str, Any] = {}
    if a.from_transformers:
        src = Path(a.from_transformers)
        try:
            cfg = json.loads(src.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{src}: cannot read a JSON config ({e})") from e
        if isinstance(cfg, dict) and isinstance(cfg.get("watermarking_config"), dict):
            cfg = cfg["watermarking_config"]  # a generation_config.json
        if not isinstance(cfg, dict) or not ({"greenlist_ratio", "keys"} & set(cfg)):
            raise ConfigError(f"{src}: no KGW (greenlist_ratio) or SynthID (keys) watermarking "
                              "settings found")
        if a.scheme and a.scheme != ("kgw" if "greenlist_ratio" in cfg else "synthid"):
            raise ConfigError(f"{src}: holds a {'kgw' if 'greenlist_ratio' in cfg else 'synthid'}"
                              f" config, not {a.scheme}")
        key = TextWatermarkKey.from_transformers(cfg, a.tokenizer, vocab_size=a.vocab_size,
                                                 device=a.device, name=out.name)
    else:
        scheme = a.scheme or "kgw"
        if scheme == "kgw":
            for name, val in (("greenlist_ratio", a.gamma), ("bias", a.delta),
                              ("seeding_scheme", a.seeding_scheme),
                              ("context_width", a.context_width)):
                if val is not None:
                    params[name] = val
        elif a.ngram_len is not None:
            params["ngram_len"] = a.ngram_len
        key = TextWatermarkKey.new(scheme, a.tokenizer, vocab_size=a.vocab_size,
                                   depth=a.depth, seed=a.seed, name=out.name, device=a.device,
                                   **params)
    key.save(out)
    with contextlib.suppress(OSError):
        out.chmod(0o600)
    desc = {k: v for k, v in key.to_dict().items() if k not in ("hashing_key", "keys", "schema")}
    print(json.dumps({"schema": "unmask.watermark-keygen/1", "out": str(out),
                      "fingerprint": key.fingerprint, **desc}))
    if key.tokenizer is None:
        _log("note: no --tokenizer: verify will need one (the key records none)")
    return 0


def _payload_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--bits", help="payload as a 0/1 string")
    s.add_argument("--bytes", help="payload as UTF-8 text (e.g. StableDiffusionV1)")
    s.add_argument("--hex", help="payload as hex bytes")


def register(sub: Any) -> None:
    from detect.evidence.watermark.image_codec import DECODERS, DEFAULT_DECODER, PIXELS, SCHEMES
    from detect.evidence.watermark.image_payloads import CATALOG

    w = sub.add_parser("watermark", help="embed or verify invisible watermarks")
    wsub = w.add_subparsers(dest="wm_command", required=True, metavar="ACTION")

    s = wsub.add_parser("verify", help="check images (catalog or your payload) and texts "
                        "(with --wm-key); one JSON line per file; exit 1 if any is detected")
    s.add_argument("paths", nargs="+", help="files or folders")
    _payload_args(s)
    s.add_argument("--scheme", action="append", choices=SCHEMES,
                   help="scheme(s) your payload may use (default: dwtDct, dwtDctSvd, and "
                   "rivaGan for 32 bits)")
    s.add_argument("--channel-order", action="append", choices=["bgr", "rgb"],
                   help="also try an embedder that passed RGB as BGR (repeat; default bgr)")
    s.add_argument("--pixels", action="append", choices=PIXELS,
                   help="pixels your embedder handed invisible-watermark: uint8, or float "
                   "(0..255 floats, as diffusers' SDXL does) (repeat; default uint8)")
    s.add_argument("--catalog", action="append", choices=list(CATALOG),
                   help="check these public payloads (default: all, unless a payload is given)")
    s.add_argument("--decoder", choices=[*DECODERS, "fast"], default=DEFAULT_DECODER,
                   help="soft (default: each block weighted by its distance from the "
                   "quantiser boundary; the hard bits are reported beside it), hard "
                   "(bit-identical to invisible-watermark; 'fast' is its old name), or "
                   "reference (invisible-watermark itself)")
    s.add_argument("--target-fpr", type=float, default=None,
                   help="false-positive rate per file over all payloads tried (default 1e-6)")
    s.add_argument("--wm-key", action="append", default=[], metavar="KEY.json",
                   help="text watermark key file (repeat)")
    s.set_defaults(func=cmd_watermark_verify)

    s = wsub.add_parser("embed", help="embed a payload into an image (writes PNG)")
    s.add_argument("input")
    s.add_argument("output")
    _payload_args(s)
    s.add_argument("--catalog", choices=list(CATALOG),
                   help="embed a public payload the way its generator does")
    s.add_argument("--scheme", choices=SCHEMES, default="dwtDct")
    s.add_argument("--channel-order", choices=["bgr", "rgb"], default="bgr")
    s.add_argument("--pixels", choices=PIXELS, default="uint8",
                   help="hand invisible-watermark 8-bit or float pixels (--catalog sets it)")
    s.add_argument("--allow-lossy", action="store_true", help="allow a JPEG output")
    s.set_defaults(func=cmd_watermark_embed)

    s = wsub.add_parser("catalog", help="list the public payloads verify checks by default")
    s.set_defaults(func=cmd_watermark_catalog)

    s = wsub.add_parser("keygen", help="write a text watermark key file (KGW or SynthID-Text) "
                        "for transformers' generate and for verify --wm-key")
    s.add_argument("--out", required=True, metavar="KEY.json")
    s.add_argument("--scheme", choices=["kgw", "synthid"], help="default kgw")
    s.add_argument("--tokenizer", metavar="PATH_OR_ID",
                   help="the generating model's tokenizer (recorded with its fingerprint)")
    s.add_argument("--vocab-size", type=int, help="the model's config.vocab_size "
                   "(default: the tokenizer's length)")
    s.add_argument("--from-transformers", metavar="CONFIG.json",
                   help="wrap an existing WatermarkingConfig / SynthIDTextWatermarkingConfig "
                   "dict or a generation_config.json instead of drawing a new secret")
    s.add_argument("--gamma", type=float, help="KGW green-list fraction (default 0.25)")
    s.add_argument("--delta", type=float, help="KGW logit bias (default 2.0)")
    s.add_argument("--seeding-scheme", choices=["lefthash", "selfhash"])
    s.add_argument("--context-width", type=int)
    s.add_argument("--depth", type=int, default=30, help="SynthID layers (keys)")
    s.add_argument("--ngram-len", type=int, help="SynthID n-gram length (default 5)")
    s.add_argument("--device", default="cpu", help="device generate runs on (KGW green lists "
                   "differ between CPU and CUDA)")
    s.add_argument("--seed", type=int, help="reproducible key (tests only: a key must be secret)")
    s.add_argument("--force", action="store_true", help="overwrite an existing key file")
    s.set_defaults(func=cmd_watermark_keygen)
