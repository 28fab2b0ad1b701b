"""Faces for face-forgery detectors: real face sources and forgeries made from them alone."""
