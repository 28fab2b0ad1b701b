"""scan and inspect gather their evidence through one function (detect.app.collect): the same
input gives the same verdict, deciding detector, score and error in both, including an input
no loaded detector handles (an error record naming the file, in both)."""

import json

import pytest
from PIL import Image
from skimage import data

from detect.app.inspect import inspect_file
from detect.app.scan import ScanOptions, scan_path
from detect.cli import main
from detect.core.models import load_detectors

ESSAY = ("The committee met on Tuesday to review the budget. Several members asked why the "
         "maintenance costs had risen so quickly over the last two years. The treasurer "
         "explained that the roof repairs could not be postponed any longer, and that the "
         "contractor had raised his prices twice.\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("agree")
    Image.fromarray(data.astronaut()[:256, :256]).save(root / "astronaut.png")
    (root / "essay.txt").write_text(ESSAY, encoding="utf-8")
    return root


def _agree(path, dets, options):
    f = scan_path(path, dets, options)
    rep = inspect_file(path, dets, options)
    for k in ("verdict", "decided_by", "score", "threshold", "error", "sha256", "modality"):
        assert rep[k] == getattr(f, k), (k, rep[k], getattr(f, k))
    return f, rep


@pytest.mark.parametrize("name", ["astronaut.png", "essay.txt"])
def test_scan_and_inspect_agree(inputs, name):
    dets = load_detectors(["spectrum-logreg", "text-tfidf-logreg"])
    f, rep = _agree(inputs / name, dets, ScanOptions(progress=False))
    assert f.error is None and f.verdict in ("real", "synthetic", "uncertain")
    assert f.decided_by in rep["detectors"] and rep["detectors"][f.decided_by]["applies"]
    # the full form holds every loaded detector; the one of the other modality says why not
    assert len(rep["detectors"]) == 2 and len(f.detectors) == 1
    other = next(r for n, r in rep["detectors"].items() if n != f.decided_by)
    assert other["applies"] is False
    if name.endswith(".png"):
        assert "tiles" in rep["detectors"][f.decided_by] and "c2pa" in rep["provenance"]
        assert rep["provenance"]["c2pa"]["status"] == f.provenance["c2pa"]["status"]


def test_no_applicable_detector_is_the_same_error_in_both(inputs, capsys):
    dets = load_detectors(["spectrum-logreg"])
    f, rep = _agree(inputs / "essay.txt", dets, ScanOptions(progress=False))
    assert f.verdict == rep["verdict"] == "error"
    assert str(inputs / "essay.txt") in f.error
    assert "no loaded detector handles text input (loaded: spectrum-logreg)" in f.error
    assert rep["detectors"]["spectrum-logreg"]["applies"] is False
    # from the command line: scan exits 2 (errors and no findings), inspect reports the error
    assert main(["-q", "scan", str(inputs / "essay.txt"), "-d", "spectrum-logreg"]) == 2
    rec = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(inputs / "essay.txt"), "-d", "spectrum-logreg"]) == 0
    cli_rep = json.loads(capsys.readouterr().out)
    assert rec["verdict"] == cli_rep["verdict"] == "error"
    assert rec["error"] == cli_rep["error"] == f.error


def test_when_nobody_decides_the_first_detector_that_scored_speaks():
    """A face detector that found no face and an image detector that scored a picture too small
    for its tile both step aside: the record's uncertain verdict and reason are the one that
    judged the picture; one that decides still wins; no result at all gives (None, None)."""
    from detect.app.verdict import primary

    no_face = {"score": None, "verdict": "uncertain", "decides": False,
               "reason": "no face found"}
    small = {"score": -2.0, "verdict": "uncertain", "decides": False,
             "reason": "image 150x120 is smaller than the 192 px tile"}
    sure = {"score": 3.0, "verdict": "synthetic"}
    assert primary({"face": no_face, "img": small}) == ("img", small)
    assert primary({"face": no_face, "img": small, "other": sure}) == ("other", sure)
    assert primary({"face": no_face}) == ("face", no_face)
    assert primary({}) == (None, None)
