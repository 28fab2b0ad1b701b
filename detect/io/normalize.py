"""Text normalisation applied before every text detector, and a check that a text is English
enough for detectors trained on English.

Machine-text detectors score tokens. Invisible characters, Cyrillic lookalikes and odd spaces
change the tokens while leaving the text unchanged to a reader, which is the cheapest way to
push a generated text under a detector's threshold. Folding them back restores the tokens the
detector was trained on, and the folding itself is evidence: nobody types a Cyrillic ``а``
inside an English word by accident, so :attr:`NormalizedText.suspicious` is worth reporting
even when the detectors say "real".

Everything runs as regular expressions, ``str.translate`` and ``unicodedata`` over the whole
text; Python-level loops touch only distinct characters and, when lookalikes are present at
all, distinct words. At the 2M-character limit of ``detect.io.media.Limits`` (2-core machine,
busy): about 0.5 s for English, 2 s when lookalikes make every paragraph's words count.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHANGE_KEYS",
    "ENGLISH_FUNCTION_WORDS",
    "HOMOGLYPHS",
    "LATIN_LOOKALIKES",
    "NormalizedText",
    "language_check",
    "normalize",
]

# --------------------------------------------------------------------------- tables

# Letters of other scripts that render like an ASCII letter and that NFKC leaves alone.
# (Fullwidth forms, ligatures and mathematical alphanumerics are NFKC's job, not this table's.)
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ѵ": "v",
    "ү": "y",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Ԛ": "Q",
    "Ԝ": "W", "Ӏ": "I", "Һ": "H", "Ѵ": "V",
    # Greek
    "ο": "o", "α": "a", "ν": "v", "ρ": "p", "τ": "t", "ι": "i", "κ": "k", "υ": "u",
    "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "զ": "q", "Ս": "U", "Օ": "O",
    # Cherokee capitals
    "Ꭺ": "A", "Ᏼ": "B", "Ꮯ": "C", "Ꭰ": "D", "Ꭼ": "E", "Ꮐ": "G", "Ꮋ": "H", "Ꭻ": "J",
    "Ꮶ": "K", "Ꮮ": "L", "Ꮇ": "M", "Ꮲ": "P", "Ꮪ": "S", "Ꭲ": "T", "Ꮩ": "V", "Ꮃ": "W",
    "Ꮓ": "Z",
}  # fmt: skip

# Latin-script letters that look like ASCII ones. They are genuine letters of Turkish, IPA...,
# so they fold only inside words whose other letters are all ASCII, and do not make a text
# suspicious (a Turkish text is full of dotless i).
LATIN_LOOKALIKES: dict[str, str] = {"ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ǀ": "l"}

# Removed outright: they render as nothing but split tokens.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
# The soft hyphen between letters is common in text copied from web pages (&shy;), so it is
# removed but does not count as evidence of evasion; the other invisibles do.
_INVISIBLE_NO_SHY = _INVISIBLE.replace("\u00ad", "")
# NFKC maps these to U+0020; they are counted as whitespace, not as NFKC changes.
_NFKC_SPACES = frozenset("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                         "\u200a\u202f\u205f\u3000")
_COMBINING = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_LINE_BREAK = r"(?>\r\n|[\n\r\v\f\x85\u2028\u2029])"  # atomic: \r\n is one break


def _latin_class() -> str:
    """Character-class body of the Latin-script letters (ASCII plus the Latin blocks)."""
    blocks = [(0xAA, 0xAA), (0xBA, 0xBA), (0xC0, 0x24F), (0x250, 0x2AF), (0x1D00, 0x1D7F),
              (0x1E00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF), (0xAB30, 0xAB6F)]
    cps = [c for lo, hi in blocks for c in range(lo, hi + 1)
           if chr(c).isalpha() and "LATIN" in unicodedata.name(chr(c), "")]
    ranges: list[list[int]] = []
    for c in cps:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    body = "".join(f"\\u{lo:04x}" if lo == hi else f"\\u{lo:04x}-\\u{hi:04x}"
                   for lo, hi in ranges)
    return "A-Za-z" + body


_LATIN = _latin_class()
_LATIN_RE = re.compile(f"[{_LATIN}]")
_LETTER_RE = re.compile(r"[^\W\d_]")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")
_CONF_RE = re.compile("[" + "".join(HOMOGLYPHS) + "]")
_LOOKALIKE_RE = re.compile("[" + "".join(LATIN_LOOKALIKES) + "]")
_FOLDABLE_RE = re.compile("[" + "".join(HOMOGLYPHS) + "".join(LATIN_LOOKALIKES) + "]")
_FOLD_TABLE = str.maketrans(HOMOGLYPHS)
_LOOKALIKE_TABLE = str.maketrans(LATIN_LOOKALIKES)
# A word: letters, digits, combining marks and invisibles, so "p\u200bаypal" is one word
# (only its letters count when it is classified).
_WORD_SPLIT_RE = re.compile(rf"([\w{_COMBINING}{_INVISIBLE}]+)")
# Paragraph breaks: two or more line breaks with only blanks or invisibles between them.
_PARA_RE = re.compile(rf"({_LINE_BREAK}(?:[ \t\u1680{_INVISIBLE}]*{_LINE_BREAK})+)")
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]+")
# the first letter is consumed, the last only looked at, so "a\u200bb\u200bc" counts both
_INVISIBLE_IN_WORD_RE = re.compile(f"[{_LATIN}]([{_INVISIBLE_NO_SHY}]+)(?=[{_LATIN}])")
_ODD_BREAK_RE = re.compile("\r\n|[\r\v\f\x85\u2028\u2029]")
_NFKC_SPACE_RE = re.compile("[" + "".join(sorted(_NFKC_SPACES)) + "]")
_ODD_SPACE_RE = re.compile("[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_SPACES_RE = re.compile(" {2,}")
_SPACE_NEWLINE_RE = re.compile(" ?\n ?")
_BLANK_LINES_RE = re.compile("\n{4,}")

CHANGE_KEYS = ("nfkc", "homoglyphs", "latin_lookalikes", "invisible", "invisible_between_letters",
               "whitespace", "collapsed")


# --------------------------------------------------------------------------- normalize


@dataclass
class NormalizedText:
    """The text a detector should see, and a count of what it took to get there."""

    text: str
    changes: dict[str, int] = field(default_factory=dict)

    @property
    def suspicious(self) -> bool:
        """True when the changes look deliberate: a cross-script lookalike folded inside a
        Latin word, or an invisible character between two Latin letters. Neither happens
        when a person types, and both are what evasion tools do."""
        c = self.changes
        return c.get("homoglyphs", 0) > 0 or c.get("invisible_between_letters", 0) > 0

    def to_dict(self, include_text: bool = False) -> dict[str, Any]:
        """The record for a finding; the text is left out unless asked for, so a finding
        never echoes a whole upload."""
        d: dict[str, Any] = {"changes": dict(self.changes), "suspicious": self.suspicious,
                             "chars": len(self.text)}
        if include_text:
            d["text"] = self.text
        return d


@functools.lru_cache(maxsize=8192)
def _nfkc_char(c: str) -> str:
    return unicodedata.normalize("NFKC", c)


def _nfkc(text: str) -> tuple[str, int]:
    """NFKC and the number of characters it changed (each character that changes on its own,
    plus combining marks absorbed by composition). Odd spaces are left to the whitespace
    count."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text, 0
    out = unicodedata.normalize("NFKC", text)
    # ASCII never changes under NFKC, so only the non-ASCII characters are counted
    before = Counter("".join(_NON_ASCII_RE.findall(text)))
    after = Counter("".join(_NON_ASCII_RE.findall(out)))
    changed = sum(n for c, n in before.items() if c not in _NFKC_SPACES and _nfkc_char(c) != c)

    def marks(counts: Counter[str]) -> int:
        return sum(n for c, n in counts.items() if unicodedata.combining(c))

    return out, changed + max(0, marks(before) - marks(after))


@functools.lru_cache(maxsize=65536)
def _classify(word: str) -> tuple[str, int, bool]:
    """(kind, confusables, has Latin lookalike) for one word.

    kind is "latin" (Latin letters at least as many as other-script letters), "mixed" (the
    same, plus confusables: folded), "ambiguous" (only confusables, e.g. Cyrillic "сор"),
    "foreign" (other-script letters outnumber Latin ones) or "none" (no letters).
    """
    if word.isascii():
        return ("latin" if _LETTER_RE.search(word) else "none"), 0, False
    core = _INVISIBLE_RE.sub("", word)
    n_conf = len(_CONF_RE.findall(core))
    n_latin = len(_LATIN_RE.findall(core))
    n_other = len(_LETTER_RE.findall(core)) - n_latin - n_conf
    lookalike = _LOOKALIKE_RE.search(core) is not None
    if n_latin and n_latin >= n_other:
        return ("mixed" if n_conf else "latin"), n_conf, lookalike
    if n_other:
        return "foreign", n_conf, lookalike
    return ("ambiguous" if n_conf else "none"), n_conf, lookalike


def _fold(text: str) -> tuple[str, int, int]:
    """Fold lookalikes to ASCII where the context is Latin; returns (text, cross-script
    folds, Latin-lookalike folds).

    The rule, word by word (a word being a run of letters, digits, marks and invisibles):
      * a word with Latin letters, at least as many as its other-script letters, has its
        confusables folded ("pаypal" -> "paypal");
      * a word made only of confusables ("сорх", "ο") is ambiguous: it is folded when its
        paragraph has more Latin words than foreign ones; a tied or empty paragraph follows
        the whole text. So Russian or Greek prose is never touched, while a short English word
        spelled entirely in Cyrillic inside English prose is;
      * a word with more foreign letters than Latin ones is left alone ("cтол" stays);
      * a Latin lookalike (dotless ı...) folds when all the word's other letters are ASCII.
    Counts behind a decision are those of the folded text, which keeps this idempotent.
    """
    if not _FOLDABLE_RE.search(text):
        return text, 0, 0
    parts = _PARA_RE.split(text)  # paragraphs at even indices, their separators at odd ones
    # per paragraph: its tokens (words at odd indices), distinct words with counts, decision
    paragraphs: list[tuple[list[str], Counter[str], bool | None]] = []
    total_latin = total_foreign = 0
    for par in parts[::2]:
        tokens = _WORD_SPLIT_RE.split(par)
        counts = Counter(tokens[1::2])
        kinds: Counter[str] = Counter()
        for word, n in counts.items():
            kinds[_classify(word)[0]] += n
        latin, foreign = kinds["latin"] + kinds["mixed"], kinds["foreign"]
        decision = None if latin == foreign else latin > foreign
        paragraphs.append((tokens, counts, decision))
        total_latin += latin + (kinds["ambiguous"] if decision else 0)
        total_foreign += foreign
    fallback = total_latin > total_foreign
    n_homoglyphs = n_lookalikes = 0
    for i, (tokens, counts, decision) in enumerate(paragraphs):
        fold_ambiguous = fallback if decision is None else decision
        replace: dict[str, str] = {}
        for word, n in counts.items():
            kind, n_conf, lookalike = _classify(word)
            new = word
            if kind == "mixed" or (kind == "ambiguous" and fold_ambiguous):
                new = new.translate(_FOLD_TABLE)
                n_homoglyphs += n * n_conf
            if lookalike:
                rest = _LOOKALIKE_RE.sub("", new)
                if _INVISIBLE_RE.sub("", rest).isascii():
                    n_lookalikes += n * (len(new) - len(rest))
                    new = new.translate(_LOOKALIKE_TABLE)
            if new != word:
                replace[word] = new
        if replace:
            # separators (odd positions) are never words, so they pass through unchanged
            parts[2 * i] = "".join([replace.get(t, t) for t in tokens])
    return "".join(parts), n_homoglyphs, n_lookalikes


def _whitespace(text: str) -> tuple[str, int, int]:
    """Plain spaces and ``\\n`` only; returns (text, breaks and blanks replaced, characters
    removed by collapsing and stripping)."""
    text, n_breaks = _ODD_BREAK_RE.subn("\n", text)
    text, n_spaces = _ODD_SPACE_RE.subn(" ", text)
    n = len(text)
    text = _SPACES_RE.sub(" ", text)
    text = _SPACE_NEWLINE_RE.sub("\n", text)
    text = _BLANK_LINES_RE.sub("\n\n\n", text)
    text = text.strip()
    return text, n_breaks + n_spaces, n - len(text)


def normalize(text: str) -> NormalizedText:
    """NFKC, lookalikes folded in Latin words, invisibles removed, plain whitespace.

    Line breaks survive (sentence and paragraph scoring needs them): ``\\r\\n`` and other
    breaks become ``\\n``, spaces next to a break go, and at most two blank lines are kept
    in a row. ``normalize(normalize(x).text).text == normalize(x).text``.

    ``changes`` always has the keys of ``CHANGE_KEYS``: characters changed by NFKC
    ("nfkc"), cross-script lookalikes folded ("homoglyphs"), Latin lookalikes such as
    dotless i folded ("latin_lookalikes"), invisible characters removed ("invisible") and
    how many of them sat between two Latin letters ("invisible_between_letters"), odd
    spaces and line breaks made plain ("whitespace"), characters dropped by collapsing runs
    and stripping ("collapsed").
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() takes str, not {type(text).__name__}")
    changes = dict.fromkeys(CHANGE_KEYS, 0)
    if not text.isascii():
        # NFKC turns these into U+0020; count them as whitespace before it hides them
        changes["whitespace"] = len(_NFKC_SPACE_RE.findall(text))
    text, changes["nfkc"] = _nfkc(text)
    text, changes["homoglyphs"], changes["latin_lookalikes"] = _fold(text)
    if not text.isascii() and _INVISIBLE_RE.search(text):
        changes["invisible_between_letters"] = sum(map(len, _INVISIBLE_IN_WORD_RE.findall(text)))
        n = len(text)
        text = _INVISIBLE_RE.sub("", text)
        changes["invisible"] = n - len(text)
    if changes["invisible"] or changes["homoglyphs"] or changes["latin_lookalikes"]:
        # a mark may now follow a letter it composes with ("о\\u0301" folds to "ó")
        text, n_more = _nfkc(text)
        changes["nfkc"] += n_more
    text, replaced, removed = _whitespace(text)
    changes["whitespace"] += replaced
    changes["collapsed"] = removed
    return NormalizedText(text, changes)


# --------------------------------------------------------------------------- language

# Closed-class English words: frequent in English prose whatever the topic. Spellings that are
# also everyday words of other Latin-script languages ("a", "am", "no", "we": Romance,
# German, Dutch) are left out; the few that remain ("in", "was", "had"...) give German, Dutch or
# Portuguese a few percent, well under the threshold.
_FUNCTION_WORDS = """
an the this that these those each every either neither some any all both another such what
which whose i my you your he him his she her it its they them their us our one who whom
about above across after against along among around at before behind below between beyond by
down during except for from in inside into near of off on out outside over past since through
to towards under until up upon with within without and but or nor so yet because although
though while if unless whether than as when where why how then once be is are was were been
being have has had having do does did doing will would shall should can could may might must
not also only just very too there here now more most much many few less other same again ever
never always often even still already however thus else instead rather quite almost perhaps
itself themselves something nothing anything don't doesn't didn't isn't aren't it's that's
can't won't i'm cannot
"""
ENGLISH_FUNCTION_WORDS: frozenset[str] = frozenset(_FUNCTION_WORDS.split())

# Thresholds: see language_check's docstring for how they were measured.
MIN_WORDS = 5
MIN_LATIN_FRACTION = 0.85
MIN_FUNCTION_WORD_FRACTION = 0.10
MIN_PLAIN_WORD_FRACTION = 0.50
_WORDS_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
# a whitespace-separated token that is a word, with at most quotes, brackets and punctuation
_PLAIN_TOKEN_RE = re.compile(r"""^[("'“‘\[]*[^\W\d_]+(?:['’-][^\W\d_]+)*[)"'”’\].,;:!?]*$""",
                             re.MULTILINE)
_LETTER_RUN_RE = re.compile(r"[^\W\d_]+")
_LATIN_RUN_RE = re.compile(f"[{_LATIN}]+")


def language_check(text: str) -> dict[str, Any]:
    """Is this text English enough for detectors trained on English?

    Three cheap signals, no model: the fraction of letters in Latin script (rules out
    Russian, Greek, Chinese...); the fraction of whitespace-separated tokens that are plain
    words (rules out symbol soup and code heavy in calls and operators); the fraction of words
    that are English function words, which every English text is full of whatever its subject
    (rules out German, French, Spanish... written in the same alphabet). Call it on
    ``normalize(x).text``.

    Thresholds and the rates behind them (tests/test_text_normalize.py re-measures them):

    * ``MIN_FUNCTION_WORD_FRACTION = 0.10``. English: the 519 distinct prose paragraphs of
      Python's ``pydoc_data.topics`` (unindented, >= 20 words, with a sentence end; no
      tables, grammar or examples) have min 0.161, 1st percentile 0.242, median 0.43.
      Paragraphs of ~50 words written for the tests: German 0.020, Dutch 0.060, Portuguese
      0.043, French, Spanish and Italian 0.000.
    * ``MIN_PLAIN_WORD_FRACTION = 0.50``: the same English paragraphs have min 0.60 (pydoc's
      prose is full of inline code such as ``"a[i:j:k]"``, which is why the bar cannot be
      higher). Ten-line chunks of standard-library code with comments and docstrings removed
      still pass 35% of the time: keywords, string literals and one-letter names read like
      words. Code that looks like English is not refused.
    * ``MIN_LATIN_FRACTION = 0.85``: 1.0 for every English paragraph, 0.0 for Russian, Greek
      and Chinese ones.
    * ``MIN_WORDS = 5``: fewer words say nothing about the language.

    Returns ``supported``, the first failed test as ``reason`` (None when supported), the
    three fractions and the number of words.
    """
    n_letters = sum(map(len, _LETTER_RUN_RE.findall(text)))
    latin_fraction = sum(map(len, _LATIN_RUN_RE.findall(text))) / n_letters if n_letters else 0.0
    tokens = text.split()
    # one token per line, so one C-level findall counts the plain ones
    n_plain = len(_PLAIN_TOKEN_RE.findall("\n".join(tokens)))
    plain_fraction = n_plain / len(tokens) if tokens else 0.0
    words = Counter(_WORDS_RE.findall(text.casefold().replace("’", "'")))
    n_words = sum(words.values())
    n_function = sum(n for w, n in words.items() if w in ENGLISH_FUNCTION_WORDS)
    function_fraction = n_function / n_words if n_words else 0.0
    reason = None
    if not n_letters:
        reason = "no letters"
    elif latin_fraction < MIN_LATIN_FRACTION:
        reason = (f"mostly non-Latin script (Latin letters {latin_fraction:.0%} < "
                  f"{MIN_LATIN_FRACTION:.0%})")
    elif n_words < MIN_WORDS:
        reason = f"too few words to judge the language ({n_words} < {MIN_WORDS})"
    elif plain_fraction < MIN_PLAIN_WORD_FRACTION:
        reason = (f"mostly symbols or code (plain words {plain_fraction:.0%} of tokens < "
                  f"{MIN_PLAIN_WORD_FRACTION:.0%})")
    elif function_fraction < MIN_FUNCTION_WORD_FRACTION:
        reason = (f"does not read as English (English function words "
                  f"{function_fraction:.0%} of words < {MIN_FUNCTION_WORD_FRACTION:.0%})")
    return {"supported": reason is None, "reason": reason,
            "latin_fraction": round(latin_fraction, 4),
            "english_function_word_fraction": round(function_fraction, 4),
            "words": n_words, "plain_word_fraction": round(plain_fraction, 4)}
