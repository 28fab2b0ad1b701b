"""Watermark verification with an explicit "absent".

A decoder always returns *some* bits; what a forensic user needs is the chance that a file
without the mark would match this well. Every check here turns its evidence into a p-value
(a binomial test on matching bits for image payloads, a z-test on green-list or g-value
counts for text) and decides at a stated false-positive rate, Bonferroni-corrected for the
number of (scheme, payload) pairs tried on the same file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

WATERMARK_SCHEMA = "unmask.watermark/1"
DEFAULT_TARGET_FPR = 1e-6

# the statuses a check can end in; "insufficient" = too little signal to decide either way;
# "cross-talk" = the bits match only because another, stronger payload is present
STATUSES = ("detected", "absent", "insufficient", "cross-talk", "error")


@dataclass
class WatermarkResult:
    """One (scheme, payload or key) check on one input."""

    kind: str  # "image" | "text"
    scheme: str  # "dwtDct", "dwtDctSvd", "rivaGan", "kgw", "synthid"
    payload: str  # catalog name ("sd-v1", "sdxl"), "user", or the key file's name
    status: str  # one of STATUSES
    p_value: float | None
    alpha: float  # the per-test threshold: target_fpr / n_tests
    target_fpr: float
    n_tests: int
    statistic: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    schema: str = WATERMARK_SCHEMA

    @property
    def detected(self) -> bool:
        return self.status == "detected"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["p_value"] is not None and not math.isfinite(d["p_value"]):
            d["p_value"] = None
        return d


def corrected_alpha(target_fpr: float, n_tests: int) -> float:
    """Per-test threshold so that the chance of *any* false detection over ``n_tests``
    checks of one clean file stays at or below ``target_fpr`` (Bonferroni)."""
    if not 0 < target_fpr < 1:
        from detect.core.errors import ConfigError

        raise ConfigError(f"target FPR must lie in (0, 1), got {target_fpr}")
    return target_fpr / max(1, int(n_tests))


def decide(p_value: float | None, target_fpr: float, n_tests: int) -> tuple[str, float]:
    """(status, alpha): "detected" when p <= alpha, else "absent"; None -> "insufficient"."""
    alpha = corrected_alpha(target_fpr, n_tests)
    if p_value is None or not math.isfinite(p_value):
        return "insufficient", alpha
    return ("detected" if p_value <= alpha else "absent"), alpha


def binomial_sf(matches: int, n: int, p: float = 0.5) -> float:
    """P(X >= matches) for X ~ Binomial(n, p): the chance a random bit string agrees with a
    payload in at least ``matches`` of ``n`` positions."""
    from scipy.stats import binom

    if n <= 0:
        return 1.0
    return float(binom.sf(matches - 1, n, p))
