"""Which split a synthetic item goes to: shared by the image and face recipe builders."""

from __future__ import annotations

import numpy as np


def fake_split(i: int, fractions: dict[str, float], seed: int) -> str:
    """The split of synthetic item ``i``: drawn from ``fractions`` (split -> share, in order)
    with a generator seeded by ``seed`` and ``i`` alone, so resuming a build or adding items
    never moves an item that was already placed."""
    u = np.random.default_rng([seed, 7919, i]).random()
    acc = 0.0
    for s, f in fractions.items():
        acc += f
        if u < acc:
            return s
    return list(fractions)[-1]
