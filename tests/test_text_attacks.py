"""Tests for detect.attacks.text: each attack changes the expected amount, is deterministic,
and normalize() undoes the two that only disguise tokens."""

from __future__ import annotations

import difflib
import re

import pytest

from detect.attacks.text import (
    _LOOKALIKES,
    CopyPasteMix,
    Homoglyphs,
    WordDelete,
    WordSubstitute,
    ZeroWidth,
)
from detect.core.errors import ConfigError
from detect.core.registry import attacks
from detect.io.normalize import HOMOGLYPHS, normalize

MACHINE = (
    "Solar panels convert sunlight into electricity using layers of silicon. When light "
    "strikes the cells, it knocks electrons loose, and the resulting current is collected by "
    "thin metal contacts. Modern panels reach efficiencies above twenty percent, which is "
    "enough to power a typical home on a sunny roof.\n\n"
    "The cost of solar power has fallen sharply over the past decade. Manufacturing has "
    "scaled up, installation has become routine, and financing options have made it easier "
    "for households to buy systems outright. As a result, solar is now one of the cheapest "
    "sources of new electricity in many regions.\n\n"
    "Storage remains the main challenge. Batteries can shift energy from the afternoon to the "
    "evening, but they add cost and wear out over time. Engineers are exploring other options, "
    "such as pumped water, compressed air and heat stored in molten salt."
)
HUMAN = (
    "honestly i wasnt sure about the panels at first. my neighbour put them up last spring and "
    "kept going on about his bills. we got a quote in june. the guy who came round was nice "
    "enough but talked way too fast. anyway they went up in august and so far so good, the "
    "app says we made more than we used in september which i did not expect. my dad still "
    "thinks its a scam lol. we will see in winter i guess."
)
WORD = re.compile(r"\w+(?:['’]\w+)*")
TEXT_ATTACKS = ["text-homoglyph", "text-zerowidth", "text-delete", "text-substitute", "text-mix"]


def _diff_fraction(a: str, b: str) -> float:
    """Fraction of characters of ``a`` that differ from ``b``."""
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) / max(1, len(a))
    return 1.0 - difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# ----------------------------------------------------------------------------- common


@pytest.mark.parametrize("name", TEXT_ATTACKS)
def test_registered_with_modality_and_describe(name):
    atk = attacks.create(name, human=HUMAN) if name == "text-mix" else attacks.create(name)
    assert atk.modality == "text"
    d = atk.describe()
    assert d["attack"] == name
    assert d["fraction"] == atk.fraction and d["seed"] == 0
    out = atk(MACHINE)
    assert isinstance(out, str) and out != MACHINE


@pytest.mark.parametrize("name", TEXT_ATTACKS)
def test_deterministic_for_seed_and_text(name):
    extra = {"human": HUMAN} if name == "text-mix" else {}
    a = attacks.create(name, fraction=0.2, seed=3, **extra)
    b = attacks.create(name, fraction=0.2, seed=3, **extra)
    assert a(MACHINE) == b(MACHINE)
    if name != "text-mix":  # the mix may pick the same best-fitting stretch for two seeds
        c = attacks.create(name, fraction=0.2, seed=4, **extra)
        assert c(MACHINE) != a(MACHINE)


@pytest.mark.parametrize("name", TEXT_ATTACKS)
def test_fraction_zero_is_identity(name):
    extra = {"human": HUMAN} if name == "text-mix" else {}
    assert attacks.create(name, fraction=0.0, **extra)(MACHINE) == MACHINE


@pytest.mark.parametrize("cls", [Homoglyphs, ZeroWidth, WordDelete, WordSubstitute])
def test_bad_fraction_is_a_config_error(cls):
    with pytest.raises(ConfigError, match="fraction"):
        cls(fraction=1.5)


def test_the_text_seeds_the_choice():
    # same seed, two texts differing in one word: the edited positions differ
    atk = Homoglyphs(fraction=0.1, seed=0)
    a = atk(MACHINE)
    b = atk(MACHINE.replace("Solar", "Lunar", 1))
    pos_a = {i for i, (x, y) in enumerate(zip(MACHINE, a, strict=True)) if x != y}
    pos_b = {i for i, (x, y) in enumerate(zip(MACHINE, b, strict=True)) if x != y and i > 5}
    assert pos_a != pos_b


# ----------------------------------------------------------------------------- disguises


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3, 1.0])
def test_homoglyphs_replace_the_fraction_of_eligible_letters(fraction):
    eligible = sum(c in _LOOKALIKES for c in MACHINE)  # letters with a Cyrillic/Greek twin
    out = Homoglyphs(fraction=fraction)(MACHINE)
    assert len(out) == len(MACHINE)
    changed = [(x, y) for x, y in zip(MACHINE, out, strict=True) if x != y]
    assert len(changed) == round(fraction * eligible)
    assert all(HOMOGLYPHS[y] == x for x, y in changed)  # every swap is a lookalike


@pytest.mark.parametrize("fraction", [0.1, 0.3, 1.0])
def test_normalize_undoes_homoglyphs(fraction):
    out = Homoglyphs(fraction=fraction, seed=1)(MACHINE)
    assert _diff_fraction(out, MACHINE) > 0.3 * fraction
    r = normalize(out)
    assert _diff_fraction(r.text, normalize(MACHINE).text) == 0.0
    assert r.suspicious


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3, 1.0])
def test_zero_width_inserts_between_the_fraction_of_letter_pairs(fraction):
    pairs = sum(a.isalpha() and b.isalpha() for a, b in zip(MACHINE, MACHINE[1:], strict=False))
    out = ZeroWidth(fraction=fraction)(MACHINE)
    inserted = len(out) - len(MACHINE)
    assert inserted == round(fraction * pairs)
    assert re.sub("[\u200b\u200c\u200d\u2060\ufeff]", "", out) == MACHINE
    assert not re.search(r"\W[\u200b\u200c\u200d\u2060\ufeff]|[\u200b\u200c\u200d\u2060\ufeff]\W",
                         out)  # only ever between two letters


@pytest.mark.parametrize("fraction", [0.1, 0.3, 1.0])
def test_normalize_undoes_zero_width(fraction):
    out = ZeroWidth(fraction=fraction, seed=2)(MACHINE)
    r = normalize(out)
    assert r.text == normalize(MACHINE).text
    assert r.changes["invisible"] == len(out) - len(MACHINE)
    assert r.suspicious


def test_normalize_undoes_both_disguises_together():
    out = ZeroWidth(fraction=0.2)(Homoglyphs(fraction=0.2)(MACHINE))
    assert _diff_fraction(normalize(out).text, normalize(MACHINE).text) == 0.0


def test_zero_width_custom_chars():
    out = ZeroWidth(fraction=0.5, chars="\u2060")(MACHINE)
    assert set(out) - set(MACHINE) == {"\u2060"}


# ----------------------------------------------------------------------------- word edits


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_word_delete_removes_the_fraction_of_words(fraction):
    n = len(MACHINE.split())
    out = WordDelete(fraction=fraction)(MACHINE)
    assert len(out.split()) == n - round(fraction * n)
    assert out.count("\n\n") == MACHINE.count("\n\n")  # paragraphs survive
    assert "  " not in out and out == out.strip()
    # what is left is the original words in order
    remaining = iter(MACHINE.split())
    assert all(word in remaining for word in out.split())


def test_word_delete_everything_leaves_nothing_but_breaks():
    assert WordDelete(fraction=1.0)("one two\n\nthree").strip() == ""


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_word_substitute_changes_the_fraction_of_words(fraction):
    words = WORD.findall(MACHINE)
    out = WordSubstitute(fraction=fraction)(MACHINE)
    new = WORD.findall(out)
    assert len(new) == len(words)
    changed = [(a, b) for a, b in zip(words, new, strict=True) if a.lower() != b.lower()]
    alpha = [w for w in words if w.isalpha()]
    assert len(changed) == round(fraction * len(alpha))
    vocab = {w.lower() for w in words}
    assert all(b.lower() in vocab for _, b in changed)  # drawn from the text itself
    assert all(a[0].isupper() == b[0].isupper() for a, b in changed)  # case kept
    # punctuation and layout untouched
    assert re.sub(r"\w", "", out) == re.sub(r"\w", "", MACHINE)


def test_word_substitute_from_a_vocabulary():
    vocab = ["banana", "kettle", "velvet"]
    out = WordSubstitute(fraction=0.3, vocabulary=vocab)(MACHINE)
    changed = [b for a, b in zip(WORD.findall(MACHINE), WORD.findall(out), strict=True) if a != b]
    assert changed and {w.lower() for w in changed} <= set(vocab)


# ----------------------------------------------------------------------------- mix


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75])
def test_copy_paste_mix_reaches_the_fraction_and_reports_the_span(fraction):
    atk = CopyPasteMix(fraction=fraction, human=HUMAN, seed=1)
    out = atk(MACHINE)
    start, end = atk.last_span_
    inserted = out[start:end]
    assert inserted in HUMAN and inserted.strip() == inserted
    # the rest is the machine text with one contiguous stretch taken out
    prefix, suffix = out[:start], out[end:]
    assert MACHINE.startswith(prefix) and MACHINE.endswith(suffix)
    share = len(WORD.findall(inserted)) / len(WORD.findall(out))
    assert share == pytest.approx(atk.last_fraction_)
    # sentence granularity: within one human sentence (~15 words of ~160) of the target
    assert abs(share - fraction) < 0.08
    d = atk.describe()
    assert d["span"] == [start, end] and d["human_fraction"] == atk.last_fraction_
    assert d["human_chars"] == len(HUMAN) and "human" not in d


def test_copy_paste_mix_whole_text():
    atk = CopyPasteMix(fraction=1.0, human=HUMAN)
    out = atk(MACHINE)
    assert out.strip() == HUMAN.strip()
    assert atk.last_fraction_ == 1.0


def test_copy_paste_mix_needs_human_text():
    with pytest.raises(ConfigError, match="human"):
        CopyPasteMix(fraction=0.3)(MACHINE)


def test_copy_paste_mix_with_short_human_text_reports_what_it_reached():
    atk = CopyPasteMix(fraction=0.5, human="Just one short line.")
    out = atk(MACHINE)
    assert "Just one short line." in out
    assert 0 < atk.last_fraction_ < 0.1
