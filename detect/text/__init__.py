"""Text: normalisation, LM scoring shared by the zero-shot detectors, supervised detectors and
length-aware calibration. ``import detect.text`` stays light; torch and transformers load on
first use."""
