"""Media in: files and bytes to Items (images, text, video) under limits, text normalisation.
Imports only ``detect.core``."""
