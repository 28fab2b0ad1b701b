"""Text attacks live in :mod:`detect.attacks.text` (the library's attack registry); this module
re-exports them so older imports keep working."""

from detect.attacks.text import (  # noqa: F401
    _LOOKALIKES,
    CopyPasteMix,
    Homoglyphs,
    TextAttack,
    WordDelete,
    WordSubstitute,
    ZeroWidth,
)
