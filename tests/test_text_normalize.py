"""Tests for detect.io.normalize (normalize, language_check) and the text-decoding policy
of detect.io.media (strict vs replace)."""

from __future__ import annotations

import codecs
import random
import re

import hypothesis  # the [dev] extra, installed by setup.sh: missing is a failure, never a skip
import numpy as np
import pytest

from detect.core.errors import ConfigError, InputError
from detect.io import normalize as N
from detect.io.media import Limits, load, load_bytes
from detect.io.normalize import HOMOGLYPHS, LATIN_LOOKALIKES, language_check, normalize

ENGLISH = (
    "The committee met on Tuesday to review the budget for the coming year. Most of the "
    "discussion was about the library, which needs a new roof before the winter, and about "
    "whether the town can afford to keep the swimming pool open in the evenings."
)

FOREIGN = {
    "german": (
        "Gestern Abend sind wir nach einem langen Arbeitstag noch in die Altstadt gefahren, "
        "weil meine Schwester unbedingt das neue Restaurant am Marktplatz ausprobieren wollte. "
        "Das Essen war ausgezeichnet, aber der Kellner hatte offensichtlich keine Lust auf "
        "Gäste, und am Ende haben wir fast eine Stunde auf die Rechnung gewartet."
    ),
    "french": (
        "Depuis que la bibliothèque municipale a prolongé ses horaires d'ouverture, beaucoup "
        "d'étudiants viennent y travailler le soir après leurs cours. Les bibliothécaires ont "
        "remarqué que les salles du deuxième étage sont presque toujours pleines, et ils "
        "envisagent maintenant d'ajouter des tables près des fenêtres pour accueillir tout le "
        "monde."
    ),
    "spanish": (
        "Cuando llegamos al pueblo ya era casi de noche y las calles estaban vacías, porque "
        "todos los vecinos se habían reunido en la plaza para celebrar la fiesta del santo "
        "patrón. Mi abuela nos esperaba en la puerta de su casa con una olla de sopa caliente y "
        "muchas preguntas sobre el viaje."
    ),
    "italian": (
        "Il vecchio ponte di pietra che attraversa il fiume è stato chiuso per lavori di "
        "restauro durante tutta l'estate, e gli abitanti del quartiere hanno dovuto fare un "
        "lungo giro per raggiungere il mercato. Adesso finalmente è stato riaperto, e la sera "
        "si riempie di famiglie che passeggiano."
    ),
    "dutch": (
        "Omdat het de hele week had geregend, besloten we de fietstocht langs de kust uit te "
        "stellen tot het volgende weekend. Op zaterdag scheen eindelijk de zon, dus vertrokken "
        "we vroeg in de ochtend met brood, kaas en een thermosfles koffie in onze tassen, en we "
        "kwamen pas laat thuis."
    ),
    "portuguese": (
        "Na semana passada, a escola do meu filho organizou uma feira de ciências, e os alunos "
        "passaram vários dias preparando experiências com plantas, ímãs e pequenos motores. Os "
        "pais foram convidados a visitar as salas no sábado de manhã, e fiquei surpreso com a "
        "criatividade das crianças."
    ),
    "russian": (
        "Вчера вечером мы долго гуляли по набережной, потому что после дождя воздух стал "
        "свежим и прохладным. Потом зашли в маленькое кафе на углу, где нам принесли горячий "
        "чай с лимоном и пирог с яблоками, и просидели там почти до закрытия."
    ),
    "greek": (
        "Το καλοκαίρι πήγαμε με την οικογένεια σε ένα μικρό νησί των Κυκλάδων, όπου περάσαμε "
        "δύο εβδομάδες κολυμπώντας στις ήσυχες παραλίες και τρώγοντας φρέσκο ψάρι στις "
        "ταβέρνες του λιμανιού. Το βράδυ καθόμασταν στην αυλή και κοιτάζαμε τα αστέρια."
    ),
    "chinese": (
        "昨天下午我们去了城市西边的新图书馆，那里的阅览室非常安静，窗外可以看到一大片湖水。"
        "我借了两本关于历史的书，打算在周末慢慢读完，然后再和朋友们讨论书里的内容。"
    ),
}
NON_LATIN = ("russian", "greek", "chinese")


# ----------------------------------------------------------------------------- normalize


def test_plain_english_is_unchanged():
    r = normalize(ENGLISH)
    assert r.text == ENGLISH
    assert set(r.changes) == set(N.CHANGE_KEYS)
    assert not any(r.changes.values())
    assert not r.suspicious


def test_nfkc_folds_fullwidth_ligatures_and_math_letters():
    r = normalize("ｆｕｌｌ ﬁne 𝐛𝐨𝐥𝐝 text")
    assert r.text == "full fine bold text"
    assert r.changes["nfkc"] == 4 + 1 + 4
    assert not r.suspicious  # styling, not evasion


def test_nfkc_composition_is_counted():
    r = normalize("cafe\u0301")
    assert r.text == "café"
    assert r.changes["nfkc"] == 1


def test_homoglyphs_inside_latin_words_are_folded():
    spoofed = "Тhe pаypаl ассount was сlosed by the bаnk."  # Cyrillic Т а с
    r = normalize(spoofed)
    assert r.text == "The paypal account was closed by the bank."
    assert r.changes["homoglyphs"] == sum(c in HOMOGLYPHS for c in spoofed)
    assert r.suspicious


def test_greek_armenian_cherokee_lookalikes_fold_in_latin_words():
    r = normalize("Nοt ναlid: the ΡΟSΤ ս\u0570ere Ꮃas wrong")
    assert r.text == "Not valid: the POST uhere Was wrong"
    assert r.suspicious


def test_word_spelled_only_in_lookalikes_folds_inside_english_prose():
    # "copy" typed entirely with Cyrillic letters sits in an English paragraph
    r = normalize("Please make a сору of the report and send it to me.")
    assert r.text == "Please make a copy of the report and send it to me."
    assert r.changes["homoglyphs"] == 4


@pytest.mark.parametrize("lang", ["russian", "greek"])
def test_genuine_russian_and_greek_text_is_untouched(lang):
    text = FOREIGN[lang]
    r = normalize(text)
    assert r.text == text
    assert r.changes["homoglyphs"] == 0
    assert not r.suspicious


def test_russian_with_latin_brand_name_is_untouched():
    text = "Я купил новый iPhone, а он сразу сломался. Очень обидно, конечно."
    assert normalize(text).text == text


def test_mostly_cyrillic_word_with_one_latin_letter_is_left_alone():
    # a keyboard-layout slip in Russian text (Latin c): the word is foreign, not spoofed
    text = "Он поставил книгу на cтол и вышел из комнаты."
    assert normalize(text).text == text


def test_short_lookalike_words_in_a_russian_paragraph_stay_cyrillic():
    text = "Ах, как же хорошо! Он сказал: «а то!» и ушёл домой."
    assert normalize(text).text == text


def test_mixed_document_each_paragraph_decides():
    english = "We wrote a сору of the letter for the office."
    russian = "Мы сделали копию письма, а он ее потерял."
    r = normalize(english + "\n\n" + russian)
    assert r.text == english.replace("сору", "copy") + "\n\n" + russian


def test_latin_lookalikes_fold_in_ascii_words_only_and_are_not_suspicious():
    r = normalize("The fıle was opened. Kapı açık.")
    # "açık" keeps its dotless i (ç is not ASCII); "Kapı" looks like an ASCII word and folds
    assert r.text == "The file was opened. Kapi açık."
    assert r.changes["latin_lookalikes"] == 2
    assert not r.suspicious


def test_invisible_characters_are_removed_and_counted():
    text = "in\u200bvis\u2060ible\u00ad text\u200d here\ufeff and \u202eflag\U000e0041 \ufe0f"
    r = normalize(text)
    assert r.text == "invisible text here and flag"
    assert r.changes["invisible"] == 8
    assert r.changes["invisible_between_letters"] == 2  # the soft hyphen does not count
    assert r.suspicious


def test_zero_width_inside_spoofed_word_still_folds():
    r = normalize("log in to p\u200bаypal now")
    assert r.text == "log in to paypal now"
    assert r.changes["homoglyphs"] == 1 and r.changes["invisible"] == 1


def test_soft_hyphen_alone_is_not_suspicious():
    r = normalize("a long hy\u00adphen\u00adated word")
    assert r.text == "a long hyphenated word"
    assert not r.suspicious


def test_whitespace_rules():
    text = ("\ufeff  Title\r\n\r\n\r\n\r\n\r\n\r\nFirst\tline  with\u00a0odd\u2003spaces \n"
            "  second line\u3000\u2028third\r\n\n\nend   ")
    r = normalize(text)
    assert r.text == ("Title\n\n\nFirst line with odd spaces\nsecond line\nthird\n\n\nend")
    # \r\n x7, tab, NBSP, em space, ideographic space, U+2028
    assert r.changes["whitespace"] == 12
    assert r.changes["collapsed"] > 0


def test_paragraph_breaks_survive():
    r = normalize("One.\n\nTwo.\nThree.")
    assert r.text == "One.\n\nTwo.\nThree."


def test_to_dict():
    r = normalize("p\u200bаypal")
    d = r.to_dict()
    assert d == {"changes": r.changes, "suspicious": True, "chars": 6}
    assert r.to_dict(include_text=True)["text"] == "paypal"


def test_type_error_on_bytes():
    with pytest.raises(TypeError):
        normalize(b"bytes")  # type: ignore[arg-type]


_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ     ...,,!?'\"-_0123456789")
    + list(HOMOGLYPHS) + list(LATIN_LOOKALIKES)
    + list("жзийклмнпфцчшщыэюяЖЗИЛПФЦШЫЭЯβγδεζηθλμξπσςφψωάέήίόύώ中文字")
    + list("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u202e\u2066\U000e0041\ufe0f\u034f\u3164")
    + list("\t\n\n\r\r\n\u00a0\u2003\u202f\u3000\u2028\u2029\x0b\x0c\x85\u1680")
    + list("\u0301\u0308\u0327\u0306\u20dd") + list("ﬁﬂＡｂ𝐀𝐛①½™…ϲ𝚨𝛂ſǅ") + ["\r\n"] * 3
)
_PIECES = ["the", "copy", "сорх", "ах", "мир", "pаypal", "ο", "κόσμος", "kapı", "açık", "\u200b",
           "\u00ad", "\n", "\n\n", "\r\n", "\r\n\r\n", "\n \u200b\n", " ", "\t", "\u00a0",
           "о\u0301", "e\u0301", "\u0301", "Χ", "Ꮃ", "ﬁ", "ᅟ", "中文", ",", ".", "5", "_",
           "\u2029", "йа", "cтол", "о\u200b\u0308"]


def _random_texts(n: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        if i % 2:
            yield "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 60)))
        else:
            yield "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 25)))


def test_idempotent_on_generated_strings():
    for text in _random_texts(4000):
        once = normalize(text).text
        assert normalize(once).text == once, repr(text)


def test_idempotent_hypothesis():
    st = hypothesis.strategies

    pieces = st.lists(st.sampled_from(list(_ALPHABET) + list(_PIECES)), max_size=40)
    texts = st.one_of(st.text(max_size=60), pieces.map("".join))  # any Unicode, and lookalikes

    @hypothesis.settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @hypothesis.given(texts)
    def check(text):
        once = normalize(text).text
        assert normalize(once).text == once

    check()


def test_second_pass_reports_no_changes():
    for text in _random_texts(500, seed=1):
        again = normalize(normalize(text).text)
        assert not any(again.changes.values()), repr(text)


# ----------------------------------------------------------------------------- language


def _pydoc_prose() -> list[str]:
    """Distinct prose paragraphs of the Python docs shipped with the interpreter."""
    from pydoc_data.topics import topics

    seen, out = set(), []
    for key in sorted(topics):
        for par in re.split(r"\n\s*\n", topics[key]):
            if par.startswith((" ", "\t", "+", "|", "*", "-", "=")) or "::=" in par:
                continue  # examples, grammar, tables and lists
            if ">>>" in par or len(par.split()) < 20 or par in seen:
                continue
            if not re.search(r"[.!?:][\"')”]*(\s|$)", par):
                continue  # no sentence: a list of signatures
            seen.add(par)
            out.append(par)
    return out


def test_english_prose_from_pydoc_is_supported():
    paragraphs = _pydoc_prose()
    assert len(paragraphs) > 300
    results = [language_check(normalize(p).text) for p in paragraphs]
    failed = [(r, p[:80]) for r, p in zip(results, paragraphs, strict=True) if not r["supported"]]
    assert not failed
    rates = np.array([r["english_function_word_fraction"] for r in results])
    plain = np.array([r["plain_word_fraction"] for r in results])
    # the docstring quotes these; keep them honest
    assert rates.min() >= N.MIN_FUNCTION_WORD_FRACTION + 0.05
    assert plain.min() >= N.MIN_PLAIN_WORD_FRACTION + 0.05
    assert min(r["latin_fraction"] for r in results) == 1.0
    print(f"pydoc prose: {len(paragraphs)} paragraphs, function-word fraction min "
          f"{rates.min():.3f} median {np.median(rates):.3f}; plain-word min {plain.min():.3f}")


def test_short_english_passes():
    r = language_check(ENGLISH)
    assert r["supported"] and r["reason"] is None
    assert r["words"] == len(ENGLISH.split())
    assert set(r) >= {"supported", "reason", "latin_fraction", "english_function_word_fraction",
                      "words"}


@pytest.mark.parametrize("lang", sorted(FOREIGN))
def test_other_languages_are_unsupported(lang):
    r = language_check(normalize(FOREIGN[lang]).text)
    assert not r["supported"]
    if lang in NON_LATIN:
        assert r["latin_fraction"] < 0.1
        assert "non-Latin" in r["reason"]
    else:
        assert r["latin_fraction"] == 1.0
        assert r["english_function_word_fraction"] < N.MIN_FUNCTION_WORD_FRACTION
        assert "English" in r["reason"]


@pytest.mark.parametrize("text", [
    "#!@ %%% ^^^ &&& *** ((( ))) 1234 5678",
    "{{ }} [[ ]] <<< >>> ||| ;;; ::: ~~~ ```",
    "self._cache[key] = fn(*args, **kwargs)\nreturn self._cache.get(key, None) or default_value()"
    "\nassert isinstance(obj, dict), repr(obj)\nwith open(path, 'rb') as f: data = f.read()",
])
def test_symbols_and_code_are_unsupported(text):
    r = language_check(normalize(text).text)
    assert not r["supported"]
    assert r["reason"] in ("no letters",) or "symbols or code" in r["reason"]


def test_too_few_words():
    r = language_check("Hello there")
    assert not r["supported"] and "too few words" in r["reason"]
    assert language_check("")["reason"] == "no letters"


def test_homoglyph_attack_does_not_break_language_check_after_normalize():
    spoofed = "".join("о" if c == "o" else "а" if c == "a" else c for c in ENGLISH)
    assert language_check(normalize(spoofed).text) == language_check(ENGLISH)


# ----------------------------------------------------------------------------- media decoding


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_replace_policy_records_count_and_first_offset(tmp_path):
    data = b"Hello \xff world, caf\xe9 and \xc3 more text\n"
    path = _write(tmp_path, "bad.txt", data)
    item = load(path, Limits(text_errors="replace"))
    assert item.modality == "text"
    assert item.content == "Hello \ufffd world, caf\ufffd and \ufffd more text\n"
    assert item.meta["decode"] == {"policy": "replace", "replaced": 3, "first_bad_offset": 6}


def test_replace_policy_does_not_count_genuine_replacement_characters(tmp_path):
    data = "real \ufffd here, ".encode() + b"bad \x80 byte"
    item = load(_write(tmp_path, "mixed.txt", data), Limits(text_errors="replace"))
    assert item.content.count("\ufffd") == 2
    assert item.meta["decode"]["replaced"] == 1
    assert item.meta["decode"]["first_bad_offset"] == data.index(b"\x80")


def test_replace_policy_on_clean_text_records_nothing_replaced(tmp_path):
    item = load(_write(tmp_path, "ok.txt", b"all good\n"), Limits(text_errors="replace"))
    assert item.meta["decode"] == {"policy": "replace", "replaced": 0, "first_bad_offset": None}


def test_strict_policy_meta_unchanged(tmp_path):
    item = load(_write(tmp_path, "ok.txt", b"all good\n"))
    assert "decode" not in item.meta


def test_replace_policy_offsets_count_the_bom(tmp_path):
    data = b"\xef\xbb\xbfabc\xffdef"
    item = load(_write(tmp_path, "bom.txt", data), Limits(text_errors="replace"))
    assert item.content == "abc\ufffddef"
    assert item.meta["decode"]["first_bad_offset"] == 6


def test_replace_policy_utf16(tmp_path):
    # a lone high surrogate (D800) followed by "x", plus a genuine U+FFFD
    data = codecs.BOM_UTF16_LE + "a\ufffd".encode("utf-16-le") + b"\x00\xd8" + b"x\x00"
    item = load(_write(tmp_path, "u16.txt", data), Limits(text_errors="replace"))
    assert item.meta["encoding"] == "utf-16"
    assert item.meta["decode"]["replaced"] == 1
    assert item.meta["decode"]["first_bad_offset"] == 6


def test_legacy_encoding_strict_error_names_file_and_byte(tmp_path):
    data = "A na\u00efve caf\u00e9 owner\n".encode("latin-1")
    path = _write(tmp_path, "latin1.txt", data)
    with pytest.raises(InputError) as info:
        load(path)
    assert str(path) in str(info.value)
    offset = data.index("\u00ef".encode("latin-1"))
    assert info.value.problem.startswith(f"bad UTF-8 at byte {offset}: ")


def test_legacy_encoding_with_replace_policy_loads(tmp_path):
    data = "A na\u00efve caf\u00e9 owner\n".encode("latin-1")
    item = load(_write(tmp_path, "latin1.txt", data), Limits(text_errors="replace"))
    assert item.content == "A na\ufffdve caf\ufffd owner\n"
    assert item.meta["decode"]["replaced"] == 2


def test_damaged_cyrillic_utf8_loads_only_with_replace():
    data = FOREIGN["russian"].encode()
    cut = data.index(b" ", 30) + 1  # a character boundary
    data = data[:cut] + b"\xff" + data[cut:]
    with pytest.raises(InputError):
        load_bytes(data, "ru.txt")  # strict: as before, not recognised as text
    item = load_bytes(data, "ru.txt", Limits(text_errors="replace"))
    assert item.meta["decode"] == {"policy": "replace", "replaced": 1, "first_bad_offset": cut}


def test_binary_is_still_refused_with_replace():
    data = bytes(np.random.default_rng(0).integers(0x80, 0x100, 4000, dtype=np.uint8))
    with pytest.raises(InputError, match="unrecognised format"):
        load_bytes(data, "blob.bin", Limits(text_errors="replace"))


def test_max_chars_error_names_the_file_under_both_policies(tmp_path):
    path = _write(tmp_path, "long.txt", b"x" * 50 + b"\xff" + b"y" * 50)
    for policy in ("strict", "replace"):
        with pytest.raises(InputError) as info:
            load(path, Limits(max_chars=20, text_errors=policy))
        assert str(path) in str(info.value)
    assert "text too long (101 characters > limit 20)" in str(info.value)


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="text_errors"):
        Limits(text_errors="ignore")
