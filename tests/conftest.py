"""Shared fixtures: one tiny real corpus and tiny real trained detectors per test session.

Everything here is built by the real code paths (recipe -> DCGAN -> corpus -> fit), only at
sizes that take seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The same environment on every machine, for this process and every subprocess a test starts:
# never the network (every model is trained here; a user's "0" would let transformers try the
# hub), no progress bars, matplotlib's file backend whatever $DISPLAY says, UTF-8 I/O in the
# subprocesses whatever the locale, and a local Ray instance even where RAY_ADDRESS names a
# cluster (ray.init(address=None) would join it).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TQDM_DISABLE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ["PYTHONUTF8"] = "1"
os.environ.pop("RAY_ADDRESS", None)

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "datasets" / "recipes" / "tiny-test.toml"
WILD_TINY_RECIPE = REPO / "datasets" / "recipes" / "wild-tiny-test.toml"
# the wild line (benchmarks/wild_release.py) at test sizes: 64 px tiles, one epoch of tuning
WILD_TINY_SET = ["effnet-probe.patch=64", "effnet-probe.max_tiles=2", "effnet-tune.patch=64",
                 "effnet-tune.max_tiles=2", "effnet-tune.epochs=1", "effnet-tune.batch_size=8",
                 "effnet-probe.target_fpr=0.05", "effnet-tune.target_fpr=0.05",
                 "fusion-wild.target_fpr=0.05"]


# The fast tier (`pytest -m "not slow"`, a few minutes on 2 cores) leaves out tests marked
# slow. A test that uses one of these session fixtures is slow whatever its own cost: the
# fixture trains an LM (~30 s, then its corpus) or builds the face corpus with MTCNN (~30 s),
# and one fast test asking for it would put that cost into the fast tier. tiny_corpus and
# trained_models (~20 s together) stay fast: most scan, CLI and detector tests share them.
SLOW_FIXTURES = frozenset({"tiny_text_lm", "tiny_text_corpus", "tiny_face_corpus", "face_model"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def require_setup(present: bool, what: str) -> None:
    """For what scripts/setup.sh installs from Debian (chromium, the data packages). Where
    apt-get exists setup.sh installs it, so its absence is a broken set-up and fails; on a
    machine without apt-get setup.sh can only warn, and the test is skipped."""
    if present:
        return
    if shutil.which("apt-get"):
        pytest.fail(f"{what} is missing although apt-get exists: run scripts/setup.sh")
    pytest.skip(f"{what} is not installed and there is no apt-get (scripts/setup.sh installs "
                "it on Debian/Ubuntu)")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from generators.recipe import build

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    return build(TINY_RECIPE, out, progress=False)


# The tiny corpus fixture each detector modality fits on (a detector's ``tags.modality``).
MODALITY_CORPUS = {"image": "tiny_corpus", "text": "tiny_text_corpus", "face": "tiny_face_corpus"}


def corpus_fixture(name: str) -> str:
    """The tiny corpus fixture registered detector ``name`` fits on, from its modality."""
    from detect.core.registry import detectors

    modality = detectors.get_class(name).tags.modality
    if modality not in MODALITY_CORPUS:
        raise KeyError(f"{name}: no tiny corpus fixture for {modality} detectors; add one to "
                       "MODALITY_CORPUS")
    return MODALITY_CORPUS[modality]


def detector_params(pattern: str = "*-test") -> list:
    """One pytest param per registered detector matching ``pattern`` (every modality), marked
    slow when its modality's corpus fixture is: what conformance tests parametrise over, read
    from the registry at collection, so a new ``*-test`` entry is covered without a list."""
    from detect.core.registry import detectors

    return [pytest.param(n, id=n, marks=[pytest.mark.slow]
                         if corpus_fixture(n) in SLOW_FIXTURES else [])
            for n in detectors.names(pattern)]


class ModelCache:
    """name -> saved model folder: each registered detector fitted (with its registry
    defaults) once per session, on the corpus it is first asked with."""

    def __init__(self, root: Path):
        self.root, self.dirs = root, {}

    def get(self, name: str, corpus) -> Path:
        from detect.core.registry import detectors

        if name not in self.dirs:
            self.dirs[name] = detectors.create(name).fit(corpus).save(self.root / name)
        return self.dirs[name]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def trained_models(tiny_corpus, model_cache):
    """name -> saved model dir, for every registered ``*-test`` image detector (text and face
    ones fit on their own corpora: ``model_cache`` with ``corpus_fixture(name)``)."""
    return {name: model_cache.get(name, tiny_corpus) for name in
            (p.values[0] for p in detector_params())
            if corpus_fixture(name) == "tiny_corpus"}


@pytest.fixture(scope="session")
def tiny_text_lm(tmp_path_factory):
    """A 2-layer GPT-2 and its BPE tokenizer trained here in seconds, saved by save_pretrained."""
    from benchmarks.text_watermark import build_lm

    return build_lm(tmp_path_factory.mktemp("text-lm") / "lm", vocab_size=1024, n_layer=2,
                    n_embd=64, n_head=2, steps=300, block=64, batch=16, seed=0)


@pytest.fixture(scope="session")
def tiny_text_corpus(tiny_text_lm, tmp_path_factory):
    """Held-out human paragraphs and the tiny LM's continuations of their first 8 tokens, at
    the same token length, paired in one split (so topic cannot separate the classes)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.text_watermark import split_paragraphs
    from detect.core.types import Provenance, Sample
    from detect.io.corpus import CorpusWriter

    tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm).eval()
    _, held = split_paragraphs()
    docs = [p for p in held if 40 <= len(tok(p)["input_ids"]) <= 300][:128]
    out = tmp_path_factory.mktemp("text-corpus") / "tiny-text"
    w = CorpusWriter(out, name="tiny-text", recipe={"name": "tiny-text-fixture"}, seed=0)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small loses time to thread hand-offs
    for i, doc in enumerate(docs):
        split = ("train", "train", "calib", "test")[i % 4]
        ids = tok(doc)["input_ids"]
        torch.manual_seed(i)
        with torch.no_grad():
            # temperature below 1 (with or without a nucleus): pure sampling from an LM this
            # weak is word salad, *less* probable than human text (the benchmark covers it)
            sampling = ({"temperature": 0.7} if rng.random() < 0.5
                        else {"temperature": 0.8, "top_p": 0.9})
            gen = model.generate(torch.tensor([ids[:8]]), do_sample=True, top_k=0,
                                 max_new_tokens=len(ids) - 8, min_new_tokens=len(ids) - 8,
                                 pad_token_id=tok.eos_token_id, **sampling)
        fake = tok.decode(gen[0], skip_special_tokens=True)
        w.add(Sample(doc, "text", 0, Provenance("real", source="pydoc", index=i),
                     group=f"doc{i}"), split, f"real:{i}")
        w.add(Sample(fake, "text", 1, Provenance("synthetic", generator="tiny-lm", seed=i,
                                                 index=i, params=sampling),
                     group=f"doc{i}"), split,
              f"synthetic:{i}")
    torch.set_num_threads(threads)
    return w.close()


FACE_RECIPE = REPO / "datasets" / "recipes" / "faces-tiny-test.toml"


@pytest.fixture(scope="session")
def tiny_face_corpus(tmp_path_factory):
    """24 LFW faces, their self-blends and swaps, and six short clips, by the real recipe."""
    # setup.sh installs facenet-pytorch; without it face finding would quietly fall back to the
    # Haar cascade and build another corpus, so its absence fails here
    import facenet_pytorch  # noqa: F401

    from generators.recipe import build

    return build(FACE_RECIPE, tmp_path_factory.mktemp("faces") / "tiny", progress=False)


@pytest.fixture(scope="session")
def face_model(tiny_face_corpus, model_cache):
    """The tiny MesoNet trained and calibrated (faces and clips) on it, saved to a folder."""
    return model_cache.get("face-test", tiny_face_corpus)
