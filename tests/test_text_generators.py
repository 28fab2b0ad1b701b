"""Text generators: human documents, tiny GPT-2s trained here, pretrained LMs from a folder, and
text corpus recipes (pairs, splits, held-out sampling, determinism, resumption).

Everything runs the real classes at tiny sizes: a 2-layer GPT-2 with a 512-token BPE trained
for a few seconds on Python's own documentation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
import transformers  # noqa: F401  (hard dependencies: missing is a failure, never a skip)

from detect.core.errors import ConfigError, ModelError
from detect.core.registry import generators
from detect.evidence.watermark.text import verify_text
from detect.evidence.watermark.text_keys import TextWatermarkKey
from detect.io.corpus import Corpus, CorpusWriter
from generators import checkpoint
from generators.recipe import build, load_recipe
from generators.text import sources
from generators.text.base import load_text_generator
from generators.text.lm import CausalLM
from generators.text.pretrained import PretrainedCausalLM
from generators.text.sampling import sampling_config
from generators.text.sources import documents, split_documents

REPO = Path(__file__).resolve().parents[1]
TINY_TEXT = REPO / "datasets" / "recipes" / "text-tiny-test.toml"
FRACTIONS = {"train": 0.6, "calib": 0.15, "test": 0.25}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- human documents ------------------------------------------------------------------------------
@pytest.mark.slow
def test_pydoc_and_docstring_documents_record_their_source():
    for src in ("pydoc", "docstrings"):
        docs = documents(src)
        assert len(docs) > 50, src
        assert len({d.id for d in docs}) == len(docs)
        assert all(d.source == src and d.origin and len(d.text) >= 200 for d in docs)
    assert documents("pydoc") == documents("pydoc")  # deterministic order and content
    doc = docs
    assert not any(">>>" in d.text for d in doc)  # doctests dropped
    assert any(d.origin == "json/__init__.py" for d in doc)  # origin = module file
    assert max(len(d.text) for d in doc) > 1500  # long enough for 400-token continuations


def test_jargon_source_or_a_clear_error(monkeypatch, tmp_path):
    from conftest import require_setup

    present = sources.JARGON.is_file()
    if present:
        docs = documents("jargon")
        assert len(docs) > 100 and all(d.source == "jargon" for d in docs)
        assert not any(d.text.lstrip().startswith(":") for d in docs)  # headword lines dropped
    monkeypatch.setattr(sources, "JARGON", tmp_path / "missing.txt.gz")
    with pytest.raises(ConfigError, match="jargon-text"):
        documents("jargon")
    require_setup(present, "Debian's jargon-text")  # the error is tested above either way


def test_folder_source(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("First paragraph of a plain text file, long enough.\n\n"
                                    "Second paragraph.\nIt wraps over lines.\n")
    (tmp_path / "sub" / "b.md").write_text("# Title\n\nSome prose in markdown here.\n\n"
                                           "```python\nprint('code is dropped')\n```\n")
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe not utf-8 \x80")
    docs = documents(f"folder:{tmp_path}", min_chars=10)
    assert [d.origin for d in docs] == ["a.txt", "sub/b.md"]
    assert "It wraps over lines." in docs[0].text and "\n\n" in docs[0].text
    assert "code is dropped" not in docs[1].text and "Title" not in docs[1].text
    assert docs[0].source == f"folder:{tmp_path.resolve()}"
    assert "c.txt" in capsys.readouterr().err  # said, not silently skipped
    with pytest.raises(ConfigError, match="unknown text source"):
        documents("gutenberg")


def test_splits_are_by_origin_and_seeded():
    docs = documents("pydoc", target_chars=800)
    a = split_documents(docs, FRACTIONS, 3)
    assert a == split_documents(docs, FRACTIONS, 3)
    assert a != split_documents(docs, FRACTIONS, 4)
    assert set(a.values()) == {"train", "calib", "test"}
    per_origin = defaultdict(set)
    for d in docs:
        per_origin[d.origin].add(a[d.id])
    assert all(len(s) == 1 for s in per_origin.values())
    assert sum(len(d) > 1 for d in [[x for x in docs if x.origin == o] for o in per_origin]) > 5


# -- the tiny LM ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pydoc_docs():
    docs = documents("pydoc", target_chars=1200)
    split = split_documents(docs, {"train": 0.8, "test": 0.2}, 0)
    return ([d for d in docs if split[d.id] == "train"],
            [d for d in docs if split[d.id] == "test"])


@pytest.fixture(scope="module")
def tiny_lm(pydoc_docs, tmp_path_factory):
    train, held = pydoc_docs
    root = tmp_path_factory.mktemp("lm")
    lm = generators.create("gpt2-test").fit(train, workdir=root / "work", progress=False,
                                            heldout=held)
    lm.save(root / "model")
    return lm, root / "model"


def test_tiny_lm_learns_and_saves_its_metadata(tiny_lm, pydoc_docs):
    lm, mdir = tiny_lm
    _, held = pydoc_docs
    assert lm.family == "lm" and lm.modality == "text" and lm.name == "gpt2-test"
    ppl = lm.heldout_["perplexity"]
    untrained = lm.untrained().perplexity([d.text for d in held])
    vocab = lm.model_.config.vocab_size
    assert ppl < 0.5 * untrained and ppl < vocab, (ppl, untrained, vocab)
    meta = json.loads((mdir / "unmask.json").read_text())
    assert meta["schema"] == "unmask.generator/1" and meta["name"] == "gpt2-test"
    assert meta["params"]["n_layer"] == 2 and meta["train_data"]["documents"] == len(
        pydoc_docs[0])
    assert meta["heldout_perplexity"]["perplexity"] == pytest.approx(ppl)
    assert meta["weights_sha256"] == lm.checkpoint_sha256_
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (mdir / f).is_file()  # save_pretrained of model and tokenizer
    again = load_text_generator(mdir)
    assert isinstance(again, CausalLM) and again.checkpoint_sha256_ == lm.checkpoint_sha256_
    assert again.perplexity([held[0].text]) == pytest.approx(lm.perplexity([held[0].text]))


def test_interrupted_fit_resumes_bit_identically(pydoc_docs, tmp_path, monkeypatch):
    train, _ = pydoc_docs
    params = {"steps": 30, "checkpoint_every": 10}
    full = generators.create("gpt2-test", **params).fit(train, workdir=tmp_path / "full",
                                                        progress=False)
    real_checkpoint = checkpoint.save

    def killed_after_first(path, step, **kwargs):
        real_checkpoint(path, step, **kwargs)
        if step == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        generators.create("gpt2-test", **params).fit(train, workdir=tmp_path / "p",
                                                     progress=False)
    monkeypatch.setattr(checkpoint, "save", real_checkpoint)
    resumed = generators.create("gpt2-test", **params).fit(train, workdir=tmp_path / "p",
                                                           progress=False)
    a, b = full.model_.state_dict(), resumed.model_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="other parameters"):
        generators.create("gpt2-test", steps=30, n_embd=64).fit(train, workdir=tmp_path / "p",
                                                                progress=False)
    with pytest.raises(ConfigError, match="other text"):
        generators.create("gpt2-test", **params).fit(train[:-1], workdir=tmp_path / "p",
                                                     progress=False)


def test_generation_depends_only_on_seed_and_index(tiny_lm, pydoc_docs):
    lm, mdir = tiny_lm
    _, held = pydoc_docs
    prompts = [lm.encode(d.text)[:8] for d in held[:6]]
    samp = {"name": "top-p-0.9", "top_p": 0.9}
    alone = lm.sample(range(6), 3, prompts=prompts, sampling=samp, max_new_tokens=20)
    batched = lm.sample(range(6), 3, prompts=prompts, sampling=samp, max_new_tokens=20,
                        batch_size=4)
    backwards = lm.sample(range(5, -1, -1), 3, prompts=prompts[::-1], sampling=samp,
                          max_new_tokens=20)
    assert [s.content for s in alone] == [s.content for s in backwards[::-1]]
    # a batch draws from the same per-index streams, but its float arithmetic may differ from
    # a single prompt's in the last bit and, rarely, flip a token from there on (how rarely
    # depends on the CPU's kernels: TextLM.sample's docstring); one in six may differ
    same = sum(a.content == b.content for a, b in zip(alone, batched, strict=True))
    assert same >= len(alone) - 1, [(a.content, b.content) for a, b in zip(alone, batched,
                                                                            strict=True)]
    assert all(b.content.startswith(lm.decode(p)) for b, p in zip(batched, prompts,
                                                                     strict=True))
    other = lm.sample(range(6), 4, prompts=prompts, sampling=samp, max_new_tokens=20)
    assert [s.content for s in other] != [s.content for s in alone]
    assert all(s.content.startswith(lm.decode(p)) for s, p in zip(alone, prompts, strict=True))
    assert all(len(lm.generate_ids(p, seed=3, max_new_tokens=20)) == 20 for p in prompts[:2])
    loaded = load_text_generator(mdir)
    assert [s.content for s in loaded.sample(range(2), 3, prompts=prompts[:2], sampling=samp,
                                             max_new_tokens=20)] == \
        [s.content for s in alone[:2]]
    greedy = lm.sample(range(2), 1, prompts=prompts[:2], sampling={"greedy": True},
                       max_new_tokens=10)
    assert [s.content for s in greedy] == [s.content for s in lm.sample(
        range(2), 2, prompts=prompts[:2], sampling={"greedy": True}, max_new_tokens=10)]


def test_sampling_configs_and_watermark_key_are_recorded(tiny_lm, pydoc_docs):
    lm, _ = tiny_lm
    _, held = pydoc_docs
    prompts = [lm.encode(d.text)[:8] for d in held[:3]]
    key = TextWatermarkKey.new("kgw", lm.tokenizer_, seed=7,
                               vocab_size=lm.model_.config.vocab_size, name="test")
    marked = lm.sample(range(3), 1, prompts=prompts, sampling={"name": "t0.7", "temperature": 0.7},
                       max_new_tokens=120, watermark=key)
    prov = marked[0].provenance
    assert prov.generator == "gpt2-test" and prov.checkpoint_sha256 == lm.checkpoint_sha256_
    assert prov.seed == 1 and prov.index == 0 and marked[2].provenance.index == 2
    assert prov.params["sampling"] == {"name": "t0.7", "do_sample": True, "temperature": 0.7,
                                       "top_k": 0, "top_p": 1.0}
    assert prov.params["prompt_tokens"] == 8 and prov.params["new_tokens"] == 120
    assert prov.watermark_key == key.fingerprint
    assert str(key.hashing_key) not in json.dumps(prov.to_dict())  # never the secret
    assert all(verify_text(s.content, key, lm.tokenizer_).status == "detected" for s in marked)
    plain = lm.sample(range(3), 1, prompts=prompts, sampling={"temperature": 0.7},
                      max_new_tokens=120)
    assert plain[0].provenance.watermark_key is None
    assert not any(verify_text(s.content, key, lm.tokenizer_).status == "detected"
                   for s in plain)
    assert sampling_config({"greedy": True}).kwargs == {"do_sample": False}
    assert sampling_config({"repetition_penalty": 1.3}).name == "sample-repetition_penalty1.3"
    with pytest.raises(ConfigError, match="unknown key"):
        sampling_config({"top_q": 0.9})
    with pytest.raises(ConfigError, match="without sampling"):
        sampling_config({"greedy": True, "top_k": 5})
    other = TextWatermarkKey.new("kgw", None, seed=7, vocab_size=99)
    with pytest.raises(ConfigError, match="vocab_size"):
        lm.sample([0], 0, prompts=prompts[:1], watermark=other, max_new_tokens=4)


def test_pretrained_causal_lm_from_a_local_folder(tiny_lm, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from generators.image.pretrained import tree_sha256

    lm, _ = tiny_lm
    tok = lm.tokenizer_
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16,
                                       n_layer=1, n_head=2, eos_token_id=tok.eos_token_id,
                                       bos_token_id=tok.eos_token_id))
    folder = tmp_path / "someone-elses-lm"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    gen = generators.create("lm-pretrained", model=str(folder)).prepare()
    assert isinstance(gen, PretrainedCausalLM) and gen.family == "lm"
    samples = gen.sample([0], 2, prompts=["The import statement"], sampling={"top_k": 40},
                         max_new_tokens=12)
    assert samples[0].content.startswith("The import statement")
    assert samples[0].provenance.checkpoint_sha256 == tree_sha256(folder)
    assert samples[0].provenance.generator == "lm-pretrained"
    ref = gen.save(tmp_path / "ref")
    assert not list(ref.glob("*.safetensors")), "a reference, not a copy"
    again = load_text_generator(ref)
    assert again.sample([0], 2, prompts=["The import statement"], sampling={"top_k": 40},
                        max_new_tokens=12)[0].content == samples[0].content
    with pytest.raises(ModelError, match="cannot load causal LM"):
        generators.create("lm-pretrained", model=str(tmp_path / "nope")).prepare()


# -- text corpus recipes --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_text_corpus(tmp_path_factory):
    return build(TINY_TEXT, tmp_path_factory.mktemp("text") / "a", progress=False)


def test_text_recipe_counts_pairs_and_held_out_sampling(tiny_text_corpus):
    c = Corpus.open(tiny_text_corpus.root, verify_hashes=True)
    recipe = load_recipe(TINY_TEXT)
    lengths = recipe["text"]["lengths"]
    per_entry = {s["name"]: s["count"] for s in recipe["synthetic"]}
    assert {r.modality for r in c.records} == {"text"}
    assert all(r.path.endswith(".txt") for r in c.records)
    # every entry makes `count` pairs per length bucket
    got = Counter((r.provenance["params"]["entry"], r.provenance["params"]["length_bucket"])
                  for r in c.records if r.label == 1)
    assert got == {(e, n): k for e, k in per_entry.items() for n in lengths}
    per_bucket = Counter((r.label, r.provenance["params"]["length_bucket"]) for r in c.records)
    assert per_bucket == {(lab, n): sum(per_entry.values()) for lab in (0, 1) for n in lengths}
    assert c.header["counts_by_length"]["test"]["real"] == {
        str(n): sum(1 for r in c.records if r.split == "test" and r.label == 0
                    and r.provenance["params"]["length_bucket"] == n) for n in lengths}
    for split in ("train", "calib", "test"):
        assert c.counts()[split]["real"] == c.counts()[split]["synthetic"] > 0
    # pairs: one real and one fake per document, same split, same bucket, shared prompt
    pairs = defaultdict(list)
    for r in c.records:
        pairs[r.group].append(r)
    assert all(len(p) == 2 and {r.label for r in p} == {0, 1} for p in pairs.values())
    text = {r.id: (c.root / r.path).read_text(encoding="utf-8") for r in c.records}
    for p in pairs.values():
        real, fake = sorted(p, key=lambda r: r.label)
        assert real.split == fake.split
        assert fake.provenance["parent"] == real.id
        assert fake.provenance["params"]["document"] == real.group
        n = fake.provenance["params"]["prompt_tokens"]
        assert n == recipe["text"]["prompt_tokens"]
        assert fake.provenance["params"]["new_tokens"] == real.provenance["params"]["tokens"] - n
        assert text[fake.id][:8] == text[real.id][:8]  # 8 prompt tokens: >= 8 characters
    # the held-out sampling config is tested on, never trained or calibrated on
    held = recipe["held_out_sampling"]
    by_sampling = defaultdict(set)
    for r in c.records:
        if r.label == 1:
            by_sampling[r.provenance["params"]["sampling"]["name"]].add(r.split)
    assert by_sampling[held] == {"test"}
    assert set().union(*(v for k, v in by_sampling.items() if k != held)) >= {"train", "calib"}
    assert all(r.split == "test" for r in c.records if r.label == 0 and any(
        f.label == 1 and f.provenance["params"]["sampling"]["name"] == held
        for f in pairs[r.group]))


def test_text_recipe_provenance_watermark_and_header(tiny_text_corpus):
    c = tiny_text_corpus
    gens = c.header["generators"]
    assert set(gens) == {"0-tiny-a", "1-tiny-b"}
    for g in gens.values():
        assert g["family"] == "lm" and len(g["checkpoint_sha256"]) == 64
        assert g["heldout_perplexity"] < g["untrained_perplexity"]
    assert gens["0-tiny-a"]["checkpoint_sha256"] != gens["1-tiny-b"]["checkpoint_sha256"]
    assert gens["0-tiny-a"]["train_data"]["sha256"] != gens["1-tiny-b"]["train_data"]["sha256"]
    # one vocabulary for both (tokenizer_from), so they can observe / perform for each other
    a, b = (load_text_generator(c.root / "generators" / k / "model")
            for k in ("0-tiny-a", "1-tiny-b"))
    assert a.tokenizer_.get_vocab() == b.tokenizer_.get_vocab()
    fp = gens["1-tiny-b"]["watermark"]["fingerprint"]
    key = TextWatermarkKey.load(c.root / gens["1-tiny-b"]["watermark"]["key_file"])
    assert key.fingerprint == fp
    for r in c.records:
        if r.label == 0:
            assert r.provenance["source"].startswith("pydoc:")
            continue
        p = r.provenance
        entry = p["params"]["entry"]
        assert p["generator"] == "gpt2-test" and p["seed"] is not None and "index" in p
        assert p["checkpoint_sha256"] == gens[f"{0 if entry == 'tiny-a' else 1}-{entry}"][
            "checkpoint_sha256"]
        assert p.get("watermark_key") == (fp if entry == "tiny-b" else None)
        assert {"name", "do_sample"} <= set(p["params"]["sampling"])
    samples = (c.root / "generators" / "1-tiny-b" / "samples.md").read_text()
    assert "## greedy #0" in samples


def test_text_corpus_evidence_is_published(tiny_text_corpus, tmp_path):
    from generators.recipe import publish_evidence

    d = publish_evidence(tiny_text_corpus, tmp_path)
    assert (d / "1-tiny-b-samples.md").is_file()
    assert "| tiny-a | gpt2-test |" in (d / "README.md").read_text()


def test_text_recipe_rebuilds_and_resumes_to_the_same_hash(tiny_text_corpus, tmp_path):
    again = build(TINY_TEXT, tmp_path / "b", progress=False)
    assert again.content_hash == tiny_text_corpus.content_hash
    assert (again.root / "manifest.jsonl").read_bytes() == \
        (tiny_text_corpus.root / "manifest.jsonl").read_bytes()
    # interrupt a copy mid-build: half the manifest kept (last line torn), some items lost,
    # one LM's final model lost (its training resumes from the checkpoint)
    cut = tmp_path / "cut"
    shutil.copytree(again.root, cut)
    w = CorpusWriter(cut, name="text-tiny-test", recipe=load_recipe(TINY_TEXT), seed=5)
    w._fh.close()
    lines = (cut / "manifest.jsonl").read_text().splitlines()
    (cut / "manifest.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n" +
                                        lines[-1][:40])
    for line in lines[len(lines) // 2: len(lines) // 2 + 3]:
        (cut / json.loads(line)["path"]).unlink()
    shutil.rmtree(cut / "generators" / "1-tiny-b" / "model")
    with pytest.raises(ConfigError, match="missing corpus.json"):
        Corpus.open(cut)
    resumed = build(TINY_TEXT, cut, progress=False)
    assert resumed.content_hash == tiny_text_corpus.content_hash


def test_text_recipe_errors_are_clear(tmp_path):
    base = TINY_TEXT.read_text()
    bad = tmp_path / "r.toml"
    for old, new, match in (
            ('held_out_sampling = "top-k-20"', 'held_out_sampling = "top-k-2"',
             "held_out_sampling names"),
            ('generator = "gpt2-test"', 'generator = "dcgan-test"', "makes image, not text"),
            ('generator = "gpt2-test"', 'generator = "gpt2-tset"', "did you mean gpt2-test"),
            ("lengths = [24, 48]", "lengths = [4, 48]", "above prompt_tokens"),
            ('source = "pydoc"', 'source = "skimage"', "not a text source"),
            ("train_slice = [0, 2]", "train_slice = [2, 2]", "train_slice"),
            ('tokenizer_from = "tiny-a"', 'tokenizer_from = "tiny-b"', "earlier"),
            ('watermark = "kgw"', 'watermark = "rot13"', "watermark must be"),
            ("top_p = 0.9", "top_q = 0.9", "unknown key"),
            ('modality = "text"', 'modality = "audio"', "modality must be")):
        bad.write_text(base.replace(old, new, 1))
        with pytest.raises(ConfigError, match=match):
            load_recipe(bad)
    bad.write_text(base.replace("count = 6", "count = 600", 1))
    with pytest.raises(ConfigError, match="one per pair"):
        build(bad, tmp_path / "c", progress=False)


@pytest.mark.slow
def test_train_generator_command_trains_a_text_lm(tmp_path):
    bin_ = Path(sys.executable).parent / "unmask"
    cmd = [str(bin_)] if bin_.exists() else [sys.executable, "-m", "detect.cli"]
    r = subprocess.run([*cmd, "-q", "train-generator", "gpt2-test", "--out", str(tmp_path / "g"),
                        "--source", "pydoc", "--set", "steps=40"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["heldout"]["perplexity"] < info["heldout"]["untrained_perplexity"]
    assert (tmp_path / "g" / "train-state.safetensors").is_file()
    assert load_text_generator(tmp_path / "g" / "model").name == "gpt2-test"
