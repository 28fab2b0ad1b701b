"""Labelled corpora: real items from shipped data, fakes from generators trained here."""
