"""Tests for detect.core.registry: lazy name -> class maps, suggestions, and entry-point plugins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from detect.core.errors import ConfigError
from detect.core.registry import REGISTRIES, Registry, attacks, detectors, generators

MAIN = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- listing


def test_wildcard_listing_matches_only_the_pattern():
    cnn = detectors.names("cnn-*")
    assert "cnn-test" in cnn
    assert cnn, "expected at least one cnn-* detector"
    assert all(n.startswith("cnn-") for n in cnn)
    assert "spectrum-logreg" not in cnn
    assert cnn == sorted(cnn)
    # the full listing is a superset, and sorted too
    everything = detectors.names()
    assert set(cnn) < set(everything)
    assert everything == sorted(everything)
    assert detectors.names("no-such-*") == []


def test_wildcard_is_case_sensitive_and_anchored():
    assert detectors.names("CNN-*") == []
    # 'test' alone matches nothing: the pattern must cover the whole name
    assert detectors.names("test") == []
    assert set(detectors.names("*-test")) >= {"cnn-test", "spectrum-test"}


def test_every_kind_has_entries():
    expected = {"detectors": detectors, "generators": generators, "attacks": attacks}
    assert expected == REGISTRIES
    assert "dcgan-test" in generators.names()
    assert {"jpeg", "resize", "blur", "noise", "crop"} <= set(attacks.names())
    assert "spectrum-logreg" in detectors
    assert "spectrum-logreq" not in detectors


# ----------------------------------------------------------------------------- lookup errors


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        detectors.entry("spectrum-logreq")
    msg = str(info.value)
    assert "spectrum-logreq" in msg
    assert "spectrum-logreg" in msg
    assert "did you mean" in msg


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(ConfigError) as info:
        detectors.create("zzzzzzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "zzzzzzzzzzzz" in str(info.value)


def test_create_unknown_generator_suggests():
    with pytest.raises(ConfigError, match="dcgan"):
        generators.create("dcgann")


# ----------------------------------------------------------------------------- create


def test_create_applies_defaults_and_sets_name():
    from detect.image.spectrum import SpectrumDetector

    det = detectors.create("spectrum-test")
    assert isinstance(det, SpectrumDetector)
    assert det.name == "spectrum-test"
    assert (det.bins, det.patch) == (16, 16)  # registry defaults
    assert det.C == 1.0  # class default where the registry says nothing

    plain = detectors.create("spectrum-logreg")
    assert plain.name == "spectrum-logreg"
    assert (plain.bins, plain.patch) == (24, 32)


def test_create_overrides_win_and_do_not_leak_into_defaults():
    det = detectors.create("spectrum-test", bins=8, C=0.5)
    assert (det.bins, det.patch, det.C) == (8, 16, 0.5)
    again = detectors.create("spectrum-test")
    assert again.bins == 16, "an override must not change the registered defaults"
    assert detectors.entry("spectrum-test").defaults == {"bins": 16, "patch": 16}


def test_create_attack_with_defaults():
    jpeg = attacks.create("jpeg")
    assert jpeg.quality == 75
    assert attacks.create("jpeg", quality=30).quality == 30


def test_bad_kwargs_raise_config_error():
    with pytest.raises(ConfigError) as info:
        detectors.create("spectrum-test", no_such_option=3)
    msg = str(info.value)
    assert "spectrum-test" in msg
    assert "no_such_option" in msg


def test_register_rejects_duplicates_and_bad_targets():
    reg = Registry("thing", "unmask.tests-nonexistent-group")
    reg.register("a", "detect.core.errors:ConfigError")
    with pytest.raises(ConfigError, match="twice"):
        reg.register("a", "detect.core.errors:ConfigError")
    with pytest.raises(ConfigError, match="module:Class"):
        reg.register("b", "detect.core.errors.ConfigError")


def test_unimportable_target_is_config_error():
    reg = Registry("thing", "unmask.tests-nonexistent-group")
    reg.register("missing-module", "detect.no_such_module:X")
    reg.register("missing-attr", "detect.core.errors:NoSuchClass")
    for name in ("missing-module", "missing-attr"):
        with pytest.raises(ConfigError, match="cannot import"):
            reg.create(name)


def test_get_class_resolves_dotted_attribute():
    reg = Registry("thing", "unmask.tests-nonexistent-group")
    reg.register("nested", "detect.core.detector:Detector.get_params")
    from detect.core.detector import Detector

    assert reg.get_class("nested") is Detector.get_params


# ----------------------------------------------------------------------------- laziness


def test_listing_never_imports_torch():
    code = (
        "import sys\n"
        "import detect.core.registry as r\n"
        "r.detectors.names(); r.generators.names(); r.attacks.names()\n"
        "r.detectors.entry('cnn-test'); r.generators.entry('dcgan')\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=MAIN, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- plugins


def _fake_distribution(root: Path, entry_points: str) -> None:
    info = root / "myplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "[unmask.detectors]\n"
        "my-spectrum = detect.image.spectrum:SpectrumDetector\n"
        "spectrum-logreg = benchmarks.attacks:JPEG\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    detectors.reload_plugins()
    yield tmp_path
    monkeypatch.undo()
    detectors.reload_plugins()


def test_entry_point_plugin_is_listed_and_created(plugin_path):
    from detect.image.spectrum import SpectrumDetector

    assert "my-spectrum" in detectors.names()
    assert detectors.names("my-*") == ["my-spectrum"]
    entry = detectors.entry("my-spectrum")
    assert entry.plugin == "myplugin"
    assert "myplugin" in entry.doc
    det = detectors.create("my-spectrum", bins=12)
    assert isinstance(det, SpectrumDetector)
    assert det.name == "my-spectrum"
    assert det.bins == 12
    # the plugin is only in the detectors group
    assert "my-spectrum" not in generators.names()


def test_plugin_cannot_override_builtin(plugin_path):
    from detect.image.spectrum import SpectrumDetector

    entry = detectors.entry("spectrum-logreg")
    assert entry.plugin is None
    assert entry.target == "detect.image.spectrum:SpectrumDetector"
    assert isinstance(detectors.create("spectrum-logreg"), SpectrumDetector)
    assert detectors.names().count("spectrum-logreg") == 1


def test_reload_forgets_uninstalled_plugin(plugin_path, monkeypatch):
    assert "my-spectrum" in detectors.names()
    monkeypatch.undo()  # the plugin's folder leaves sys.path ("uninstalled")
    detectors.reload_plugins()
    assert "my-spectrum" not in detectors.names()
    # built-ins survive a reload
    assert {"spectrum-logreg", "spectrum-test", "cnn-test"} <= set(detectors.names())
    with pytest.raises(ConfigError, match="my-spectrum"):
        detectors.create("my-spectrum")
