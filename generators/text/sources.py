"""Human documents from text that ships with Python or Debian (no downloads), or a user's folder.

Sources:

- ``pydoc``: the prose of Python's bundled topic help (``pydoc_data.topics``); origin = topic.
- ``docstrings``: module, class and function docstrings of the Python standard library, read
  with ``ast`` from the source files (nothing is imported); prose paragraphs only (doctests,
  indented code, argument lists and symbol-heavy paragraphs are dropped); origin = module file.
- ``jargon``: the Jargon File from Debian's ``jargon-text`` package; origin = chapter, appendix
  or glossary letter.
- ``folder:PATH``: a user's ``.txt`` / ``.md`` files; origin = file.

A :class:`Document` joins consecutive paragraphs of one origin up to a target size, so it is
long enough for a 400-token continuation. Paragraphs are de-duplicated within a source (the
stdlib repeats some docstrings word for word) so one text cannot sit in two splits. Splits are
by origin: every document of a topic, module or file lands in the same split. The text depends
on the Python version (``pydoc_data`` and the stdlib change between releases): the same recipe
and seed give the same documents on the same Python.
"""

from __future__ import annotations

import ast
import functools
import gzip
import re
import sys
import sysconfig
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError

TEXT_SOURCES = ("pydoc", "docstrings", "jargon")
JARGON = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
# stdlib folders that hold tests, generated codecs, build data or another source's text
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
                "encodings", "__phello__", "pydoc_data"}


@dataclass(frozen=True)
class Document:
    """One human document: consecutive prose paragraphs of one origin."""

    id: str  # "<source>:<origin>#<k>", stable for the same source text
    text: str
    source: str  # "pydoc", "docstrings", "jargon", "folder:/abs/path"
    origin: str  # topic, module file, chapter / glossary letter, or file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# pydoc (also the paragraphs of benchmarks/text_watermark.py)


def _pydoc_topics() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[name]):
            lines = para.split("\n")
            if any(ln.startswith(" ") for ln in lines):  # indented = code or grammar
                continue
            if re.search(r"[|]|::=|\*\*\*|===|---|\+\+", para):
                continue
            text = " ".join(ln.strip() for ln in lines).strip()
            if len(text.split()) >= 8:
                yield name, text


def prose_paragraphs() -> list[str]:
    """The prose paragraphs of Python's bundled topic help (no code, grammar or tables)."""
    return [text for _, text in _pydoc_topics()]


def split_paragraphs(holdout_every: int = 4) -> tuple[list[str], list[str]]:
    """(train, held-out): every ``holdout_every``-th paragraph is held out."""
    paras = prose_paragraphs()
    held = paras[holdout_every - 1::holdout_every]
    train = [p for i, p in enumerate(paras) if i % holdout_every != holdout_every - 1]
    return train, held


# ---------------------------------------------------------------------------------------------
# prose filter shared by docstrings, jargon and folders

_SYMBOLS = set("()[]{}=<>_*`|\\#@$%^~;")
_ENDS = re.compile(r"[.!?:][\"')\u2019\u201d]*$")


def _is_prose(para: str, min_words: int = 8) -> str | None:
    """The paragraph as one line if it reads as prose, else None.

    Dropped: doctests, indented lines (code, argument lists), field lists (``:param x:``),
    reST tables and headings, symbol-heavy or non-letter-heavy text, and paragraphs that do not
    end a sentence (fragments, titles).
    """
    lines = textwrap.dedent(para).strip("\n").split("\n")
    if any(ln[:1] in (" ", "\t") for ln in lines):
        return None
    if ">>>" in para or "::=" in para or any(re.match(r"\s*:\w+", ln) for ln in lines):
        return None
    if re.search(r"={3,}|-{3,}|\*{3,}|\+\+|\|\s", para):
        return None
    text = " ".join(ln.strip() for ln in lines).strip()
    if len(text.split()) < min_words:
        return None
    if sum(c in _SYMBOLS for c in text) > 0.04 * len(text):
        return None
    if sum(c.isalpha() or c == " " for c in text) < 0.8 * len(text):
        return None
    return text if _ENDS.search(text) else None


def _stdlib_files() -> tuple[Path, list[Path]]:
    import os

    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for dp, dns, fns in os.walk(root):
        dns[:] = sorted(d for d in dns if d not in _STDLIB_SKIP and not d.startswith((".",
                        "config-")))
        files += [Path(dp) / f for f in sorted(fns) if f.endswith(".py")]
    return root, sorted(files, key=lambda p: p.relative_to(root).as_posix())


@functools.lru_cache(maxsize=1)
def _docstrings() -> tuple[tuple[str, str], ...]:
    """(module file, paragraph) in file order, then source order. Parsed, never imported."""
    root, files = _stdlib_files()
    if not files:
        raise ConfigError(f"source 'docstrings': no standard-library sources under {root}")
    out: list[tuple[str, str]] = []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for f in files:
        try:
            tree = ast.parse(f.read_bytes(), filename=str(f))
        except (SyntaxError, ValueError, OSError):
            continue  # a few stdlib files hold Python 2 fixtures or templates
        origin = f.relative_to(root).as_posix()
        nodes = sorted((n for n in ast.walk(tree) if isinstance(n, kinds)),
                       key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        for node in nodes:
            doc = ast.get_docstring(node, clean=True)
            if not doc:
                continue
            for para in re.split(r"\n\s*\n", doc):
                text = _is_prose(para)
                if text:
                    out.append((origin, text))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the Jargon File (Debian jargon-text)


def _jargon() -> Iterator[tuple[str, str]]:
    if not JARGON.is_file():
        raise ConfigError(f"source 'jargon' needs Debian's jargon-text package ({JARGON} is "
                          "missing): sudo apt-get install jargon-text")
    with gzip.open(JARGON, "rt", encoding="utf-8") as fh:
        raw = fh.read()
    origin, in_glossary = "front", False
    for block in re.split(r"\n\s*\n", raw):
        block = block.strip("\n")
        if not block.strip():
            continue
        if not block[0].isspace():  # an unindented line is a heading
            head = block.strip()
            m = re.match(r"(Chapter \d+|Appendix [A-Z])\.", head)
            if m:
                origin, in_glossary = m.group(1).lower().replace(" ", "-"), False
            elif head in ("Glossary", "Bibliography"):
                origin, in_glossary = head.lower(), head == "Glossary"
            continue
        body = textwrap.dedent(block)
        entry = re.match(r":([^:\n]+):", body)
        if entry:
            if in_glossary:
                first = entry.group(1).strip()[:1].upper()
                origin = f"glossary-{first if first.isalpha() else '0'}"
            continue  # the headword line itself: term, pronunciation, part of speech
        text = _is_prose(re.sub(r"\{([^{}]*)\}", r"\1", body))
        if text and origin != "front":
            yield origin, text


# ---------------------------------------------------------------------------------------------
# a user's folder


def _folder(path: Path) -> Iterator[tuple[str, str]]:
    if not path.is_dir():
        raise ConfigError(f"text folder {path} does not exist")
    files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in
                    (".txt", ".md") and not any(part.startswith(".") for part in
                                                p.relative_to(path).parts)),
                   key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise ConfigError(f"text folder {path} holds no .txt or .md files")
    for f in files:
        try:
            raw = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            print(f"unmask: skipping {f}: not UTF-8 text ({e.__class__.__name__})",
                  file=sys.stderr)
            continue
        if f.suffix.lower() == ".md":
            raw = re.sub(r"(?ms)^(```|~~~).*?^\1[^\n]*$", "", raw)  # fenced code blocks
        origin = f.relative_to(path).as_posix()
        for para in re.split(r"\n\s*\n", raw):
            lines = [ln for ln in para.strip("\n").split("\n") if ln.strip()]
            if not lines or lines[0].lstrip().startswith(("#", "|", "<")):
                continue  # markdown headings, tables, html
            text = " ".join(ln.strip() for ln in lines)
            if len(text.split()) >= 3:
                yield origin, text


# ---------------------------------------------------------------------------------------------
# documents and splits


def source_paragraphs(source: str) -> list[tuple[str, str]]:
    """(origin, paragraph) of a source in a fixed order, each paragraph text once."""
    if source == "pydoc":
        items: Iterator[tuple[str, str]] | Sequence[tuple[str, str]] = _pydoc_topics()
    elif source == "docstrings":
        items = _docstrings()
    elif source == "jargon":
        items = _jargon()
    elif source.startswith("folder:"):
        items = _folder(Path(source.split(":", 1)[1]).expanduser())
    else:
        raise ConfigError(f"unknown text source {source!r}; sources are "
                          f"{', '.join(TEXT_SOURCES)} or folder:PATH")
    seen: set[str] = set()
    out = []
    for origin, text in items:
        if text not in seen:
            seen.add(text)
            out.append((origin, text))
    return out


def _source_name(source: str) -> str:
    if source.startswith("folder:"):
        return "folder:" + str(Path(source.split(":", 1)[1]).expanduser().resolve())
    return source


def documents(source: str, *, target_chars: int = 2400, min_chars: int = 200,
              limit: int | None = None) -> list[Document]:
    """Documents of ``source``: consecutive paragraphs of one origin joined (blank line between)
    until ``target_chars``; a short tail joins the document before it; documents under
    ``min_chars`` (a short origin) are dropped. ``limit`` keeps the first n documents."""
    if target_chars < 1 or min_chars < 0:
        raise ConfigError("target_chars must be >= 1 and min_chars >= 0")
    name = _source_name(source)
    by_origin: dict[str, list[str]] = {}
    for origin, text in source_paragraphs(source):
        by_origin.setdefault(origin, []).append(text)
    docs: list[Document] = []
    for origin, paras in by_origin.items():
        chunks: list[str] = []
        cur: list[str] = []
        for p in paras:
            cur.append(p)
            if sum(len(x) + 2 for x in cur) - 2 >= target_chars:
                chunks.append("\n\n".join(cur))
                cur = []
        if cur:
            tail = "\n\n".join(cur)
            if chunks and len(tail) < min_chars:
                chunks[-1] = chunks[-1] + "\n\n" + tail
            else:
                chunks.append(tail)
        docs += [Document(f"{name}:{origin}#{k}", c, name, origin)
                 for k, c in enumerate(chunks) if len(c) >= min_chars]
    if not docs:
        raise ConfigError(f"text source {source!r} gave no document of {min_chars}+ characters")
    return docs[:limit] if limit is not None else docs


def split_documents(docs: Sequence[Document], fractions: dict[str, float], seed: int
                    ) -> dict[str, str]:
    """document id -> split. Whole origins are assigned (seeded), so no topic, module or file
    contributes to two splits."""
    from generators.sources import assign_splits

    origins = sorted({f"{d.source}\0{d.origin}" for d in docs})
    try:
        of = assign_splits(origins, fractions, seed)
    except ConfigError as e:
        raise ConfigError(f"text documents: {len(origins)} origin(s) cannot fill the splits "
                          f"({e})") from None
    return {d.id: of[f"{d.source}\0{d.origin}"] for d in docs}
