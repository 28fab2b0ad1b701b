"""Image detectors: patch-based spectrum, CNN, NPR and reconstruction detectors, and fusion."""
