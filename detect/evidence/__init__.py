"""Evidence beside the detectors: invisible watermarks (image and text), generator
metadata, C2PA."""
