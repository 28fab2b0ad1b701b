"""Tests for detect.io.corpus: writing, resuming, hashing and validating corpora on disk."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from detect.core.errors import ConfigError
from detect.core.types import SAMPLE_SCHEMA, Provenance, Sample
from detect.io.corpus import CORPUS_SCHEMA, Corpus, CorpusWriter, content_hash

RECIPE = {"name": "unit", "items": 6, "size": 8}
SEED = 7
# (split, label) for six items: every split holds one real and one synthetic
LAYOUT = [("train", 0), ("train", 1), ("calib", 0), ("calib", 1), ("test", 0), ("test", 1)]


def _samples(seed: int = 0, n: int = len(LAYOUT)) -> list[tuple[str, Sample, str]]:
    """(key, sample, split) triples of small random images, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        split, label = LAYOUT[i % len(LAYOUT)]
        img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        prov = (Provenance("real", source="unit-tests", index=i) if label == 0 else
                Provenance("synthetic", generator="noise", seed=seed, index=i))
        out.append((f"item-{i:03d}", Sample(img, "image", label, prov, group=f"g{i}"), split))
    return out


def _build(root: Path, samples=None, recipe=None, seed: int = SEED) -> Corpus:
    w = CorpusWriter(root, name="unit", recipe=recipe or RECIPE, seed=seed)
    for key, sample, split in samples if samples is not None else _samples():
        w.add(sample, split, key)
    return w.close()


def _interrupt(w: CorpusWriter) -> None:
    """Simulate a killed build: the manifest handle goes away, close() never runs."""
    w._fh.close()


def _interrupted_build(root, samples) -> list:
    """Write ``samples`` (key, sample, split) into a fresh writer, then kill the build."""
    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    recs = [w.add(sample, split, key) for key, sample, split in samples]
    _interrupt(w)
    return recs


# ----------------------------------------------------------------------------- round trip


def test_round_trip_labels_splits_counts(tmp_path):
    samples = _samples()
    written = _build(tmp_path / "c", samples)
    c = Corpus.open(tmp_path / "c")

    assert len(c) == len(samples) == written.header["n_items"]
    assert c.header["schema"] == CORPUS_SCHEMA
    assert c.header["recipe"] == RECIPE and c.header["seed"] == SEED
    assert c.counts() == {s: {"real": 1, "synthetic": 1} for s in ("calib", "test", "train")}
    assert c.header["counts"] == c.counts()
    assert c.header["duplicates_skipped"] == 0
    assert c.content_hash == c.header["content_hash"] == written.content_hash

    by_key = {r.key: r for r in c.records}
    for key, sample, split in samples:
        rec = by_key[key]
        assert rec.label == sample.label
        assert rec.split == split
        assert rec.modality == "image"
        assert rec.group == sample.group
        assert rec.provenance == sample.provenance.to_dict()
        # the id is the sha256 of the stored bytes, and the file sits under items/
        data = (c.root / rec.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec.id
        assert rec.path.startswith(f"items/{rec.id[:2]}/")

    # pixels survive the PNG round trip exactly
    items = {r.key: it for r, it in zip(c.records, c.items, strict=True)}
    for key, sample, _ in samples:
        np.testing.assert_array_equal(items[key].content, sample.content)


def test_split_views_and_labels(tmp_path):
    c = _build(tmp_path / "c")
    c = Corpus.open(tmp_path / "c")
    for name in ("train", "calib", "test"):
        part = c.split(name)
        assert len(part) == 2
        assert sorted(part.labels.tolist()) == [0, 1]
        assert all(r.split == name for r in part.records)
    assert c.labels.dtype == np.int64
    assert sorted(c.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert all(p.is_file() for p in c.paths)
    with pytest.raises(ConfigError, match="unknown split"):
        c.split("validation")


def test_add_rejects_unknown_split(tmp_path):
    w = CorpusWriter(tmp_path / "c", name="unit", recipe=RECIPE, seed=SEED)
    key, sample, _ = _samples()[0]
    with pytest.raises(ConfigError, match="unknown split"):
        w.add(sample, "valid", key)
    w.close()


def test_text_samples_are_stored(tmp_path):
    w = CorpusWriter(tmp_path / "c", name="unit", recipe=RECIPE, seed=SEED)
    rec = w.add(Sample("hello world", "text", 0, Provenance("real")), "train", "t0")
    assert rec is not None and rec.path.endswith(".txt")
    c = w.close()
    assert (c.root / rec.path).read_text(encoding="utf-8") == "hello world"


# ----------------------------------------------------------------------------- hashing


def test_content_hash_independent_of_writing_order(tmp_path):
    samples = _samples()
    shuffled = samples[:]
    random.Random(3).shuffle(shuffled)
    assert [k for k, _, _ in shuffled] != [k for k, _, _ in samples]

    a = _build(tmp_path / "a", samples)
    b = _build(tmp_path / "b", shuffled)
    assert a.content_hash == b.content_hash
    assert a.header["content_hash"] == b.header["content_hash"]
    # close() sorts the manifest, so even the file is byte-identical
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == \
        (tmp_path / "b/manifest.jsonl").read_bytes()
    # the pure function agrees, whatever the order of the list
    recs = list(a.records)
    assert content_hash(recs) == content_hash(recs[::-1])


def test_content_hash_changes_with_content(tmp_path):
    a = _build(tmp_path / "a", _samples(seed=0))
    b = _build(tmp_path / "b", _samples(seed=1))
    assert a.content_hash != b.content_hash
    before = a.content_hash  # computed from the live records, so take it before editing
    recs = list(a.records)
    recs[0].split = "test" if recs[0].split != "test" else "train"
    assert content_hash(recs) != before


# ----------------------------------------------------------------------------- resume


def test_resume_keeps_records(tmp_path):
    root = tmp_path / "c"
    samples = _samples()
    _interrupted_build(root, samples[:3])
    with pytest.raises(ConfigError, match="missing corpus.json"):
        Corpus.open(root)  # an unfinished build is refused

    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    assert len(w.records) == 3
    for key, sample, split in samples:
        if w.has(key):
            continue
        w.add(sample, split, key)
    assert all(w.has(k) for k, _, _ in samples)
    assert not w.has("never-added")
    resumed = w.close()

    straight = _build(tmp_path / "straight", samples)
    assert resumed.content_hash == straight.content_hash
    assert len(Corpus.open(root)) == len(samples)


def test_reopen_finished_corpus_with_same_recipe(tmp_path):
    root = tmp_path / "c"
    first = _build(root)
    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    assert len(w.records) == len(first)
    assert all(w.has(k) for k, _, _ in _samples())
    again = w.close()
    assert again.content_hash == first.content_hash
    assert Corpus.open(root).content_hash == first.content_hash


@pytest.mark.parametrize("recipe, seed", [({**RECIPE, "items": 99}, SEED), (RECIPE, SEED + 1)])
def test_other_recipe_or_seed_on_same_folder_is_refused(tmp_path, recipe, seed):
    root = tmp_path / "c"
    _build(root)
    with pytest.raises(ConfigError, match="another recipe or seed"):
        CorpusWriter(root, name="unit", recipe=recipe, seed=seed)
    # the refused writer left the finished corpus intact
    assert len(Corpus.open(root)) == len(LAYOUT)


def test_other_recipe_refused_after_interrupted_build(tmp_path):
    root = tmp_path / "c"
    _interrupted_build(root, _samples()[:1])
    with pytest.raises(ConfigError):
        CorpusWriter(root, name="unit", recipe={**RECIPE, "items": 99}, seed=SEED + 1)


def test_duplicate_bytes_are_skipped_and_counted(tmp_path):
    samples = _samples()
    w = CorpusWriter(tmp_path / "c", name="unit", recipe=RECIPE, seed=SEED)
    for key, sample, split in samples:
        assert w.add(sample, split, key) is not None
    key, sample, _ = samples[0]
    twin = Sample(sample.content.copy(), "image", 1, Provenance("synthetic"))
    assert w.add(twin, "test", "twin-of-0") is None
    assert w.has("twin-of-0")
    c = w.close()
    assert c.header["duplicates_skipped"] == 1
    assert c.header["n_items"] == len(samples) == len(c)
    # the first copy keeps its label and split
    assert next(r for r in c.records if r.key == key).label == sample.label


def test_torn_last_manifest_line_is_recovered(tmp_path):
    root = tmp_path / "c"
    samples = _samples()
    _interrupted_build(root, samples[:2])
    manifest = root / "manifest.jsonl"
    with open(manifest, "a", encoding="utf-8") as f:
        f.write('{"schema": "unmask.sample/1", "id": "ab')  # killed mid-write

    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    assert [r.key for r in w.records] == [k for k, _, _ in samples[:2]]
    assert all(json.loads(line) for line in manifest.read_text().splitlines())
    for key, sample, split in samples:
        if not w.has(key):
            w.add(sample, split, key)
    c = w.close()
    assert len(Corpus.open(root)) == len(samples)
    assert c.content_hash == _build(tmp_path / "ref", samples).content_hash


def test_resume_drops_records_whose_file_vanished(tmp_path):
    root = tmp_path / "c"
    samples = _samples()
    recs = _interrupted_build(root, samples[:3])
    (root / recs[1].path).unlink()
    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    assert not w.has(samples[1][0])
    assert w.has(samples[0][0]) and w.has(samples[2][0])
    w.close()


def test_malformed_middle_line_stops_resume_with_config_error(tmp_path):
    root = tmp_path / "c"
    _interrupted_build(root, _samples()[:2])
    manifest = root / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    obj = json.loads(lines[0])
    obj["label"] = 2  # valid JSON, invalid record, not the last line
    manifest.write_text(json.dumps(obj) + "\n" + lines[1] + "\n")
    with pytest.raises(ConfigError, match=r"manifest.jsonl:1"):
        CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)


def test_non_json_middle_line_on_resume_is_config_error(tmp_path):
    root = tmp_path / "c"
    _interrupted_build(root, _samples()[:1])
    manifest = root / "manifest.jsonl"
    manifest.write_text("{not json\n" + manifest.read_text())
    with pytest.raises(ConfigError):
        CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)


def test_resume_with_unicode_line_separator_in_provenance(tmp_path):
    root = tmp_path / "c"
    img = np.zeros((8, 8, 3), np.uint8)
    _interrupted_build(root, [
        ("k0", Sample(img, "image", 0, Provenance("real", source="a\u2028b")), "train"),
        ("k1", Sample(img + 1, "image", 1, Provenance("synthetic")), "train")])
    w = CorpusWriter(root, name="unit", recipe=RECIPE, seed=SEED)
    assert w.has("k0") and w.has("k1")


# ----------------------------------------------------------------------------- validation


@pytest.fixture
def built(tmp_path) -> Path:
    root = tmp_path / "c"
    _build(root)
    return root


def _lines(root: Path) -> list[str]:
    return (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()


def _rewrite_line(root: Path, n: int, edit) -> None:
    """Apply ``edit`` to line ``n`` (1-based) of the manifest; ``edit`` gets the parsed object
    and returns either a new object or a raw string."""
    lines = _lines(root)
    new = edit(json.loads(lines[n - 1]))
    lines[n - 1] = new if isinstance(new, str) else json.dumps(new)
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set(field, value):
    def edit(obj):
        obj[field] = value
        return obj
    return edit


def _drop(field):
    def edit(obj):
        del obj[field]
        return obj
    return edit


def _open_error(root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Corpus.open(root)
    return str(info.value)


def test_well_formed_corpus_opens(built):
    assert len(Corpus.open(built)) == len(LAYOUT)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda obj: '{"schema": "unmask.sample/1", "id": ', "not valid JSON"),
        (lambda obj: "[1, 2, 3]", "expected a JSON object"),
        (_set("schema", "unmask.sample/0"), "schema"),
        (_set("label", 2), "label"),
        (_set("label", True), "label"),
        (_set("label", "1"), "label"),
        (_set("split", "validation"), "split"),
        (_set("modality", "audio"), "modality"),
        (_drop("label"), "missing field"),
        (_drop("path"), "missing field"),
        (_set("id", "not-a-hash"), "id"),
        (_set("id", "A" * 64), "id"),
        (_set("id", 123), "id"),
        (_set("path", "/etc/passwd"), "path"),
        (_set("path", "../outside.png"), "path"),
        (_set("path", "items/../../outside.png"), "path"),
        (_set("path", ""), "path"),
        (_set("provenance", [1, 2]), "provenance"),
    ],
    ids=["bad-json", "not-object", "schema", "label-2", "label-true", "label-str",
         "unknown-split", "unknown-modality", "missing-label", "missing-path", "bad-id",
         "uppercase-id", "int-id", "absolute-path", "dotdot-path", "nested-dotdot-path",
         "empty-path", "provenance-list"],
)
def test_malformed_line_is_rejected_naming_file_and_line(built, edit, words):
    _rewrite_line(built, 2, edit)
    msg = _open_error(built)
    assert f"{built / 'manifest.jsonl'}:2" in msg
    assert words in msg


def test_label_true_is_not_silently_read_as_synthetic(built):
    # True == 1 in Python; the validator must not let a boolean through as a label
    _rewrite_line(built, 1, _set("label", True))
    assert "label" in _open_error(built)


def test_duplicate_id_names_both_lines(built):
    lines = _lines(built)
    lines.append(lines[0])
    (built / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    msg = _open_error(built)
    n = len(lines)
    assert f"manifest.jsonl:{n}" in msg
    assert "duplicate id" in msg
    assert "line 1" in msg


def test_missing_item_file_is_named(built):
    c = Corpus.open(built)
    victim = c.records[3]
    (built / victim.path).unlink()
    msg = _open_error(built)
    assert "manifest.jsonl" in msg
    assert victim.path in msg
    assert "missing" in msg
    # without file verification the manifest still opens
    assert len(Corpus.open(built, verify_files=False)) == len(LAYOUT)


def test_edited_manifest_fails_content_hash(built):
    obj = json.loads(_lines(built)[0])
    flipped = "test" if obj["split"] != "test" else "train"
    _rewrite_line(built, 1, _set("split", flipped))  # still a valid line
    msg = _open_error(built)
    assert "content hash" in msg
    assert str(built) in msg


def test_removed_manifest_line_fails_content_hash(built):
    lines = _lines(built)
    (built / "manifest.jsonl").write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")
    assert "content hash" in _open_error(built)


def test_blank_lines_in_manifest_are_ignored(built):
    lines = _lines(built)
    (built / "manifest.jsonl").write_text("\n\n".join(lines) + "\n\n", encoding="utf-8")
    assert len(Corpus.open(built)) == len(LAYOUT)


@pytest.mark.parametrize(
    "header_text",
    [
        json.dumps({"schema": "unmask.corpus/0"}),
        json.dumps({"name": "no schema"}),
        json.dumps(["unmask.corpus/1"]),
        "{not json",
    ],
    ids=["old-schema", "no-schema", "not-object", "bad-json"],
)
def test_bad_corpus_header_is_rejected(built, header_text):
    (built / "corpus.json").write_text(header_text, encoding="utf-8")
    msg = _open_error(built)
    assert str(built / "corpus.json") in msg


def test_folder_without_corpus_files_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _open_error(tmp_path / "empty")
    assert "not a corpus" in msg
    assert "corpus.json" in msg


def test_manifest_lines_use_the_sample_schema(built):
    for line in _lines(built):
        obj = json.loads(line)
        assert obj["schema"] == SAMPLE_SCHEMA
        assert set(obj) >= {"id", "path", "modality", "label", "split", "provenance"}


def test_replaced_item_bytes_are_detected(built):
    c = Corpus.open(built)
    (built / c.records[0].path).write_bytes((built / c.records[1].path).read_bytes())
    Corpus.open(built)  # the cheap default checks presence only
    with pytest.raises(ConfigError, match="does not match its id"):
        Corpus.open(built, verify_hashes=True)


def test_map_transforms_images_on_load_without_touching_files(built):
    from detect.attacks import JPEG

    corpus = Corpus.open(built)
    before = {p: p.read_bytes() for p in corpus.paths}
    jpeg = JPEG(quality=40)
    view = corpus.map(jpeg)
    assert view.content_hash != corpus.content_hash  # a model trained on it says so
    assert view.map(jpeg).content_hash != view.content_hash
    assert view.split("train").transforms == (jpeg,)  # views keep the transform
    plain, mapped = corpus.items[0], view.items[0]
    assert mapped.content.shape == plain.content.shape
    np.testing.assert_array_equal(mapped.content, jpeg(plain.content))
    assert mapped.meta["transforms"] == [jpeg.describe()] and mapped.sha256 == plain.sha256
    assert {p: p.read_bytes() for p in corpus.paths} == before
    with pytest.raises(ConfigError, match="describe"):
        corpus.map(lambda img: img)
