"""Faces: finding and aligning faces, the face-forgery detectors and their video aggregation."""
