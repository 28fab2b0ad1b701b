"""unmask: detect generated images, videos and text; verify watermarks and provenance.

Importing ``detect`` is cheap: torch, timm and friends load on first use of a model.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Item": "detect.core.types", "Sample": "detect.core.types",
    "Provenance": "detect.core.types", "Finding": "detect.core.types",
    "UnmaskError": "detect.core.errors", "InputError": "detect.core.errors",
    "ConfigError": "detect.core.errors", "ModelError": "detect.core.errors",
    "Corpus": "detect.io.corpus", "CorpusWriter": "detect.io.corpus",
    "Detector": "detect.core.detector", "load_detector": "detect.core.detector",
    "load": "detect.io.media", "Limits": "detect.io.media",
    "detectors": "detect.core.registry", "generators": "detect.core.registry",
    "attacks": "detect.core.registry", "scan": "detect.app.scan",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
