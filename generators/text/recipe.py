"""Text corpus recipes (``modality = "text"``): human documents and LM continuations, paired.

Every pair takes one human document: the real item is its first ``length`` tokens, the
synthetic item its first ``prompt_tokens`` tokens continued by a language model to ``length``
tokens in all (both decoded by the same tokenizer, so the prompt part is byte-identical). Both
carry the document id as ``group`` and share its split, so topic cannot separate the classes.
Each document is used once; documents of one origin (topic, module, file) share a split.

Language models train on documents of the *train* split only (optionally one ``train_on``
source and one ``train_slice`` of it, so two LMs can learn from disjoint text), and their
held-out perplexity on human test documents goes into the corpus header. Sampling configs are
cycled over an entry's items; a ``held_out_sampling`` config and ``held_out_generators`` go to
the test split only. Generation runs in fixed aligned blocks of ``batch_size`` items, each with
its own seed stream, so a resumed build makes exactly the bytes an unbroken one made.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError
from detect.core.registry import generators
from detect.core.types import Provenance, Sample
from detect.io.corpus import SPLITS, Corpus, CorpusWriter

from .plan import (
    TEXT_DEFAULTS,
    Item,
    entry_name,
    load_documents,
    names,
    plan_pairs,
    real_name,
    sampling_configs,
    train_documents,
)
from .sources import TEXT_SOURCES, Document

WATERMARKS = ("kgw", "synthid")

__all__ = ["TEXT_DEFAULTS", "WATERMARKS", "build", "check", "plan_pairs", "publish_evidence"]


def check(recipe: dict[str, Any], where: str) -> None:
    """Validate the text-specific parts of a recipe; errors name the file and the field."""
    if recipe.get("postprocess"):
        raise ConfigError(f"{where}: [[postprocess]] is for image recipes")
    text = recipe["text"]
    unknown = sorted(set(text) - set(TEXT_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: [text] has unknown field(s) {unknown} "
                          f"(known: {', '.join(TEXT_DEFAULTS)})")
    cfg = {**TEXT_DEFAULTS, **text}
    lengths = cfg["lengths"]
    p = cfg["prompt_tokens"]
    if not isinstance(p, int) or p < 1:
        raise ConfigError(f"{where}: [text] prompt_tokens must be a positive integer")
    if (not isinstance(lengths, list) or not lengths
            or not all(isinstance(n, int) and n > p for n in lengths)
            or len(set(lengths)) != len(lengths)):
        raise ConfigError(f"{where}: [text] lengths must be distinct integers above "
                          f"prompt_tokens ({p})")
    for k in ("doc_chars", "batch_size", "perplexity_docs", "perplexity_tokens"):
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise ConfigError(f"{where}: [text] {k} must be a positive integer")
    reals = recipe["real"]
    for r in reals:
        if "source" not in r:
            raise ConfigError(f"{where}: every [[real]] needs a source "
                              f"({', '.join(TEXT_SOURCES)} or folder:PATH)")
        src = str(r["source"])
        if src not in TEXT_SOURCES and not src.startswith("folder:"):
            raise ConfigError(f"{where}: [[real]] source {src!r} is not a text source "
                              f"({', '.join(TEXT_SOURCES)} or folder:PATH)")
    for field, vals in (("[[real]] source", [str(r["source"]) for r in reals]),
                        ("[[real]] name", [real_name(r) for r in reals])):
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{where}: {field}s must be distinct, got {vals}")
    real_names = {real_name(r) for r in reals}
    entries = recipe["synthetic"]
    if not entries:
        raise ConfigError(f"{where}: a text recipe needs at least one [[synthetic]]")
    sampling_names: set[str] = set()
    for s in entries:
        if "generator" not in s or "count" not in s:
            raise ConfigError(f"{where}: every [[synthetic]] needs generator and count")
        if s["generator"] not in generators:
            generators.entry(s["generator"])  # raises with close matches
        cls = generators.get_class(s["generator"])
        if getattr(cls, "modality", "image") != "text":
            raise ConfigError(f"{where}: generator {s['generator']!r} makes "
                              f"{getattr(cls, 'modality', 'image')}, not text")
        if not isinstance(s["count"], int) or s["count"] < 0:
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r}: count must be an "
                              "integer >= 0 (pairs per length bucket)")
        missing = [n for n in names(s.get("train_on")) if n not in real_names]
        if missing:
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r} trains on {missing}, not "
                              f"[[real]] names ({', '.join(sorted(real_names))})")
        sl = s.get("train_slice")
        if sl is not None and not (isinstance(sl, list) and len(sl) == 2
                                   and all(isinstance(x, int) for x in sl)
                                   and 0 <= sl[0] < sl[1]):
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r}: train_slice must be "
                              "[k, n] with 0 <= k < n")
        src = s.get("tokenizer_from")
        earlier = [entry_name(x) for x in entries[:entries.index(s)]]
        if src is not None and src not in earlier:
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r}: tokenizer_from must name "
                              f"an earlier [[synthetic]] entry ({earlier or 'none'})")
        if src is not None and "tokenizer" in s.get("params", {}):
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r}: tokenizer_from and "
                              "params.tokenizer exclude each other")
        wm = s.get("watermark")
        if wm is not None and wm not in WATERMARKS:
            raise ConfigError(f"{where}: synthetic {entry_name(s)!r}: watermark must be one of "
                              f"{list(WATERMARKS)}, got {wm!r}")
        try:
            sampling_names |= {c.name for c in sampling_configs(recipe, s)}
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    enames = [entry_name(s) for s in entries]
    if len(set(enames)) != len(enames):
        raise ConfigError(f"{where}: [[synthetic]] names must be distinct (set name = ...), "
                          f"got {enames}")
    bad = [n for n in names(recipe.get("held_out_sampling")) if n not in sampling_names]
    if bad:
        raise ConfigError(f"{where}: held_out_sampling names {bad}, but the sampling configs "
                          f"are {sorted(sampling_names)}")
    held = names(recipe.get("held_out_generators"))
    bad = [n for n in held if n not in enames]
    if bad:
        raise ConfigError(f"{where}: held_out_generators names {bad}, but the [[synthetic]] "
                          f"entries are {enames}")
    if set(enames) <= set(held):
        raise ConfigError(f"{where}: held_out_generators holds out every generator; training "
                          "would see no synthetic items")


# ---------------------------------------------------------------------------------------------
# the build


def _resolved(recipe: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The [[synthetic]] entries with ``tokenizer_from`` turned into the ``tokenizer`` folder
    of that (earlier) entry, so two LMs share one vocabulary (what observer / performer pairs
    such as Binoculars need)."""
    names = [entry_name(s) for s in recipe["synthetic"]]
    syns = []
    for syn in recipe["synthetic"]:
        src = syn.get("tokenizer_from")
        if src is not None:
            sj = names.index(src)
            tdir = (out / "generators" / f"{sj}-{src}" / "tokenizer").resolve()
            syn = {**syn, "params": {**syn.get("params", {}), "tokenizer": str(tdir)}}
        syns.append(syn)
    return syns


def _generator(syn: dict[str, Any], si: int, seed: int, lengths: list[int] | None = None
               ) -> Any:
    """A fresh generator for the entry (seed: recipe seed + entry number, unless given)."""
    import inspect

    cls = generators.get_class(syn["generator"])
    params = dict(syn.get("params", {}))
    if "seed" in inspect.signature(cls.__init__).parameters:
        params.setdefault("seed", seed + si)
    gen = generators.create(syn["generator"], **params)
    n_pos = getattr(gen, "n_positions", None)
    if lengths and n_pos is not None and n_pos < max(lengths):
        raise ConfigError(f"synthetic {entry_name(syn)!r}: {syn['generator']} has n_positions "
                          f"{n_pos}, below the longest length bucket {max(lengths)}")
    return gen


def _tokenizer(syn: dict[str, Any], si: int, gdir: Path, train: list[Document], seed: int,
               lengths: list[int]) -> Any:
    """The entry's tokenizer: its saved LM's, or the one its ``fit`` will train (kept in the
    generator folder, so planning costs one tokenizer training, not an LM's)."""
    from .base import META_FILE
    from .tokenizer import load_tokenizer

    if (gdir / "model" / META_FILE).exists() and (gdir / "model" / "tokenizer.json").exists():
        return load_tokenizer(gdir / "model")
    gen = _generator(syn, si, seed, lengths)
    if getattr(gen, "trainable", True) and not train:
        raise ConfigError(f"synthetic {entry_name(syn)!r}: no train-split document to learn "
                          "from (check train_on / train_slice)")
    return gen.prepare_tokenizer(train, gdir)


def _trained_lm(syn: dict[str, Any], si: int, gdir: Path, train: list[Document],
                ppl_texts: list[str], cfg: dict[str, Any], seed: int, progress: bool) -> Any:
    """Load the LM finished in ``gdir/model``, or train it there (resuming a checkpoint), measure
    its held-out perplexity, save it, and load it back (so a fresh and a resumed build continue
    from the same state)."""
    from .base import META_FILE, load_text_generator

    mdir = gdir / "model"
    if (mdir / META_FILE).exists():
        return load_text_generator(mdir)
    gname = syn["generator"]
    gen = _generator(syn, si, seed, cfg["lengths"])
    if getattr(gen, "trainable", True):
        print(f"unmask: training {entry_name(syn)} ({gname}) on {len(train)} documents",
              file=sys.stderr)
        gen.fit(train, workdir=gdir, progress=progress)
    else:
        gen.prepare()
    ev = gen.evaluate(ppl_texts, max_tokens=cfg["perplexity_tokens"])
    if hasattr(gen, "untrained"):
        ev["untrained_perplexity"] = gen.untrained().perplexity(
            ppl_texts, max_tokens=cfg["perplexity_tokens"])
    gen.save(mdir)
    return load_text_generator(mdir)


def _watermark_key(syn: dict[str, Any], si: int, gen: Any, out: Path, name: str,
                   seed: int) -> Any:
    """The entry's key, written into ``out/keys/`` (a secret derived from the recipe seed:
    whoever holds the recipe can rebuild it; the corpus is a benchmark, not a deployment)."""
    from detect.evidence.watermark.text_keys import TextWatermarkKey
    from generators.base import sample_seed

    scheme = syn.get("watermark")
    if scheme is None:
        return None
    path = out / "keys" / f"{si}-{entry_name(syn)}.json"
    if path.exists():
        return TextWatermarkKey.load(path)
    key = TextWatermarkKey.new(scheme, gen.tokenizer_, seed=sample_seed(seed, 90_000 + si),
                               vocab_size=gen.model_.config.vocab_size,
                               name=f"{name}:{entry_name(syn)}",
                               **syn.get("watermark_params", {}))
    key = key.replace(tokenizer=str((out / "generators" / f"{si}-{entry_name(syn)}" /
                                     "model").resolve()))
    key.save(path)
    return key


def _write_samples(gen: Any, path: Path, prompts: list[list[int]], samplings: list[Any],
                   key: Any, seed: int) -> None:
    """A few continuations per sampling config, to read: evidence of what the LM writes."""
    lines = [f"# {gen.name}: held-out prompts continued by each sampling config\n"]
    for s in samplings:
        for k, p in enumerate(prompts):
            new = gen.generate_ids(p, sampling=s, seed=seed, index=k, max_new_tokens=60,
                                   watermark=key)
            lines.append(f"## {s.name} #{k}\n\n{gen.decode(p)} [...] {gen.decode(new)}\n")
    path.write_text("\n".join(lines), encoding="utf-8")


def build(recipe: dict[str, Any], recipe_path: str | Path, out: str | Path, *,
               seed: int | None = None, progress: bool = True) -> Corpus:
    """Write the text corpus of a checked recipe into ``out`` (resuming what is there)."""
    from tqdm.auto import tqdm

    if seed is not None:
        recipe["seed"] = seed
    seed = int(recipe["seed"])
    cfg = {**TEXT_DEFAULTS, **recipe["text"]}
    lengths = sorted(int(n) for n in cfg["lengths"])
    n_prompt = int(cfg["prompt_tokens"])
    held_sampling = set(names(recipe.get("held_out_sampling")))
    held_gens = set(names(recipe.get("held_out_generators")))
    out = Path(out)
    docs, split_of, real_of, by_split = load_documents(recipe)
    pairs = sum(int(syn["count"]) for syn in recipe["synthetic"]) * len(lengths)
    if pairs > len(docs):  # said before any LM trains
        raise ConfigError(f"{recipe_path}: the recipe needs {pairs} documents (one per pair); "
                          f"its [[real]] sources give {len(docs)}: lower the counts or add "
                          "sources")
    ppl_texts = [d.text for d in by_split["test"][:cfg["perplexity_docs"]]]
    if not ppl_texts:
        raise ConfigError(f"{recipe_path}: no test document to measure perplexity on")

    # -- which document each pair takes: planned with the tokenizers, before any LM trains ---
    trains = [train_documents(recipe, si, docs, split_of, real_of)
              for si in range(len(recipe["synthetic"]))]
    syns = _resolved(recipe, out)
    n_tokens: dict[int, dict[str, list[int]]] = {}
    for si, syn in enumerate(syns):
        gdir = out / "generators" / f"{si}-{entry_name(syn)}"
        tok = _tokenizer(syn, si, gdir, trains[si], seed, lengths)
        ids = tok([d.text for d in docs], add_special_tokens=False)["input_ids"]
        n_tokens[si] = {d.id: list(x) for d, x in zip(docs, ids, strict=True)}
    plan = plan_pairs(recipe, by_split, n_tokens, str(recipe_path))
    writer = CorpusWriter(out, name=recipe["name"], recipe=recipe, seed=seed)

    # -- language models -------------------------------------------------------------------
    extra: dict[str, Any] = {"modality": "text", "text": cfg, "generators": {},
                             "held_out_sampling": sorted(held_sampling),
                             "held_out_generators": sorted(held_gens)}
    entries = []
    for si, syn in enumerate(syns):
        ename = entry_name(syn)
        gdir = out / "generators" / f"{si}-{ename}"
        gen = _trained_lm(syn, si, gdir, trains[si], ppl_texts, cfg, seed, progress)
        samplings = sampling_configs(recipe, syn)
        key = _watermark_key(syn, si, gen, out, recipe["name"], seed)
        if not (gdir / "samples.md").exists():
            prompts = [gen.encode(t)[:n_prompt] for t in ppl_texts[:2]]
            _write_samples(gen, gdir / "samples.md", prompts, samplings, key, seed + 20_000)
        ev = getattr(gen, "heldout_", None) or {}
        extra["generators"][f"{si}-{ename}"] = {
            "name": syn["generator"], "entry": ename, "family": gen.family,
            "checkpoint_sha256": gen.checkpoint_sha256_, "params": gen.get_params(),
            "n_params": gen.n_params() if hasattr(gen, "n_params") else None,
            "held_out": ename in held_gens,
            "train_on": sorted(names(syn.get("train_on"))) or None,
            "train_slice": syn.get("train_slice"),
            "train_data": getattr(gen, "train_data_", None),
            "heldout_perplexity": ev.get("perplexity"),
            "untrained_perplexity": ev.get("untrained_perplexity"),
            "quality": ev,
            "sampling": [s.to_dict() for s in samplings],
            "watermark": None if key is None else {"scheme": key.scheme,
                                                   "fingerprint": key.fingerprint,
                                                   "key_file": f"keys/{si}-{ename}.json"},
        }
        entries.append((si, syn, ename, gen, samplings, key))

    # -- write pairs, generating in fixed aligned blocks -------------------------------------
    by_entry = {si: (syn, ename, gen, key) for si, syn, ename, gen, _, key in entries}
    groups: dict[tuple[int, int, str], list[Item]] = {}
    for it in sorted(plan, key=lambda it: (it.entry, it.length, it.i)):
        groups.setdefault((it.entry, it.length, it.sampling.name), []).append(it)
    bsz = int(cfg["batch_size"])
    bar = tqdm(total=len(plan), desc="text pairs", file=sys.stderr, disable=not progress,
               leave=False)
    for (si, length, _), items in groups.items():
        syn, ename, gen, key = by_entry[si]
        sseed = seed + 10_000 + si
        for b in range(0, len(items), bsz):
            block = items[b:b + bsz]
            todo = {it.key("fake") for it in block if not (writer.has(it.key("real"))
                                                           and writer.has(it.key("fake")))}
            if not todo:
                bar.update(len(block))
                continue
            prompts = [n_tokens[si][it.doc.id][:n_prompt] for it in block]
            fakes = gen.sample([it.index for it in block], sseed, prompts=prompts,
                               sampling=block[0].sampling, max_new_tokens=length - n_prompt,
                               watermark=key, batch_size=bsz)
            for it, fake in zip(block, fakes, strict=True):
                if it.key("fake") in todo:
                    _add_pair(writer, it, fake, ename, gen.decode(n_tokens[si][it.doc.id][:length]),
                              len(n_tokens[si][it.doc.id][:length]))
            bar.update(len(block))
    bar.close()

    # -- header ------------------------------------------------------------------------------
    per_bucket: Counter[tuple[str, str, int]] = Counter(
        (r.split, "synthetic" if r.label else "real", int(r.provenance["params"]["length_bucket"]))
        for r in writer.records)
    extra["counts_by_length"] = {s: {lab: {str(n): per_bucket[(s, lab, n)] for n in lengths}
                                     for lab in ("real", "synthetic")} for s in SPLITS}
    extra["documents"] = {
        "available": {s: len(v) for s, v in by_split.items()},
        "used": dict(sorted(Counter(it.split for it in plan).items())),
        "by_source": dict(sorted(Counter(d.source for d in docs).items())),
        "python": sys.version.split()[0],
    }
    return writer.close(extra)


def _add_pair(writer: CorpusWriter, it: Item, fake: Sample, ename: str, real: str,
              real_tokens: int) -> None:
    """The pair of ``it``: its human text ``real`` (``real_tokens`` tokens) and the LM's
    continuation ``fake`` of its prompt (from ``sample``), both grouped by the document."""
    common = {"length_bucket": it.length, "document": it.doc.id}
    real_sha = hashlib.sha256(real.encode("utf-8")).hexdigest()
    if not writer.has(it.key("real")):
        writer.add(Sample(real, "text", 0, Provenance(
            kind="real", source=f"{it.doc.source}:{it.doc.origin}",
            params={**common, "tokens": real_tokens, "tokenizer_of": ename}),
            group=it.doc.id), it.split, it.key("real"))
    if not writer.has(it.key("fake")):
        fake.provenance.params.update(entry=ename, source=it.doc.source, **common)
        fake.provenance.parent = real_sha
        fake.group = it.doc.id
        writer.add(fake, it.split, it.key("fake"))


def publish_evidence(corpus: Corpus, d: Path) -> Path:
    """Each LM's sample continuations and held-out perplexity (against its untrained self),
    plus a summary table, in ``d``: the evidence that every LM learned."""
    import json
    import shutil

    rows = ["| entry | generator | parameters | held out | train tokens | perplexity (human "
            "test) | untrained | samples |", "|---|---|---|---|---|---|---|---|"]
    for key, g in corpus.header.get("generators", {}).items():
        src = corpus.root / "generators" / key
        if (src / "samples.md").exists():
            shutil.copy(src / "samples.md", d / f"{key}-samples.md")
        (d / f"{key}-quality.json").write_text(json.dumps(g.get("quality") or {}, indent=2)
                                               + "\n")
        ppl, base = g.get("heldout_perplexity"), g.get("untrained_perplexity")
        rows.append(f"| {g.get('entry', key)} | {g['name']} | {g.get('n_params') or '-'} | "
                    f"{g.get('held_out', False)} | "
                    f"{(g.get('train_data') or {}).get('tokens', '-')} | "
                    f"{'-' if ppl is None else f'{ppl:.1f}'} | "
                    f"{'-' if base is None else f'{base:.1f}'} | [{key}]({key}-samples.md) |")
    head = (f"# Language models of corpus `{corpus.header['name']}`\n\n"
            f"Recipe seed {corpus.header['seed']}, content hash "
            f"`{corpus.content_hash[:16]}`. Perplexity per token of the LM's own tokenizer on "
            "the first tokens of human test documents no LM trained on; `untrained` is the same "
            "model at initialisation.\n\n")
    (d / "README.md").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")
    return d
