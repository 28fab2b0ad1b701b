"""Fusion: a logistic regression over the scores of other detectors.

Members are named as shipped models (``cnn-resnet10t-slim``), model folders, or
``train:NAME`` (a registered detector trained on the same corpus during ``fit``). The members
were fitted on the train split, so their train-split scores are optimistic: the fusion weights
are learned on one half of the calib split and the fused threshold is calibrated on the other
half (stratified, seeded). A saved fusion model is self-contained: its members are saved inside
it under ``members/<i>/`` (each again config.json + weights.safetensors).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..calibration import Calibration
from ..errors import ConfigError, ModelError
from .base import Detector, Tags

if TYPE_CHECKING:
    from ..corpus import Corpus


def _load_member(ref: str, corpus: Corpus | None = None) -> Detector:
    from ..registry import detectors
    from ..scan import shipped_models
    from .base import load_detector

    if ref.startswith("train:"):
        if corpus is None:
            raise ModelError(f"fusion member {ref!r} must be trained: call fit(corpus)")
        return detectors.create(ref.removeprefix("train:")).fit(corpus)
    shipped = shipped_models()
    if ref in shipped:
        return load_detector(shipped[ref])
    if Path(ref).is_dir():
        return load_detector(ref)
    raise ModelError(f"fusion member {ref!r} is neither a shipped model "
                     f"({', '.join(shipped) or 'none'}) nor a model folder")


class FusionDetector(Detector):
    tags = Tags(modality="image", needs_fit=True, min_size=8)

    def __init__(self, *, members: list[str] | None = None, C: float = 1.0,
                 target_fpr: float = 0.01, seed: int = 0):
        self.members, self.C, self.target_fpr, self.seed = list(members or []), C, target_fpr, seed

    @property
    def patch(self) -> int:  # tiles follow the first member
        return self._members()[0].patch

    @property
    def max_tiles(self) -> int:
        return self._members()[0].max_tiles

    def _members(self, corpus: Corpus | None = None) -> list[Detector]:
        if not hasattr(self, "members_"):
            if len(self.members) < 2:
                raise ConfigError(f"{self.name}: give at least two members (shipped names, "
                                  "model folders or train:NAME)")
            self.members_ = [_load_member(str(m), corpus) for m in self.members]
        return self.members_

    def _member_scores(self, items: list[Any]) -> np.ndarray:
        return np.stack([m.score(items) for m in self._members()], axis=1)

    def fit(self, corpus: Corpus) -> FusionDetector:
        from sklearn.linear_model import LogisticRegression

        self._members(corpus)
        calib = corpus.split("calib").filter(lambda r: r.modality == self.tags.modality)
        labels = calib.labels
        if len(set(labels.tolist())) < 2:
            raise ConfigError(f"{self.name}: the calib split needs real and synthetic items")
        rng = np.random.default_rng(self.seed)
        half = np.zeros(len(labels), dtype=bool)
        for lab in (0, 1):
            idx = rng.permutation(np.flatnonzero(labels == lab))
            half[idx[: len(idx) // 2]] = True
        feats = self._member_scores(list(calib.iter_items()))
        clf = LogisticRegression(C=self.C, max_iter=1000).fit(feats[half], labels[half])
        self.coef_ = clf.coef_.ravel().astype(np.float64)
        self.intercept_ = float(clf.intercept_[0])
        scores = feats[~half] @ self.coef_ + self.intercept_
        self.calib_scores_ = scores
        self.calib_labels_ = labels[~half].astype(np.int64)
        self.calibration_ = Calibration.fit(scores, labels[~half], self.target_fpr)
        self.trained_on_ = {"corpus": corpus.header.get("name"),
                            "content_hash": corpus.content_hash, "n_fit": int(half.sum()),
                            "n_calibrate": int((~half).sum())}
        return self

    def score(self, items: list[Any]) -> np.ndarray:
        return self._member_scores(items) @ self.coef_ + self.intercept_

    def score_tiles(self, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        per = [m.score_tiles(item) for m in self._members()]
        pos = per[0][1]
        if any(p != pos for _, p in per[1:]):
            raise ModelError(f"{self.name}: members tile differently; no fused heat map")
        return np.stack([s for s, _ in per], axis=1) @ self.coef_ + self.intercept_, pos

    def _member_refs(self) -> list[str]:
        """Shipped members are stored by name (the package has them); others are copied in."""
        from ..scan import shipped_models

        shipped = shipped_models()
        return [str(ref) if str(ref) in shipped else f"members/{i}"
                for i, ref in enumerate(self.members)]

    def save(self, directory: str | Path) -> Path:
        d = super().save(directory)
        for ref, m in zip(self._member_refs(), self._members(), strict=True):
            if ref.startswith("members/"):
                m.save(d / ref)
        return d

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"coef": self.coef_, "intercept": np.array([self.intercept_])},
                {"members": self._member_refs(),
                 "member_names": [m.name for m in self._members()]})

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        from .base import load_detector

        self.coef_, self.intercept_ = tensors["coef"], float(tensors["intercept"][0])
        root = Path(self.model_dir_)
        refs = meta.get("members") or []
        bad = [r for r in refs if r.startswith("members/") and not re.fullmatch(r"members/\d+", r)]
        if bad:
            raise ModelError(f"{root}: bad member reference(s) {bad}")
        self.members_ = [load_detector(root / ref) if ref.startswith("members/")
                         else _load_member(ref) for ref in refs]
        if len(self.members_) != len(self.coef_):
            raise ModelError(f"{root}: {len(self.members_)} members but {len(self.coef_)} weights")
