"""The bottom layer: types, errors, parameters, the registries, calibration, corpora, the
detector contract and model references. Imports nothing else from ``detect``."""
