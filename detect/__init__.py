"""unmask: detect generated images, videos and text; verify watermarks and provenance.

Importing ``detect`` is cheap: torch, timm and friends load on first use of a model.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Item": "detect.types", "Sample": "detect.types", "Provenance": "detect.types",
    "Finding": "detect.types", "UnmaskError": "detect.errors", "InputError": "detect.errors",
    "ConfigError": "detect.errors", "ModelError": "detect.errors", "Corpus": "detect.corpus",
    "CorpusWriter": "detect.corpus", "Detector": "detect.detectors.base",
    "load_detector": "detect.detectors.base", "load": "detect.media", "Limits": "detect.media",
    "detectors": "detect.registry", "generators": "detect.registry", "attacks": "detect.registry",
    "scan": "detect.scan",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")
