"""Text recipes' pair planning: which human document each (real, synthetic) pair takes and its
split, as a pure function of the recipe, the seed and the documents' token counts (so a resumed
build plans the same pairs), plus the entry-naming helpers the recipe checks share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from detect.core.errors import ConfigError
from detect.io.corpus import SPLITS

from .sources import Document, documents, split_documents

TEXT_DEFAULTS: dict[str, Any] = {
    "lengths": [50, 100, 200, 400],  # length buckets, in tokens of the entry's tokenizer
    "prompt_tokens": 24,  # human tokens that open every synthetic item
    "doc_chars": 2400,  # target document size in characters
    "min_doc_chars": 200,  # shorter documents are dropped
    "batch_size": 8,  # generation block (fixed: part of what makes a build reproducible)
    "perplexity_docs": 100,  # human test documents each LM's perplexity is measured on
    "perplexity_tokens": 512,  # first tokens of each of them
}


def names(v: Any) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


def entry_name(syn: dict[str, Any]) -> str:
    return str(syn.get("name", syn["generator"]))


def real_name(real: dict[str, Any]) -> str:
    return str(real.get("name", real["source"]))


def sampling_configs(recipe: dict[str, Any], syn: dict[str, Any]) -> list[Any]:
    from .sampling import sampling_config

    cfgs = syn.get("sampling", recipe.get("sampling", [{"name": "sample"}]))
    if not isinstance(cfgs, list) or not cfgs:
        raise ConfigError(f"synthetic {entry_name(syn)!r}: sampling must be a non-empty list "
                          "of tables ([[synthetic.sampling]] or top-level [[sampling]])")
    out = [sampling_config(c) for c in cfgs]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"synthetic {entry_name(syn)!r}: sampling names repeat: {names}")
    return out



@dataclass
class Item:
    entry: int
    length: int
    i: int  # item number within (entry, length)
    index: int  # sample index within the entry (seed stream)
    sampling: Any
    split: str
    doc: Document

    def key(self, kind: str) -> str:
        return f"text:{self.entry}:{self.length}:{self.i}:{kind}"


def rank(seed: int, what: str) -> str:
    return hashlib.sha256(f"{seed}:{what}".encode()).hexdigest()


def in_slice(doc: Document, sl: list[int] | None, seed: int) -> bool:
    if sl is None:
        return True
    h = int(rank(seed, f"slice:{doc.source}\0{doc.origin}"), 16)
    return h % sl[1] == sl[0]


def item_split(seed: int, entry: int, length: int, i: int, probs: dict[str, float]) -> str:
    u = np.random.default_rng([seed, 7919, entry, length, i]).random()
    acc = 0.0
    for s, f in probs.items():
        acc += f
        if u < acc:
            return s
    return [s for s, f in probs.items() if f > 0][-1]



def plan_pairs(recipe: dict[str, Any], by_split: dict[str, list[Document]],
               n_tokens: dict[int, dict[str, list[int]]], where: str = "recipe") -> list[Item]:
    """Which document each pair takes, and its split: a pure function of the recipe, the seed
    and the documents' token counts (``n_tokens[entry][doc id]``), so a resumed build plans the
    same pairs. Long buckets pick first (long documents are scarcer); each document is used
    once; held-out items take test documents, the others a split drawn so that the item splits
    match ``[splits]`` overall."""
    seed = int(recipe["seed"])
    lengths = sorted(int(n) for n in {**TEXT_DEFAULTS, **recipe["text"]}["lengths"])
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    held_sampling = set(names(recipe.get("held_out_sampling")))
    held_gens = set(names(recipe.get("held_out_generators")))
    entries = [(si, syn, entry_name(syn), sampling_configs(recipe, syn))
               for si, syn in enumerate(recipe["synthetic"])]
    plan_total = plan_held = 0
    for _, syn, ename, samplings in entries:
        for i in range(int(syn["count"])):
            plan_total += len(lengths)
            if ename in held_gens or samplings[i % len(samplings)].name in held_sampling:
                plan_held += len(lengths)
    h = plan_held / plan_total if plan_total else 0.0
    p_test = max(0.0, (fractions["test"] - h) / (1 - h)) if h < 1 else 0.0
    # but never so few that the test split has no seen-config item: the held-out columns are
    # only meaningful next to the seen ones (at least half the recipe's test fraction)
    p_test = max(p_test, fractions["test"] / 2)
    rest = fractions["train"] + fractions["calib"]
    probs = {"train": (1 - p_test) * fractions["train"] / rest if rest else 0.0,
             "calib": (1 - p_test) * fractions["calib"] / rest if rest else 0.0,
             "test": p_test}
    used: set[str] = set()
    plan: list[Item] = []
    for length in sorted(lengths, reverse=True):
        li = lengths.index(length)
        for si, syn, ename, samplings in entries:
            count = int(syn["count"])
            for i in range(count):
                s = samplings[i % len(samplings)]
                held = ename in held_gens or s.name in held_sampling
                split = "test" if held else item_split(seed, si, length, i, probs)
                doc = next((d for d in by_split[split] if d.id not in used
                            and len(n_tokens[si][d.id]) >= length), None)
                if doc is None:
                    raise ConfigError(
                        f"{where}: the {split} split has no unused document of >= {length} "
                        f"tokens left for {ename} (item {i} of {count}); lower the counts or "
                        "lengths, add [[real]] sources, or change [splits]")
                used.add(doc.id)
                plan.append(Item(si, length, i, li * count + i, s, split, doc))
    return plan


def load_documents(recipe: dict[str, Any]) -> tuple[list[Document], dict[str, str],
                                                     dict[str, str], dict[str, list[Document]]]:
    """The recipe's human documents: (documents, id -> split, id -> [[real]] name, split ->
    documents in the seeded order pairs pick them)."""
    seed = int(recipe["seed"])
    cfg = {**TEXT_DEFAULTS, **recipe["text"]}
    fractions = {s: float(recipe["splits"].get(s, 0.0)) for s in SPLITS}
    docs: list[Document] = []
    split_of: dict[str, str] = {}
    real_of: dict[str, str] = {}
    for ri, real in enumerate(recipe["real"]):
        ds = documents(str(real["source"]), target_chars=cfg["doc_chars"],
                       min_chars=cfg["min_doc_chars"], limit=real.get("limit"))
        split_of.update(split_documents(ds, fractions, seed + ri))
        real_of.update({d.id: real_name(real) for d in ds})
        docs += ds
    by_split = {s: sorted((d for d in docs if split_of[d.id] == s),
                          key=lambda d: rank(seed, f"doc:{d.id}")) for s in SPLITS}
    return docs, split_of, real_of, by_split


def train_documents(recipe: dict[str, Any], si: int, docs: list[Document],
                    split_of: dict[str, str], real_of: dict[str, str]) -> list[Document]:
    """The documents synthetic entry ``si`` learns from: train split, its ``train_on`` sources,
    its ``train_slice`` of their origins."""
    syn = recipe["synthetic"][si]
    train_on = set(names(syn.get("train_on"))) or {real_name(r) for r in recipe["real"]}
    return [d for d in docs if split_of[d.id] == "train" and real_of[d.id] in train_on
            and in_slice(d, syn.get("train_slice"), int(recipe["seed"]))]
