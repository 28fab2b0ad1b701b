"""Detectors. Import concrete ones through ``detect.registry.detectors`` (lazy)."""

from .base import Detector, Tags, load_detector

__all__ = ["Detector", "Tags", "load_detector"]
