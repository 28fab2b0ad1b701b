"""Image attacks live in :mod:`detect.attacks` (the library's attack registry); this module
re-exports them so older imports keep working."""

from detect.attacks import (  # noqa: F401
    JPEG,
    Attack,
    Blur,
    Brightness,
    Crop,
    Noise,
    Resize,
    Rotate,
)
