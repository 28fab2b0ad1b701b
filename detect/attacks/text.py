"""Attacks on texts: what someone does to a generated text so a detector misses it.

The text counterpart of :mod:`detect.attacks`: keyword parameters, ``__call__`` on a
``str``, ``describe()`` for the record. Each is deterministic for its parameters, its ``seed``
and the input text (the text seeds the generator, so two texts get different edits), which
lets a benchmark be rerun edit for edit. Two of them (lookalikes, zero-width characters) only
disguise tokens and are undone by :func:`detect.io.normalize.normalize`; the others change
the words themselves and measure how the detectors degrade.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Any

import numpy as np

from detect.attacks import Attack
from detect.core.errors import ConfigError
from detect.io.normalize import HOMOGLYPHS

__all__ = ["CopyPasteMix", "Homoglyphs", "TextAttack", "WordDelete", "WordSubstitute", "ZeroWidth"]

_LETTER_PAIR_RE = re.compile(r"(?<=[^\W\d_])(?=[^\W\d_])")
_WORD_RE = re.compile(r"\w+(?:['’]\w+)*")  # what fractions of "words" count
_ALPHA_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SPACE_SPLIT_RE = re.compile(r"(\s+)")
# a sentence ends at . ! ? … (plus closing quotes or brackets) before a space, or at a line end
_SENTENCE_RE = re.compile(r"\S[^\n]*?(?:[.!?…]+[\"'”’)\]]*(?=\s|$)|(?=\n)|$)")


def _lookalikes() -> dict[str, tuple[str, ...]]:
    """ASCII letter -> its Cyrillic and Greek lookalikes, from the table normalize folds."""
    table: dict[str, list[str]] = {}
    for glyph, ascii_letter in HOMOGLYPHS.items():
        if unicodedata.name(glyph).startswith(("CYRILLIC", "GREEK")):
            table.setdefault(ascii_letter, []).append(glyph)
    return {k: tuple(v) for k, v in sorted(table.items())}


_LOOKALIKES = _lookalikes()
_ELIGIBLE_RE = re.compile("[" + "".join(_LOOKALIKES) + "]")


class TextAttack(Attack):
    """Common ground: a fraction in [0, 1], a seed, and a generator seeded by the text."""

    name = "text-attack"
    modality = "text"

    def __init__(self, fraction: float = 0.1, seed: int = 0):
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"{type(self).__name__}: fraction must be in [0, 1], got {fraction}")
        self.fraction, self.seed = fraction, int(seed)

    def params(self) -> dict[str, Any]:
        # state left by the last call (``last_span_``...) is not a parameter
        return {k: v for k, v in super().params().items() if not k.endswith("_")}

    def _rng(self, text: str) -> np.random.Generator:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        salt = zlib.crc32(type(self).__name__.encode())  # attacks of one seed stay independent
        return np.random.default_rng([self.seed, salt, int.from_bytes(digest[:8], "big")])

    def _pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Sorted indices of round(fraction * n) of n candidates, without repeats."""
        k = min(n, round(self.fraction * n))
        return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=int)

    def __call__(self, text: str) -> str:  # type: ignore[override]
        raise NotImplementedError


class Homoglyphs(TextAttack):
    """Swap a fraction of the Latin letters that have a Cyrillic or Greek twin for that twin:
    the text reads the same, the tokenizer sees rare tokens."""

    name = "text-homoglyph"

    def __call__(self, text: str) -> str:
        rng = self._rng(text)
        positions = [m.start() for m in _ELIGIBLE_RE.finditer(text)]
        chars = list(text)
        for i in self._pick(rng, len(positions)):
            p = positions[i]
            options = _LOOKALIKES[chars[p]]
            chars[p] = options[int(rng.integers(len(options)))]
        return "".join(chars)


class ZeroWidth(TextAttack):
    """Insert an invisible character between a fraction of the pairs of adjacent letters,
    splitting words into pieces the tokenizer has rarely seen."""

    name = "text-zerowidth"

    def __init__(self, fraction: float = 0.1, seed: int = 0,
                 chars: str = "\u200b\u200c\u200d\u2060\ufeff"):
        super().__init__(fraction, seed)
        if not chars:
            raise ConfigError("ZeroWidth: chars must not be empty")
        self.chars = str(chars)

    def __call__(self, text: str) -> str:
        rng = self._rng(text)
        cuts = [m.start() for m in _LETTER_PAIR_RE.finditer(text)]
        pieces, last = [], 0
        for i in self._pick(rng, len(cuts)):
            pieces += [text[last:cuts[i]], self.chars[int(rng.integers(len(self.chars)))]]
            last = cuts[i]
        pieces.append(text[last:])
        return "".join(pieces)


class WordDelete(TextAttack):
    """Delete a fraction of the words (whitespace-separated tokens with a letter or digit).
    Line breaks around a deleted word survive, so paragraphs stay paragraphs."""

    name = "text-delete"

    def __call__(self, text: str) -> str:
        rng = self._rng(text)
        parts = _SPACE_SPLIT_RE.split(text)
        words, seps = parts[0::2], parts[1::2]
        eligible = [j for j, w in enumerate(words) if re.search(r"\w", w)]
        deleted = {eligible[i] for i in self._pick(rng, len(eligible))}
        out: list[str] = []
        sep: str | None = None  # separator owed before the next kept word
        for j, word in enumerate(words):
            if j not in deleted:
                if out and sep is not None:
                    out.append(sep)
                out.append(word)
                sep = None
            # across a deleted word keep the separator with more line breaks
            if j < len(seps) and (sep is None or seps[j].count("\n") > sep.count("\n")):
                sep = seps[j]
        return "".join(out)


class WordSubstitute(TextAttack):
    """Replace a fraction of the words with other words, drawn from the text's own vocabulary
    (so no new topic appears) or from ``vocabulary``. Capitalisation and the punctuation
    around a word are kept."""

    name = "text-substitute"

    def __init__(self, fraction: float = 0.1, seed: int = 0,
                 vocabulary: list[str] | None = None):
        super().__init__(fraction, seed)
        if vocabulary is not None:
            vocabulary = [str(w) for w in vocabulary]
            if not vocabulary:
                raise ConfigError("WordSubstitute: vocabulary must not be empty")
        self.vocabulary = vocabulary

    def __call__(self, text: str) -> str:
        rng = self._rng(text)
        matches = list(_ALPHA_WORD_RE.finditer(text))
        source = self.vocabulary if self.vocabulary is not None else [m.group() for m in matches]
        vocab = sorted({w.lower() for w in source})
        if not vocab:
            return text
        pieces, last = [], 0
        for i in self._pick(rng, len(matches)):
            m = matches[i]
            original = m.group()
            j = int(rng.integers(len(vocab)))
            if vocab[j] == original.lower() and len(vocab) > 1:
                j = (j + 1) % len(vocab)  # a substitution must change the word
            pieces += [text[last:m.start()], _same_case(vocab[j], original)]
            last = m.end()
        pieces.append(text[last:])
        return "".join(pieces)


def _same_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class CopyPasteMix(TextAttack):
    """Replace one contiguous stretch of sentences with a stretch of human text, so that
    about ``fraction`` of the result's words are human: the "I only had it polish my draft"
    mix a whole-document detector must still flag, and the case a span-level detector should
    localise. After a call, ``last_span_`` is the inserted part's (start, end) character span
    in the result and ``last_fraction_`` the human share of its words actually reached
    (sentences are not split, and a short ``human`` may not supply enough words).
    """

    name = "text-mix"

    def __init__(self, fraction: float = 0.25, human: str = "", seed: int = 0):
        super().__init__(fraction, seed)
        self.human = str(human)
        self.last_span_: tuple[int, int] | None = None
        self.last_fraction_: float | None = None

    def params(self) -> dict[str, Any]:
        # the human text itself would bloat every record it is written into: name it by hash
        p = super().params()
        human = p.pop("human")
        p["human_sha256"] = hashlib.sha256(human.encode("utf-8", "surrogatepass")).hexdigest()
        p["human_chars"] = len(human)
        return p

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.last_span_ is not None:
            d["span"] = list(self.last_span_)
            d["human_fraction"] = self.last_fraction_
        return d

    def __call__(self, text: str) -> str:
        self.last_span_, self.last_fraction_ = None, 0.0
        if self.fraction == 0.0:
            return text
        if not self.human.strip():
            raise ConfigError("text-mix needs human=<text> to paste in")
        rng = self._rng(text)
        machine = _sentences(text)
        human = _sentences(self.human)
        if not machine or not human:
            return text
        m_words = [_count_words(text[a:b]) for a, b in machine]
        h_words = [_count_words(self.human[a:b]) for a, b in human]
        total = sum(m_words)

        # the machine stretch to remove: about fraction * total words from a random sentence
        i = int(rng.integers(len(machine)))
        j, removed = i + 1, m_words[i]  # at least one sentence goes
        while removed < self.fraction * total and (j < len(machine) or i > 0):
            if j < len(machine):
                removed += m_words[j]
                j += 1
            else:
                i -= 1
                removed += m_words[i]
        kept = total - removed
        # human words h so that h / (kept + h) = fraction (all of it if nothing is kept)
        want = np.inf if self.fraction >= 1.0 or kept == 0 else self.fraction * kept / (
            1.0 - self.fraction)

        # the human stretch: the contiguous sentences whose word count comes closest to
        # `want` (ties broken at random), so the fraction is met as well as sentences allow
        hs, he = _closest_stretch(h_words, want, rng)
        inserted = self.human[human[hs][0]:human[he - 1][1]]

        prefix, suffix = text[:machine[i][0]], text[machine[j - 1][1]:]
        result = prefix + inserted + suffix
        self.last_span_ = (len(prefix), len(prefix) + len(inserted))
        n_result = _count_words(result)
        self.last_fraction_ = _count_words(inserted) / n_result if n_result else 0.0
        return result


def _closest_stretch(words: list[int], want: float,
                     rng: np.random.Generator) -> tuple[int, int]:
    """(start, end) of the run of sentences whose total word count is nearest ``want``."""
    n = len(words)
    if not np.isfinite(want):
        return 0, n
    cum = np.concatenate([[0], np.cumsum(words)])
    best: list[tuple[int, int]] = []
    best_err = np.inf
    for start in range(n):
        # the two ends that bracket `want` from this start
        k = int(np.searchsorted(cum, cum[start] + want))
        for end in {min(max(k, start + 1), n), min(max(k - 1, start + 1), n)}:
            err = abs(cum[end] - cum[start] - want)
            if err < best_err - 1e-9:
                best, best_err = [(start, end)], err
            elif abs(err - best_err) <= 1e-9:
                best.append((start, end))
    return sorted(best)[int(rng.integers(len(best)))]


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (without the whitespace between them)."""
    return [m.span() for m in _SENTENCE_RE.finditer(text)]


def _count_words(text: str) -> int:
    return len(_WORD_RE.findall(text))
