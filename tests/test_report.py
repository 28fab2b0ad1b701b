"""``unmask inspect --html``: the self-contained report, opened in a real headless browser
(Debian's chromium) which renders it and takes a screenshot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
from conftest import require_setup
from PIL import Image

from detect.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render(html: Path, tmp_path: Path) -> tuple[str, np.ndarray]:
    """The DOM chromium built from the file, and its screenshot as an array."""
    require_setup(CHROMIUM is not None, "chromium (headless, to render the reports)")
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2400", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return dom, np.asarray(Image.open(shot).convert("RGB"))


def test_image_report_renders_its_sections(trained_models, tmp_path, capsys):
    from skimage import data

    img = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(img)
    html = tmp_path / "report.html"
    code = main(["inspect", str(img), "-m", str(trained_models["spectrum-test"]),
                 "--html", str(html), "--json", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "unmask.inspect/2" and report["html"] == str(html)
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    dom, shot = _render(html, tmp_path)
    for section in ("detectors", "watermarks", "provenance", "evidence", "json"):
        assert f'id="{section}"' in dom, section
    for fig in ("picture", "spectrum", "ela", "heatmap"):
        assert f'id="fig-{fig}"' in dom and "data:image/png;base64," in dom, fig
    assert "spectrum-test" in dom
    assert shot.shape[0] >= 2000 and shot.std() > 20  # the page painted pictures, not a blank


def test_video_report_has_timeline_and_frames(face_model, tiny_face_corpus, tmp_path, capsys):
    clip = next(r for r in tiny_face_corpus.records
                if r.modality == "video" and "astronaut" in r.provenance["source"])
    video = tmp_path / "clip.avi"
    shutil.copy(tiny_face_corpus.root / clip.path, video)
    html = tmp_path / "video.html"
    assert main(["inspect", str(video), "-m", str(face_model), "--html", str(html)]) == 0
    capsys.readouterr()
    dom, shot = _render(html, tmp_path)
    assert 'id="fig-timeline"' in dom and 'id="fig-frames"' in dom
    assert "face-test" in dom and shot.std() > 10


def test_text_report_highlights_sentences(tmp_path, capsys):
    from detect.core.models import shipped_models

    # the shipped text models are in the repository (test_shipped checks them): never a skip
    assert "lm-fastdetect" in shipped_models()
    doc = tmp_path / "essay.txt"
    doc.write_text("The committee met on Tuesday to review the budget. Several members asked "
                   "why the maintenance costs had risen so quickly over the last two years. "
                   "The treasurer explained that the roof repairs could not be postponed any "
                   "longer, and that the contractor had raised his prices twice. After a long "
                   "discussion the members agreed to delay the new playground until spring.\n")
    html = tmp_path / "text.html"
    assert main(["inspect", str(doc), "-d", "lm-fastdetect", "--html", str(html)]) == 0
    capsys.readouterr()
    dom, _ = _render(html, tmp_path)
    assert 'id="text"' in dom and dom.count('class="sent"') >= 3
