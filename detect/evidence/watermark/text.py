"""Text watermark verification from text: KGW green lists and SynthID-Text g-values.

Both schemes are keyed pseudo-random functions of the token sequence. Text written without
the key hits them at a known rate (``gamma`` green tokens for KGW, g-values that are fair coins
for SynthID), so the evidence is a count of hits among independent trials and the decision is
an exact binomial tail at a stated false-positive rate. The keyed functions are transformers'
own logits processors, called on the token ids, so what we score is by construction what
``generate(..., watermarking_config=...)`` embedded.

Three things decide whether detection can work at all, and the key file records all of them:
the scheme parameters, the tokenizer (a different vocabulary gives different ids: the
``tokenizer_sha256`` fingerprint notices), and for KGW the model's vocabulary size and the
device the green lists were drawn on (``torch.randperm`` differs between CPU and CUDA).

``import detect`` stays light: torch, transformers and scipy load inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError
from detect.evidence.watermark import (
    DEFAULT_TARGET_FPR,
    WatermarkResult,
    binomial_sf,
    corrected_alpha,
    decide,
)

KEY_SCHEMA = "unmask.text-watermark-key/1"
SCHEMES = ("kgw", "synthid")

# transformers' defaults (WatermarkingConfig / SynthIDTextWatermarkingConfig)
_KGW_FIELDS = ("greenlist_ratio", "bias", "hashing_key", "seeding_scheme", "context_width")
_SYNTHID_FIELDS = ("keys", "ngram_len", "sampling_table_size", "sampling_table_seed",
                   "context_history_size", "skip_first_ngram_calls")
_COMMON_FIELDS = ("scheme", "name", "tokenizer", "tokenizer_sha256", "vocab_size", "device")
# fields that change which tokens count as hits; `bias` only changes embedding strength
_DETECTION_FIELDS = {"kgw": ("greenlist_ratio", "hashing_key", "seeding_scheme", "context_width",
                             "vocab_size", "device"),
                     "synthid": ("keys", "ngram_len", "sampling_table_size", "sampling_table_seed",
                                 "context_history_size", "device")}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "scheme": (str,), "name": (str, type(None)), "tokenizer": (str, type(None)),
    "tokenizer_sha256": (str, type(None)), "vocab_size": (int, type(None)), "device": (str,),
    "greenlist_ratio": (float, int), "bias": (float, int), "hashing_key": (int,),
    "seeding_scheme": (str,), "context_width": (int,), "keys": (list,), "ngram_len": (int,),
    "sampling_table_size": (int,), "sampling_table_seed": (int,), "context_history_size": (int,),
    "skip_first_ngram_calls": (bool,),
}
# SynthID-paper weighting of tournament layers: linear 10 -> 1, normalised to sum to the depth
_SYNTHID_WEIGHT_RANGE = (10.0, 1.0)


class KeyMismatchWarning(UserWarning):
    """Detection runs with settings that differ from the ones the watermark was embedded with."""


@dataclass
class TextWatermarkKey:
    """Everything needed to embed *and* detect one text watermark, in one JSON file.

    A watermark is only as detectable as its settings are reproducible, so the file carries the
    scheme's parameters together with the tokenizer, its vocabulary fingerprint, the model's
    vocabulary size (KGW draws green lists over it) and the device the random draws ran on.
    """

    scheme: str  # "kgw" | "synthid"
    name: str | None = None
    tokenizer: str | None = None  # hub id or local path, used when no tokenizer is passed
    tokenizer_sha256: str | None = None  # tokenizer_fingerprint() of the embedding tokenizer
    vocab_size: int | None = None  # the *model's* vocab size (config.vocab_size)
    device: str = "cpu"  # torch RNG streams differ per device type
    # KGW (Kirchenbauer et al. 2023)
    greenlist_ratio: float = 0.25
    bias: float = 2.0
    hashing_key: int = 15485863
    seeding_scheme: str = "lefthash"
    context_width: int = 1
    # SynthID-Text (Dathathri et al. 2024)
    keys: list[int] = field(default_factory=list)
    ngram_len: int = 5
    sampling_table_size: int = 2**16
    sampling_table_seed: int = 0
    context_history_size: int = 1024
    skip_first_ngram_calls: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- validation and (de)serialisation ------------------------------------------------
    def validate(self, source: str = "key") -> None:
        """Raise ConfigError naming the field when a setting could not have been used to embed."""

        def bad(fld: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: field '{fld}' {why}")

        if self.scheme not in SCHEMES:
            raise bad("scheme", f"is {self.scheme!r}, expected one of {list(SCHEMES)}")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise bad("vocab_size", f"must be >= 2, got {self.vocab_size}")
        if self.scheme == "kgw":
            if not 0.0 < float(self.greenlist_ratio) < 1.0:
                raise bad("greenlist_ratio", f"must lie in (0, 1), got {self.greenlist_ratio}")
            if self.seeding_scheme not in ("lefthash", "selfhash"):
                raise bad("seeding_scheme",
                          f"is {self.seeding_scheme!r}, expected 'lefthash' or 'selfhash'")
            if self.context_width < 1:
                raise bad("context_width", f"must be >= 1, got {self.context_width}")
            if not 0 <= self.hashing_key < 2**62:
                raise bad("hashing_key", "must be a non-negative integer below 2**62")
        else:
            if not self.keys or not all(isinstance(k, int) and not isinstance(k, bool)
                                        for k in self.keys):
                raise bad("keys", "must be a non-empty list of integers (one per layer)")
            if self.ngram_len < 2:
                raise bad("ngram_len", f"must be >= 2, got {self.ngram_len}")
            if not 2 <= self.sampling_table_size <= 2**24:
                raise bad("sampling_table_size", "must lie in [2, 2**24]")
            if self.context_history_size < 1:
                raise bad("context_history_size", "must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """The fields this scheme uses, with the schema tag (the other scheme's are left out)."""
        names = _COMMON_FIELDS + (_KGW_FIELDS if self.scheme == "kgw" else _SYNTHID_FIELDS)
        d: dict[str, Any] = {"schema": KEY_SCHEMA}
        for n in names:
            v = getattr(self, n)
            d[n] = list(v) if isinstance(v, list) else v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "key") -> TextWatermarkKey:
        """Parse a key mapping; every problem is a ConfigError naming ``source`` and the field."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
        schema = d.get("schema")
        if schema != KEY_SCHEMA:
            raise ConfigError(f"{source}: field 'schema' is {schema!r}, expected {KEY_SCHEMA!r}")
        scheme = d.get("scheme")
        if scheme not in SCHEMES:
            raise ConfigError(f"{source}: field 'scheme' is {scheme!r}, "
                              f"expected one of {list(SCHEMES)}")
        allowed = set(_COMMON_FIELDS) | set(_KGW_FIELDS if scheme == "kgw" else _SYNTHID_FIELDS)
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            if k == "schema":
                continue
            if k not in allowed:
                raise ConfigError(f"{source}: field '{k}' is not a {scheme} key field "
                                  f"(allowed: {sorted(allowed)})")
            types = _FIELD_TYPES[k]
            if (isinstance(v, bool) and bool not in types) or not isinstance(v, types):
                want = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{source}: field '{k}' must be {want}, "
                                  f"got {type(v).__name__} {v!r}")
            kwargs[k] = v
        if scheme == "synthid" and "keys" not in kwargs:
            raise ConfigError(f"{source}: field 'keys' is missing (SynthID needs one per layer)")
        key = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else f.default)
            setattr(key, f.name, kwargs.get(f.name, default))
        key.validate(source)
        return key

    def save(self, path: str | Path) -> Path:
        """Write the key as JSON. It is a secret: whoever holds it can also forge or strip marks."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextWatermarkKey:
        """Read a key file; a malformed file is a ConfigError naming the file and the field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read key file ({e.__class__.__name__}: {e})") from e
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
        key = cls.from_dict(d, source=str(path))
        if key.name is None:
            key.name = path.name
        return key

    def replace(self, **changes: Any) -> TextWatermarkKey:
        """A copy with some settings changed (validated), e.g. a detection-time override."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown key field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    @property
    def fingerprint(self) -> str:
        """A short hash of the key's detection settings: safe to print, unlike the key."""
        fields = {k: getattr(self, k) for k in ("scheme",) + _DETECTION_FIELDS[self.scheme]}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    # -- transformers interop --------------------------------------------------------------
    def to_transformers(self) -> Any:
        """The transformers config that embeds this watermark in ``generate``."""
        from transformers import SynthIDTextWatermarkingConfig, WatermarkingConfig

        if self.scheme == "kgw":
            return WatermarkingConfig(
                greenlist_ratio=float(self.greenlist_ratio), bias=float(self.bias),
                hashing_key=int(self.hashing_key), seeding_scheme=self.seeding_scheme,
                context_width=int(self.context_width))
        return SynthIDTextWatermarkingConfig(
            ngram_len=int(self.ngram_len), keys=list(self.keys),
            context_history_size=int(self.context_history_size),
            sampling_table_seed=int(self.sampling_table_seed),
            sampling_table_size=int(self.sampling_table_size),
            skip_first_ngram_calls=bool(self.skip_first_ngram_calls))

    @classmethod
    def from_transformers(cls, config: Any, tokenizer: Any = None, *,
                          vocab_size: int | None = None, device: str = "cpu",
                          name: str | None = None) -> TextWatermarkKey:
        """Wrap a transformers watermarking config with the tokenizer it will be used with.

        ``vocab_size`` should be the model's ``config.vocab_size`` (what generate draws green
        lists over); it defaults to ``len(tokenizer)``, which is the same for most models.
        """
        params = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        scheme = "kgw" if "greenlist_ratio" in params else "synthid"
        fields = _KGW_FIELDS if scheme == "kgw" else _SYNTHID_FIELDS
        kwargs = {k: (list(params[k]) if k == "keys" else params[k]) for k in fields if k in params}
        tok_id = sha = None
        if tokenizer is not None:
            tok = _resolve_tokenizer(tokenizer, None)
            tok_id = tokenizer if isinstance(tokenizer, str | Path) else getattr(
                tok, "name_or_path", None)
            tok_id = str(tok_id) if tok_id else None
            sha = tokenizer_fingerprint(tok)
            if vocab_size is None:
                vocab_size = len(tok)
        return cls(scheme=scheme, name=name, tokenizer=tok_id, tokenizer_sha256=sha,
                   vocab_size=vocab_size, device=device, **kwargs)

    @classmethod
    def new(cls, scheme: str, tokenizer: Any = None, *, vocab_size: int | None = None,
            depth: int = 30, seed: int | None = None, name: str | None = None,
            **params: Any) -> TextWatermarkKey:
        """A fresh random key (from ``secrets`` unless ``seed`` is given, for tests/benchmarks).

        transformers' defaults are public constants; a deployed watermark needs its own secret.
        """
        import random
        import secrets

        rnd = random.Random(seed) if seed is not None else secrets.SystemRandom()
        if scheme == "kgw":
            params.setdefault("hashing_key", rnd.randrange(1, 2**31))
        elif scheme == "synthid":
            params.setdefault("keys", [rnd.randrange(1, 2**31) for _ in range(depth)])
        else:
            raise ConfigError(f"unknown text watermark scheme {scheme!r}; "
                              f"expected one of {list(SCHEMES)}")
        cfg = cls(scheme=scheme, **params)
        if tokenizer is None:
            return dataclasses.replace(cfg, name=name, vocab_size=vocab_size)
        return cls.from_transformers(cfg.to_transformers(), tokenizer, vocab_size=vocab_size,
                                     device=cfg.device, name=name)


def key_differences(embed_key: TextWatermarkKey, detect_key: TextWatermarkKey) -> list[str]:
    """Human-readable list of the settings that differ between embedding and detection.

    Only settings that change which tokens count as hits are compared (KGW's ``bias`` only
    changes how strongly the mark was embedded), plus the tokenizer fingerprint when both are
    known. An empty list means detection reproduces the embedding exactly.
    """
    if embed_key.scheme != detect_key.scheme:
        return [f"scheme: embedded with {embed_key.scheme!r}, detecting {detect_key.scheme!r}"]
    out = []
    for k in _DETECTION_FIELDS[embed_key.scheme]:
        a, b = getattr(embed_key, k), getattr(detect_key, k)
        if a != b and not (k == "vocab_size" and (a is None or b is None)):
            shown = ("<differs>" if k in ("hashing_key", "keys") else None)
            out.append(f"{k}: embedded with {shown or repr(a)}, detecting with {shown or repr(b)}")
    a, b = embed_key.tokenizer_sha256, detect_key.tokenizer_sha256
    if a and b and a != b:
        out.append(f"tokenizer: vocabulary fingerprint {b[:12]} differs from the embedding "
                   f"tokenizer's {a[:12]}; token ids will not line up")
    return out


# ---------------------------------------------------------------------------------------------
# tokenizer helpers

_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the vocabulary (token -> id, added tokens included), the part of a tokenizer
    that decides which ids a text becomes; a renamed copy of the same tokenizer matches."""
    try:
        return _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])),
                      ensure_ascii=False, separators=(",", ":"))
    sha = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    with contextlib.suppress(TypeError):
        _FINGERPRINTS[tokenizer] = sha
    return sha


def _resolve_tokenizer(tokenizer: Any, key: TextWatermarkKey | None) -> Any:
    """The tokenizer object: the one given, a path/hub id given, or the one the key names."""
    src = tokenizer if tokenizer is not None else (key.tokenizer if key is not None else None)
    if src is None:
        raise ConfigError("no tokenizer: pass one, or save the key with its 'tokenizer' field")
    if not isinstance(src, str | Path):
        return src
    return _load_tokenizer(str(src))


@functools.lru_cache(maxsize=4)
def _load_tokenizer(src: str) -> Any:
    """A tokenizer by path or hub id, loaded once per process (a scan checks every text file
    against the same key)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(src)
    except Exception as e:  # transformers raises OSError/ValueError/... depending on the cause
        raise ModelError(f"{src}: cannot load tokenizer ({e.__class__.__name__}: {e})") from e


def _encode(text: str, tok: Any) -> tuple[list[int], list[tuple[int, int]] | None]:
    """Token ids without special tokens (generation output is decoded without them), and each
    token's character span when the tokenizer can tell (fast tokenizers)."""
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        return list(tok(text, add_special_tokens=False)["input_ids"]), None


def _as_id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        if len(ids) != 1:
            raise ConfigError(f"expected one sequence of token ids, got a batch of {len(ids)}")
        ids = ids[0]
    return [int(i) for i in ids]


def retokenization_drift(ids: Sequence[int], tokenizer: Any) -> dict[str, Any]:
    """How many tokens change when generated ids are decoded to text and encoded again.

    Detection from text sees the re-encoded ids; BPE merges across the boundaries the model
    chose are not always the ones the tokenizer picks, and each changed token is a token whose
    green/g-value evidence is lost (or, for context schemes, also its neighbours')."""
    ids = _as_id_list(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    again, _ = _encode(text, tokenizer)
    sm = difflib.SequenceMatcher(a=ids, b=again, autojunk=False)
    changed = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes()
                  if op != "equal")
    return {"n_ids": len(ids), "n_retokenized": len(again), "n_changed": changed,
            "fraction_changed": changed / max(1, len(ids)), "identical": again == ids}


# ---------------------------------------------------------------------------------------------
# statistics


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def kgw_min_tokens(greenlist_ratio: float, alpha: float, method: str = "binomial") -> int:
    """Fewest scored tokens at which even an all-green text reaches ``alpha``.

    Below it no outcome can be significant, so "absent" would be an empty statement and the
    status is "insufficient". Exact test: gamma**n <= alpha, so n = ceil(log alpha / log gamma)
    (gamma 0.25, alpha 1e-6: 10 tokens). Normal test: z_max = sqrt(n (1-gamma)/gamma) >=
    z_alpha, so n = ceil(z_alpha**2 gamma / (1-gamma)) (8 tokens: the normal tail is too
    optimistic that far out, which is why the exact test is the default).
    """
    g = float(greenlist_ratio)
    if method == "binomial":
        return max(1, math.ceil(math.log(alpha) / math.log(g) - 1e-9))
    if method == "normal":
        from scipy.stats import norm

        return max(1, math.ceil(norm.isf(alpha) ** 2 * g / (1 - g) - 1e-9))
    raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {method!r}")


def synthid_min_tokens(depth: int, alpha: float, null_mean: float = 0.5) -> int:
    """Fewest scored tokens at which g-values all equal to 1 reach ``alpha`` under the exact
    binomial null on ``depth`` bits per token: ceil(log alpha / (depth log q))."""
    return max(1, math.ceil(math.log(alpha) / (depth * math.log(null_mean)) - 1e-9))


@dataclass
class _Evidence:
    """Per-token evidence: counted[i] says token i is scored, hits[i] how many of its
    ``trials`` keyed bits came out 1 (green for KGW; g-values summed over layers for SynthID),
    under the null each bit being Bernoulli(p0) and independent."""

    counted: Any  # np.ndarray[bool], one per token
    hits: Any  # np.ndarray[float]
    trials: int
    p0: float


@functools.lru_cache(maxsize=8)
def _kgw_processor(vocab_size: int, device: str, greenlist_ratio: float, hashing_key: int,
                   seeding_scheme: str, context_width: int) -> Any:
    """transformers' processor for these settings; cached because building it draws a
    permutation of a million entries. ``_get_greenlist_ids`` reseeds its generator on every
    call, so a shared instance gives the same lists (not thread-safe: one thread at a time)."""
    from transformers.generation.logits_process import WatermarkLogitsProcessor

    return WatermarkLogitsProcessor(vocab_size=vocab_size, device=device,
                                    greenlist_ratio=greenlist_ratio, hashing_key=hashing_key,
                                    seeding_scheme=seeding_scheme, context_width=context_width)


def _kgw_evidence(ids: list[int], key: TextWatermarkKey, ignore_repeated_ngrams: bool
                  ) -> _Evidence:
    """Green/not green for every token, exactly as WatermarkLogitsProcessor drew the lists."""
    import numpy as np
    import torch

    proc = _kgw_processor(int(key.vocab_size), key.device, float(key.greenlist_ratio),
                          int(key.hashing_key), key.seeding_scheme, int(key.context_width))
    selfhash = key.seeding_scheme == "selfhash"
    # the same n-gram layout as transformers' WatermarkDetector: the scored token and the
    # context_width tokens before it (selfhash seeds on the token itself, so one fewer)
    n = int(key.context_width) + 1 - int(selfhash)
    counted = np.zeros(len(ids), dtype=bool)
    hits = np.zeros(len(ids), dtype=float)
    greenlists: dict[tuple[int, ...], set[int]] = {}
    seen: set[tuple[int, ...]] = set()
    for i in range(n - 1, len(ids)):
        ngram = tuple(ids[i - n + 1:i + 1])
        prefix = ngram if selfhash else ngram[:-1]
        if prefix not in greenlists:
            t = torch.tensor(prefix, dtype=torch.long, device=key.device)
            greenlists[prefix] = set(proc._get_greenlist_ids(t).tolist())
        hits[i] = float(ngram[-1] in greenlists[prefix])
        # a repeated (context, token) n-gram repeats its colour: it is not a new coin flip
        counted[i] = not (ignore_repeated_ngrams and ngram in seen)
        seen.add(ngram)
    hits[~counted] = 0.0
    return _Evidence(counted=counted, hits=hits, trials=1, p0=float(key.greenlist_ratio))


def _synthid_evidence(ids: list[int], key: TextWatermarkKey, eos_token_id: int | None
                      ) -> tuple[_Evidence, Any]:
    """g-values of every scored token (transformers' processor), its repetition and EOS masks,
    and the null rate q = the fraction of ones in the keyed sampling table."""
    import numpy as np
    import torch
    from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

    proc = SynthIDTextWatermarkLogitsProcessor(
        ngram_len=int(key.ngram_len), keys=list(key.keys),
        sampling_table_size=int(key.sampling_table_size),
        sampling_table_seed=int(key.sampling_table_seed),
        context_history_size=int(key.context_history_size), device=key.device)
    depth, n = len(key.keys), int(key.ngram_len)
    # Null: a g-value is sampling_table[h mod size], h an LCG hash of (n-gram, layer key).
    # For text that does not depend on the key, h mod size is ~uniform, so each g-value is
    # Bernoulli(q) with q the table's mean (0.5 up to sampling noise, taken exactly here).
    # Layers use distinct keys -> distinct table slots; distinct n-grams -> distinct hashes;
    # repeated contexts (which would repeat g-values) are masked below, as the reference does.
    q = float(proc.sampling_table.double().mean())
    counted = np.zeros(len(ids), dtype=bool)
    hits = np.zeros(len(ids), dtype=float)
    g_full = np.zeros((len(ids), depth), dtype=float)
    if len(ids) >= n:
        t = torch.tensor([ids], dtype=torch.long, device=key.device)
        with torch.no_grad():
            g = proc.compute_g_values(t)[0].cpu().numpy().astype(float)  # [L-n+1, depth]
            mask = proc.compute_context_repetition_mask(t)[0].cpu().numpy().astype(bool)
            if eos_token_id is not None:
                eos = proc.compute_eos_token_mask(t, int(eos_token_id))[0, n - 1:]
                mask &= eos.cpu().numpy().astype(bool)
        counted[n - 1:] = mask
        g_full[n - 1:] = g * mask[:, None]
        hits = g_full.sum(axis=1)
    return _Evidence(counted=counted, hits=hits, trials=depth, p0=q), g_full


def synthid_layer_weights(depth: int) -> list[float]:
    """SynthID's weighted-mean layer weights: linear from 10 (first tournament layer, which
    carries the most signal) down to 1, normalised to sum to ``depth``."""
    hi, lo = _SYNTHID_WEIGHT_RANGE
    w = [hi - (hi - lo) * i / (depth - 1) for i in range(depth)] if depth > 1 else [1.0]
    s = sum(w)
    return [x * depth / s for x in w]


# ---------------------------------------------------------------------------------------------
# verification


def _prepare(key: TextWatermarkKey, scheme: str, tokenizer: Any,
             overrides: Mapping[str, Any] | None, need_tokenizer: bool
             ) -> tuple[TextWatermarkKey, Any, list[str]]:
    """The detection key (key + overrides), the tokenizer, and the mismatch warnings."""
    if key.scheme != scheme:
        raise ConfigError(f"key {key.name or ''!s} is a {key.scheme!r} key, not {scheme!r}")
    dkey = key.replace(**dict(overrides)) if overrides else key
    dkey.validate("detection settings")
    tok = _resolve_tokenizer(tokenizer, key) if (need_tokenizer or tokenizer is not None) \
        else None
    notes = []
    if tok is not None:
        fp = tokenizer_fingerprint(tok)
        if dkey.tokenizer_sha256 != fp and "tokenizer_sha256" not in (overrides or {}):
            dkey = dkey.replace(tokenizer_sha256=fp)
        if key.vocab_size is not None and len(tok) > key.vocab_size:
            notes.append(f"vocab_size: the tokenizer has {len(tok)} tokens but the key's model "
                         f"vocabulary is {key.vocab_size}; ids beyond it can never be green")
    if scheme == "kgw" and dkey.vocab_size is None:
        if tok is None:
            raise ConfigError("KGW detection needs the model's vocab_size: set it in the key")
        dkey = dkey.replace(vocab_size=len(tok))
        notes.append(f"vocab_size: the key does not record the model's vocabulary size; "
                     f"assuming len(tokenizer) = {len(tok)}")
    if dkey.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"the key's green lists were drawn on {dkey.device!r}, which is not "
                              "available here; CPU draws differ, so detection cannot reproduce "
                              "them")
    msgs = key_differences(key, dkey) + notes
    for m in msgs:
        warnings.warn(f"text watermark detection differs from its key: {m}", KeyMismatchWarning,
                      stacklevel=3)
    return dkey, tok, msgs


def _window_test(hits: float, n_counted: int, ev: _Evidence) -> dict[str, Any]:
    trials = n_counted * ev.trials
    p0 = ev.p0
    if trials == 0:
        return {"z": None, "p_binomial": 1.0, "p_normal": 1.0}
    z = (hits - p0 * trials) / math.sqrt(trials * p0 * (1 - p0))
    return {"z": z, "p_binomial": binomial_sf(math.ceil(hits), trials, p0),
            "p_normal": _normal_sf(z)}


def _result(scheme: str, key: TextWatermarkKey, p: float | None, target_fpr: float, n_tests: int,
            statistic: dict[str, Any], details: dict[str, Any]) -> WatermarkResult:
    status, alpha = decide(p, target_fpr, n_tests)
    return WatermarkResult(kind="text", scheme=scheme, payload=key.name or "user", status=status,
                           p_value=p, alpha=alpha, target_fpr=target_fpr, n_tests=n_tests,
                           statistic=statistic, details=details)


def _check_kgw(ids: list[int], dkey: TextWatermarkKey, msgs: list[str], target_fpr: float,
               n_tests: int, min_tokens: int | None, ignore_repeated_ngrams: bool,
               p_method: str, extra: dict[str, Any]) -> WatermarkResult:
    alpha = corrected_alpha(target_fpr, n_tests)
    mt = min_tokens if min_tokens is not None else kgw_min_tokens(dkey.greenlist_ratio, alpha,
                                                                   p_method)
    ev = _kgw_evidence(ids, dkey, ignore_repeated_ngrams)
    n, green = int(ev.counted.sum()), float(ev.hits.sum())
    t = _window_test(green, n, ev)
    stat = {"tokens": len(ids), "tokens_scored": n, "green": int(green),
            "green_fraction": green / n if n else None, "gamma": float(dkey.greenlist_ratio),
            "z": t["z"], "p_binomial": t["p_binomial"], "p_normal": t["p_normal"],
            "min_tokens": mt}
    p = None if n < mt else (t["p_binomial"] if p_method == "binomial" else t["p_normal"])
    details = {"key_fingerprint": dkey.fingerprint, "seeding_scheme": dkey.seeding_scheme,
               "context_width": dkey.context_width, "ignore_repeated_ngrams":
               ignore_repeated_ngrams, "p_method": p_method, "warnings": msgs, **extra}
    if n < mt:
        details["reason"] = (f"{n} scored tokens; at least {mt} are needed before even an "
                             f"all-green text could reach alpha={alpha:g}")
    return _result("kgw", dkey, p, target_fpr, n_tests, stat, details)


def verify_kgw_ids(ids: Any, key: TextWatermarkKey, *, target_fpr: float = DEFAULT_TARGET_FPR,
                   n_tests: int = 1, min_tokens: int | None = None,
                   ignore_repeated_ngrams: bool = True, p_method: str = "binomial",
                   overrides: Mapping[str, Any] | None = None, tokenizer: Any = None
                   ) -> WatermarkResult:
    """KGW check on token ids (the generated part only: a prompt was not watermarked).

    Each scored token is green with probability ``gamma`` in text written without the key, so
    the green count is Binomial(n, gamma) and the p-value is its exact upper tail (the normal
    tail of the z-score, which transformers reports, understates it 3-40x near 1e-6 because the
    binomial is skewed at gamma=0.25; ``p_method="normal"`` gives it, and both are in
    ``statistic``). transformers' green list holds int(V * gamma) tokens, so the true null rate
    is at most gamma: testing against gamma is exact or conservative. Repeated (context, token)
    n-grams are scored once (``ignore_repeated_ngrams``; off by default in transformers): a
    repeat repeats its colour, and counting it again would make repetitive human text look
    watermarked. A ``tokenizer``, if given, is checked against the key's fingerprint.
    """
    if p_method not in ("binomial", "normal"):
        raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {p_method!r}")
    dkey, _, msgs = _prepare(key, "kgw", tokenizer, overrides, need_tokenizer=False)
    return _check_kgw(_as_id_list(ids), dkey, msgs, target_fpr, n_tests, min_tokens,
                      ignore_repeated_ngrams, p_method, {})


def verify_kgw(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
               target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
               min_tokens: int | None = None, ignore_repeated_ngrams: bool = True,
               p_method: str = "binomial", overrides: Mapping[str, Any] | None = None
               ) -> WatermarkResult:
    """Is ``text`` KGW-watermarked under ``key``? Tokenises (no special tokens) and scores.

    ``tokenizer`` is an object, a path or a hub id; by default the one the key names.
    ``min_tokens`` defaults to :func:`kgw_min_tokens` at the corrected alpha; ``overrides``
    (e.g. ``{"greenlist_ratio": 0.5}``) change detection settings and raise a
    KeyMismatchWarning listing what differs from the key. See :func:`verify_kgw_ids`.
    """
    if p_method not in ("binomial", "normal"):
        raise ConfigError(f"p-value method must be 'binomial' or 'normal', got {p_method!r}")
    dkey, tok, msgs = _prepare(key, "kgw", tokenizer, overrides, need_tokenizer=True)
    ids, _ = _encode(text, tok)
    return _check_kgw(ids, dkey, msgs, target_fpr, n_tests, min_tokens, ignore_repeated_ngrams,
                      p_method, {"chars": len(text)})


def _check_synthid(ids: list[int], dkey: TextWatermarkKey, msgs: list[str], target_fpr: float,
                   n_tests: int, min_tokens: int | None, score: str, eos_token_id: int | None,
                   vocab: int | None, extra: dict[str, Any]) -> WatermarkResult:
    if score not in ("mean", "weighted"):
        raise ConfigError(f"SynthID score must be 'mean' or 'weighted', got {score!r}")
    alpha = corrected_alpha(target_fpr, n_tests)
    depth = len(dkey.keys)
    ev, g = _synthid_evidence(ids, dkey, eos_token_id)
    q = ev.p0
    n = int(ev.counted.sum())
    w = synthid_layer_weights(depth)
    s1, s2 = sum(w), sum(x * x for x in w)
    if min_tokens is None:
        if score == "mean":
            min_tokens = synthid_min_tokens(depth, alpha, q)
        else:  # all-one g-values: z = sqrt(n (1-q)/q) * s1 / sqrt(s2) must reach z_alpha
            from scipy.stats import norm

            min_tokens = max(1, math.ceil(norm.isf(alpha) ** 2 * q / (1 - q) * s2 / s1**2))
    t = _window_test(float(ev.hits.sum()), n, ev)
    wsum = float((g * [w]).sum())
    z_w = (wsum - q * n * s1) / math.sqrt(n * q * (1 - q) * s2) if n else None
    p_w = _normal_sf(z_w) if z_w is not None else 1.0
    stat = {"tokens": len(ids), "tokens_scored": n, "depth": depth, "null_mean": q,
            "mean": float(ev.hits.sum()) / (n * depth) if n else None,
            "weighted_mean": wsum / (n * depth) if n else None, "z": t["z"],
            "p_binomial": t["p_binomial"], "z_weighted": z_w, "p_weighted": p_w,
            "min_tokens": min_tokens}
    p = None if n < min_tokens else (t["p_binomial"] if score == "mean" else p_w)
    # transformers' expected_mean_g_value: one layer, a uniform LM over the vocabulary
    ideal = 0.5 + 0.25 * (1 - 1 / vocab) if vocab else 0.75
    details = {"key_fingerprint": dkey.fingerprint, "ngram_len": dkey.ngram_len, "score": score,
               "ideal_watermarked_mean": ideal, "warnings": msgs, **extra}
    if n < min_tokens:
        details["reason"] = (f"{n} scored tokens; at least {min_tokens} are needed before even "
                             f"all-one g-values could reach alpha={alpha:g}")
    return _result("synthid", dkey, p, target_fpr, n_tests, stat, details)


def verify_synthid_ids(ids: Any, key: TextWatermarkKey, *,
                       target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                       min_tokens: int | None = None, score: str = "mean",
                       eos_token_id: int | None = None,
                       overrides: Mapping[str, Any] | None = None, tokenizer: Any = None
                       ) -> WatermarkResult:
    """SynthID-Text check on token ids, without a trained detector.

    Under no watermark every unmasked g-value is an independent Bernoulli(q) coin, q = the
    sampling table's mean (see ``_synthid_evidence``), so ``score="mean"`` uses the exact
    binomial tail of the g-value sum over tokens x layers. ``score="weighted"`` uses the
    SynthID paper's layer weights (10 -> 1), which follow the signal's decay over tournament
    layers, with a normal tail of the weighted sum (symmetric bits: the approximation is close).
    Both scores are in ``statistic`` whichever decides. Masks as transformers' detector:
    repeated contexts, and everything from the first EOS on.
    """
    dkey, tok, msgs = _prepare(key, "synthid", tokenizer, overrides, need_tokenizer=False)
    if eos_token_id is None and tok is not None:
        eos_token_id = getattr(tok, "eos_token_id", None)
    vocab = dkey.vocab_size or (len(tok) if tok is not None else None)
    return _check_synthid(_as_id_list(ids), dkey, msgs, target_fpr, n_tests, min_tokens, score,
                          eos_token_id, vocab, {})


def verify_synthid(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
                   target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                   min_tokens: int | None = None, score: str = "mean",
                   overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """Is ``text`` SynthID-watermarked under ``key``? Tokenises (no special tokens) and scores;
    see :func:`verify_synthid_ids`."""
    dkey, tok, msgs = _prepare(key, "synthid", tokenizer, overrides, need_tokenizer=True)
    ids, _ = _encode(text, tok)
    return _check_synthid(ids, dkey, msgs, target_fpr, n_tests, min_tokens, score,
                          getattr(tok, "eos_token_id", None), dkey.vocab_size or len(tok),
                          {"chars": len(text)})


def verify_text(text: str, key: TextWatermarkKey, tokenizer: Any = None, **kwargs: Any
                ) -> WatermarkResult:
    """Dispatch on the key's scheme (one front door for scan/CLI code)."""
    fn = verify_kgw if key.scheme == "kgw" else verify_synthid
    return fn(text, key, tokenizer, **kwargs)


# ---------------------------------------------------------------------------------------------
# windowed scan


def _windows(n_tokens: int, sizes: Sequence[int], stride: int | None) -> list[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for w in sizes:
        if w >= n_tokens:
            continue
        s = max(1, stride if stride is not None else w // 4)
        starts = list(range(0, n_tokens - w + 1, s))
        if starts[-1] != n_tokens - w:
            starts.append(n_tokens - w)  # cover the tail too
        out.update((a, a + w) for a in starts)
    out.add((0, n_tokens))  # the whole text is one of the tests
    return sorted(out)


def _scan(text: str, key: TextWatermarkKey, scheme: str, tokenizer: Any, window: Any,
          stride: int | None, target_fpr: float, n_tests: int, min_tokens: int | None,
          overrides: Mapping[str, Any] | None, ignore_repeated_ngrams: bool) -> WatermarkResult:
    import numpy as np

    dkey, tok, msgs = _prepare(key, scheme, tokenizer, overrides, need_tokenizer=True)
    ids, offsets = _encode(text, tok)
    if scheme == "kgw":
        ev = _kgw_evidence(ids, dkey, ignore_repeated_ngrams)
    else:
        ev, _ = _synthid_evidence(ids, dkey, getattr(tok, "eos_token_id", None))
    sizes = [window] if isinstance(window, int) else list(window)
    wins = _windows(len(ids), sizes, stride)
    m = len(wins)
    alpha_all = corrected_alpha(target_fpr, n_tests * m)
    if min_tokens is None:
        min_tokens = (kgw_min_tokens(dkey.greenlist_ratio, alpha_all) if scheme == "kgw"
                      else synthid_min_tokens(len(dkey.keys), alpha_all, ev.p0))
    c_cnt = np.concatenate([[0], np.cumsum(ev.counted)])
    c_hit = np.concatenate([[0.0], np.cumsum(ev.hits)])
    best: dict[str, Any] | None = None
    for a, b in wins:
        n = int(c_cnt[b] - c_cnt[a])
        if n < min_tokens:
            continue
        hits = float(c_hit[b] - c_hit[a])
        t = _window_test(hits, n, ev)
        if best is None or (t["p_binomial"], -(t["z"] or 0)) < (best["p"], -(best["z"] or 0)):
            best = {"tokens": (a, b), "tokens_scored": n, "hits": hits, "z": t["z"],
                    "p": t["p_binomial"]}
    whole_n = int(ev.counted.sum())
    whole = _window_test(float(ev.hits.sum()), whole_n, ev)
    stat: dict[str, Any] = {
        "tokens": len(ids), "windows_tested": m, "window_sizes": sizes,
        "stride": stride if stride is not None else "window/4",
        "whole_text": {"tokens_scored": whole_n, "z": whole["z"], "p": whole["p_binomial"]},
    }
    details = {"key_fingerprint": dkey.fingerprint, "chars": len(text), "warnings": msgs,
               "correction": (f"Bonferroni over the {m} windows tested (all sizes and offsets, the "
                              "whole text included): a window is significant when m * p <= "
                              "target_fpr / n_tests; conservative, as overlapping windows are "
                              "positively correlated"), "min_tokens_per_window": min_tokens}
    p = None
    if best is not None:
        a, b = best["tokens"]
        if offsets is not None:
            span = (int(offsets[a][0]), int(offsets[b - 1][1]))
        else:
            span = (len(tok.decode(ids[:a])), len(tok.decode(ids[:b])))
        frac_key = "green_fraction" if scheme == "kgw" else "mean"
        stat["best_window"] = {
            "token_span": [a, b], "char_span": list(span), "tokens_scored": best["tokens_scored"],
            frac_key: best["hits"] / (best["tokens_scored"] * ev.trials), "z": best["z"],
            "p": best["p"], "p_corrected": min(1.0, best["p"] * m)}
        p = best["p"]
    else:
        details["reason"] = (f"no window has {min_tokens} scored tokens, the fewest at which the "
                             f"corrected alpha={alpha_all:g} is reachable")
    return _result(scheme, dkey, p, target_fpr, n_tests * m, stat, details)


def scan_kgw(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
             window: int | Sequence[int] = (32, 64, 128, 256), stride: int | None = None,
             target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
             min_tokens: int | None = None, ignore_repeated_ngrams: bool = True,
             overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """Find a KGW-watermarked passage inside longer, mostly human text.

    A pasted watermarked paragraph is diluted in a whole-text test; scoring sliding windows
    (several sizes, default stride a quarter window, the whole text included) finds it. The
    best window's exact binomial p-value is Bonferroni-corrected for every window tried, so the
    false-positive rate on a clean text stays at ``target_fpr``: ``n_tests`` in the result is
    ``n_tests * windows``. ``statistic["best_window"]`` has its token and character span.
    """
    return _scan(text, key, "kgw", tokenizer, window, stride, target_fpr, n_tests, min_tokens,
                 overrides, ignore_repeated_ngrams)


def scan_synthid(text: str, key: TextWatermarkKey, tokenizer: Any = None, *,
                 window: int | Sequence[int] = (32, 64, 128, 256), stride: int | None = None,
                 target_fpr: float = DEFAULT_TARGET_FPR, n_tests: int = 1,
                 min_tokens: int | None = None,
                 overrides: Mapping[str, Any] | None = None) -> WatermarkResult:
    """The windowed scan of :func:`scan_kgw` on SynthID g-values (exact binomial per window)."""
    return _scan(text, key, "synthid", tokenizer, window, stride, target_fpr, n_tests,
                 min_tokens, overrides, True)
