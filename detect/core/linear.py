"""One linear head: optional standardisation + logistic regression, stored as safetensors.

Spectrum, reconstruction, fusion, the GLTR zero-shot head and TF-IDF all end in the same
thing: ``score = ((x - mean) / scale) @ coef + intercept``. This class fits it (sklearn's
``LogisticRegression``), scores with plain numpy (no sklearn at load time), and reads and
writes its tensors under a prefix, so every saved model keeps the tensor names it always had
(``mean``/``scale``/``coef``/``intercept``, or ``gltr.coef``, ``logreg.coef``...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detect.core.errors import ModelError


def head_attribute(name: str) -> property:
    """A read-only view of ``self.head_.<name>`` on a detector that keeps its ``LinearHead`` as
    ``head_``: ``coef_ = head_attribute("coef")`` keeps the attributes detectors had before the
    head was shared (``top_terms``, tests and notebooks read ``coef_``). Unfitted, it raises
    AttributeError, so ``hasattr(det, "coef_")`` still says whether the head is there."""

    def get(self: Any) -> Any:
        try:
            head = self.__dict__["head_"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no fitted linear head "
                                 f"(no {name}_)") from None
        return getattr(head, name)

    return property(get, doc=f"``head_.{name}`` (read-only)")


class LinearHead:
    """``fit(X, y)`` then ``decision(X)``; ``standardise`` keeps per-feature mean and scale."""

    def __init__(self, *, C: float = 1.0, standardise: bool = True, max_iter: int = 2000,
                 class_weight: str | None = None, seed: int | None = None):
        self.C, self.standardise, self.max_iter = C, standardise, max_iter
        self.class_weight, self.seed = class_weight, seed
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.intercept: float = 0.0

    def fit(self, X: Any, y: np.ndarray, **lr_kwargs: Any) -> LinearHead:
        """Fit on features ``X`` (a dense array, or a sparse matrix when not standardising)."""
        from sklearn.linear_model import LogisticRegression

        if self.standardise:
            X = np.asarray(X, dtype=np.float64)
            self.mean = X.mean(axis=0)
            self.scale = X.std(axis=0) + 1e-8
            X = (X - self.mean) / self.scale
        kw: dict[str, Any] = {"C": self.C, "max_iter": self.max_iter}
        if self.class_weight is not None:
            kw["class_weight"] = self.class_weight
        if self.seed is not None:
            kw["random_state"] = self.seed
        clf = LogisticRegression(**{**kw, **lr_kwargs}).fit(X, y)
        self.coef = clf.coef_.ravel().astype(np.float64)
        self.intercept = float(clf.intercept_[0])
        return self

    def set_weights(self, coef: np.ndarray, intercept: float = 0.0) -> LinearHead:
        """Fixed weights (e.g. a fallback sum when a fit is impossible)."""
        self.coef, self.intercept = np.asarray(coef, dtype=np.float64), float(intercept)
        return self

    @property
    def fitted(self) -> bool:
        return self.coef is not None

    @property
    def n_features(self) -> int:
        if self.coef is None:
            raise ModelError("the linear head is not fitted")
        return int(self.coef.shape[0])

    def decision(self, X: Any) -> np.ndarray:
        """The linear score of each row (higher = more likely synthetic)."""
        if self.coef is None:
            raise ModelError("the linear head is not fitted")
        if self.standardise:
            X = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(X @ self.coef, dtype=np.float64).ravel() + self.intercept

    # -- persistence --------------------------------------------------------------------------
    def tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        if self.coef is None:
            raise ModelError("the linear head is not fitted")
        out = {f"{prefix}coef": self.coef, f"{prefix}intercept": np.array([self.intercept])}
        if self.standardise:
            out |= {f"{prefix}mean": self.mean, f"{prefix}scale": self.scale}
        return out

    def load_tensors(self, tensors: dict[str, np.ndarray], prefix: str = "",
                     where: str = "model") -> LinearHead:
        """Read the head back from ``tensors`` (popping nothing); a missing name is a
        ModelError naming ``where``."""
        need = ["coef", "intercept"] + (["mean", "scale"] if self.standardise else [])
        missing = [f"{prefix}{k}" for k in need if f"{prefix}{k}" not in tensors]
        if missing:
            raise ModelError(f"{where}: weights lack {', '.join(missing)}")
        self.coef = np.asarray(tensors[f"{prefix}coef"], dtype=np.float64).ravel()
        self.intercept = float(np.asarray(tensors[f"{prefix}intercept"]).ravel()[0])
        if self.standardise:
            self.mean = np.asarray(tensors[f"{prefix}mean"], dtype=np.float64)
            self.scale = np.asarray(tensors[f"{prefix}scale"], dtype=np.float64)
            if self.mean.shape != self.coef.shape or self.scale.shape != self.coef.shape:
                raise ModelError(f"{where}: mean/scale/coef shapes differ "
                                 f"({self.mean.shape}, {self.scale.shape}, {self.coef.shape})")
        return self
