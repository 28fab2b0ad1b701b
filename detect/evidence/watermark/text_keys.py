"""Text watermark keys: what a KGW or SynthID-Text detection needs to reproduce the keyed
functions (the scheme's parameters, the tokenizer and its vocabulary fingerprint, for KGW the
model's vocabulary size and the device the green lists were drawn on), saved as JSON, and the
tokenizer helpers that turn a text into the ids the key scores. transformers loads inside the
functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError, ModelError

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
            tok = resolve_tokenizer(tokenizer, None)
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


def resolve_tokenizer(tokenizer: Any, key: TextWatermarkKey | None) -> Any:
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


def encode(text: str, tok: Any) -> tuple[list[int], list[tuple[int, int]] | None]:
    """Token ids without special tokens (generation output is decoded without them), and each
    token's character span when the tokenizer can tell (fast tokenizers)."""
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        return list(tok(text, add_special_tokens=False)["input_ids"]), None


def as_id_list(ids: Any) -> list[int]:
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
    ids = as_id_list(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    again, _ = encode(text, tokenizer)
    sm = difflib.SequenceMatcher(a=ids, b=again, autojunk=False)
    changed = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes()
                  if op != "equal")
    return {"n_ids": len(ids), "n_retokenized": len(again), "n_changed": changed,
            "fraction_changed": changed / max(1, len(ids)), "identical": again == ids}
