"""Sentence spans for sentence-level scores: a small rule-based splitter (no model, no data).

A sentence ends at ., ! or ? (optionally followed by closing quotes or brackets) before
whitespace and an upper-case letter, digit or opening quote, or at a blank line. Common
abbreviations ("e.g.", "Dr.", "U.S.") and single initials do not end a sentence. Spans index
the text given, so a report can highlight exactly the characters that were scored.
"""

from __future__ import annotations

import re

_ABBREV = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "al",
    "fig", "no", "vol", "pp", "ed", "eds", "inc", "ltd", "co", "corp", "dept", "est", "approx",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s",
    "u.k"))
_END = re.compile(r"""[.!?]+["')\]]*(?=\s+["'(\[]?[A-Z0-9])|\n\s*\n""")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of ``text``, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group(0)[0] == ".":
            word = re.search(r"(\S+)\.$", text[start:m.start() + 1])
            w = word.group(1).lower().strip("\"'([") if word else ""
            if w in _ABBREV or (len(w) == 1 and w.isalpha()):
                continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out
