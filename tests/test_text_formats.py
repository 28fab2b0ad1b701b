"""The field's file formats: Fast-DetectGPT's data JSON in, RAID's predictions.json out."""

from __future__ import annotations

import json

import pytest

from benchmarks.text_formats import (
    read_fastdetect_json,
    write_fastdetect_json,
    write_raid_predictions,
)
from detect.core.errors import ConfigError


def test_fastdetect_round_trip(tmp_path):
    p = write_fastdetect_json(tmp_path / "xsum_gpt2.json", ["a human text", "another one"],
                              ["a machine text", "and its twin"])
    data = json.loads(p.read_text())
    data["perturbed_sampled"] = [["ignored"]]  # published files carry extra keys
    p.write_text(json.dumps(data))
    texts, labels, ids = read_fastdetect_json(p)
    assert texts == ["a human text", "another one", "a machine text", "and its twin"]
    assert labels == [0, 0, 1, 1]
    assert ids == ["original/0", "original/1", "sampled/0", "sampled/1"]


@pytest.mark.parametrize("content, msg", [
    ("{not json", "not valid JSON"),
    ('{"original": ["x"]}', "'original' and 'sampled'"),
    ('{"original": "x", "sampled": []}', "must be a list"),
    ('{"original": [1], "sampled": []}', "'original'[0] is int"),
    ('{"original": [], "sampled": []}', "no texts"),
])
def test_fastdetect_bad_files_name_file_and_problem(tmp_path, content, msg):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ConfigError) as e:
        read_fastdetect_json(p)
    assert str(p) in str(e.value) and msg in str(e.value)


def test_raid_predictions(tmp_path):
    p = write_raid_predictions(tmp_path / "predictions.json", ["id-1", "id-2", "id-3"],
                               [0.5, float("nan"), -2.0], about={"detector": "lm-fastdetect"})
    assert json.loads(p.read_text()) == [{"id": "id-1", "score": 0.5},
                                         {"id": "id-2", "score": None},
                                         {"id": "id-3", "score": -2.0}]
    assert json.loads((tmp_path / "predictions.about.json").read_text())["detector"] == \
        "lm-fastdetect"
    with pytest.raises(ConfigError):
        write_raid_predictions(tmp_path / "x.json", ["a"], [1.0, 2.0])
