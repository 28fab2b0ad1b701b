"""Cheap imports: ``import detect`` and a spectrum-only scan never load torch or diffusers."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import detect, detect.cli, detect.app.scan, detect.io.corpus, detect.core.registry, detect.io.media
from detect.core.registry import detectors
detectors.names()
{extra}
heavy = [m for m in ("torch", "timm", "diffusers", "transformers", "cv2", "generators",
                     "benchmarks") if m in sys.modules]
assert not heavy, heavy
"""


@pytest.mark.parametrize("extra", ["", "detect.cli.build_parser().parse_args(['scan', 'x'])"])
def test_import_detect_stays_light(extra):
    r = subprocess.run([sys.executable, "-c", CHECK.format(extra=extra)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_spectrum_scan_never_loads_torch(trained_models, tmp_path):
    import numpy as np
    from PIL import Image

    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(img)
    code = f"""
import sys
from detect.cli import main
rc = main(["-q", "scan", {str(img)!r}, "--model", {str(trained_models['spectrum-test'])!r},
           "--fail-on", "never"])
assert rc == 0, rc
assert "torch" not in sys.modules
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"schema": "unmask.finding/1"' in r.stdout
