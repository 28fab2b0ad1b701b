"""Fusion: a logistic regression over the scores of other detectors.

Members are named as shipped models (``cnn-resnet10t-slim``), model folders, or
``train:NAME`` (a registered detector trained on the same corpus during ``fit``). The members
were fitted on the train split, so their train-split scores are optimistic: the fusion weights
are learned on one half of the calib split and the fused threshold is calibrated on the other
half (stratified, seeded). A saved fusion model is self-contained: its members are saved inside
it under ``members/<i>/`` (each again config.json + weights.safetensors).

``method="max-p"`` learns no weights: each member's score becomes an empirical p-value against
the real items of that member's own calibration split, and the fused score is the strongest
evidence, ``-log10(min p)``. A logistic regression learns which member best separates the
generator families it was shown, and can mute the one member that would have caught a new
family; the max-p rule lets any member raise the alarm (its threshold is still calibrated on
the fusion's calib split, all of it since nothing is fitted, so the stated FPR holds).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.detector import Detector, Tags
from detect.core.errors import ConfigError, ModelError
from detect.core.hashing import file_sha256
from detect.core.linear import LinearHead
from detect.core.types import Modality

if TYPE_CHECKING:
    from detect.io.corpus import Corpus


def _load_member(ref: str, corpus: Corpus | None = None, device: str | None = None) -> Detector:
    from detect.core.models import load_model

    return load_model(ref, corpus, device=device)


METHODS = ("logreg", "max-p")


def weights_sha256(model_dir: Path) -> str:
    return file_sha256(model_dir / "weights.safetensors")


def _real_tail(m: Detector) -> np.ndarray:
    """A member's calibration scores of real items, sorted: its null distribution."""
    real = np.sort(np.asarray(m.calib_scores_)[np.asarray(m.calib_labels_) == 0])
    if real.size == 0:
        raise ModelError(f"{m.name}: no real calibration scores to turn scores into p-values")
    return real


class FusionDetector(Detector):
    tags = Tags(modality=Modality.IMAGE, needs_fit=True, min_size=8)

    def __init__(self, *, members: list[str] | None = None, method: str = "logreg",
                 C: float = 1.0, target_fpr: float = 0.01, seed: int = 0):
        if method not in METHODS:
            raise ConfigError(f"fusion method must be one of {', '.join(METHODS)}, got {method!r}")
        # the references; ``members()`` is the loaded detectors
        self.member_refs, self.method, self.C = list(members or []), method, C
        self.target_fpr, self.seed = target_fpr, seed

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (``members``: the references, stored as ``member_refs``)."""
        return {**super().get_params(), "members": list(self.member_refs)}

    def applies_to(self, item: Any) -> bool:
        """Images, and videos (by their frames, as its image members score them)."""
        return item.modality in (Modality.IMAGE, Modality.VIDEO)

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> Any:
        """As every detector's, but ``uncertain`` for a picture smaller than one tile."""
        from detect.image.patch import smaller_than_tile

        return smaller_than_tile(super().decide(item, score, target_fpr), item, self.patch,
                                 self.name)

    @property
    def patch(self) -> int:  # tiles follow the first member
        return self.members()[0].patch

    @property
    def max_tiles(self) -> int:
        return self.members()[0].max_tiles

    # -- members -------------------------------------------------------------------------------
    def members(self, corpus: Corpus | None = None) -> list[Detector]:
        """The member detectors, loaded (``train:NAME`` ones fitted on ``corpus``) on first use."""
        if not hasattr(self, "members_"):
            refs = self.member_refs
            if len(refs) < 2:
                raise ConfigError(f"{self.name}: give at least two members (shipped names, "
                                  "model folders or train:NAME)")
            self.members_ = [_load_member(str(m), corpus) for m in refs]
        return self.members_

    def share_members(self, loaded: list[Detector]) -> None:
        """Use the very instances in ``loaded`` for the members that are also loaded on their
        own (same model folder), so a scan scores each of them once (``verdict.judge``)."""
        by_dir = {str(Path(d.model_dir_).resolve()): d for d in loaded
                  if getattr(d, "model_dir_", None)}
        self.members_ = [by_dir.get(str(Path(m.model_dir_).resolve()), m)
                         if getattr(m, "model_dir_", None) else m
                         for m in self.members()]

    def _member_scores(self, items: list[Any]) -> np.ndarray:
        return np.stack([m.score(items) for m in self.members()], axis=1)

    def combine(self, member_scores: np.ndarray) -> np.ndarray:
        """(N, members) member scores -> (N,) fused scores."""
        feats = np.asarray(member_scores, dtype=np.float64)
        if self.method == "logreg":
            return self.head_.decision(feats)
        logp = []
        for j, m in enumerate(self.members()):
            real = _real_tail(m)
            above = real.size - np.searchsorted(real, feats[:, j], side="left")
            logp.append(np.log10((1.0 + above) / (1.0 + real.size)))
        return -np.min(np.stack(logp, axis=1), axis=1)

    def explain(self, member_scores: np.ndarray) -> dict[str, dict[str, float]]:
        """What each member contributed to one item's fused score: its score and, for max-p,
        its p-value against its own calibration reals; for logreg, weight x score."""
        feats = np.asarray(member_scores, dtype=np.float64).reshape(-1)
        out: dict[str, dict[str, float]] = {}
        w = self.head_.coef if self.method == "logreg" else None
        for j, m in enumerate(self.members()):
            e = {"score": round(float(feats[j]), 4)}
            if self.method == "max-p":
                real = _real_tail(m)
                above = real.size - np.searchsorted(real, feats[j], side="left")
                e["p_value"] = round(float((1.0 + above) / (1.0 + real.size)), 6)
            elif w is not None:
                e["contribution"] = round(float(w[j] * feats[j]), 4)
            out[m.name] = e
        return out

    # -- training ------------------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> FusionDetector:
        self.members(corpus)
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
        self.head_ = LinearHead(C=self.C, standardise=False, max_iter=1000)
        if self.method == "logreg":
            self.head_.fit(feats[half], labels[half])
        else:  # no weights to learn; one per member keeps the saved layout uniform
            self.head_.set_weights(np.ones(feats.shape[1]), 0.0)
            # nothing was fitted, so the whole calib split calibrates (twice the reals, so a
            # lower FPR is supported). A calib real's p-values are ranks among the very reals
            # they are computed against, as a new real's are: exchangeable, so the threshold
            # holds for new reals as for the calib ones
            half[:] = False
        self.calibrate(self.combine(feats[~half]), labels[~half])
        self._record_training(corpus, n_fit=int(half.sum()), n_calibrate=int((~half).sum()))
        return self

    # -- scoring -------------------------------------------------------------------------------
    def score(self, items: list[Any]) -> np.ndarray:
        return self.combine(self._member_scores(items))

    def score_tiles(self, item: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        per = [m.score_tiles(item) for m in self.members()]
        pos = per[0][1]
        if any(p != pos for _, p in per[1:]):
            raise ModelError(f"{self.name}: members tile differently; no fused heat map")
        return self.combine(np.stack([s for s, _ in per], axis=1)), pos

    # -- persistence ---------------------------------------------------------------------------
    def _member_refs(self) -> list[str]:
        """Shipped members are stored by name (the package has them); others are copied in."""
        from detect.core.models import shipped_models

        shipped = shipped_models()
        return [str(ref) if str(ref) in shipped else f"members/{i}"
                for i, ref in enumerate(self.member_refs)]

    def save(self, directory: str | Path) -> Path:
        d = super().save(directory)
        for ref, m in zip(self._member_refs(), self.members(), strict=True):
            if ref.startswith("members/"):
                m.save(d / ref)
        return d

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        refs = self._member_refs()
        members = self.members()
        return (self.head_.tensors(),
                {"members": refs, "member_names": [m.name for m in members],
                 # a member stored by name must still be the model the weights were fitted on
                 "member_sha256": [None if r.startswith("members/") else
                                   weights_sha256(Path(m.model_dir_))
                                   for r, m in zip(refs, members, strict=True)]})

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        from detect.core.detector import load_detector

        root = Path(self.model_dir_)
        self.head_ = LinearHead(C=self.C, standardise=False).load_tensors(tensors,
                                                                           where=str(root))
        refs = meta.get("members") or []
        bad = [r for r in refs if r.startswith("members/") and not re.fullmatch(r"members/\d+", r)]
        if bad:
            raise ModelError(f"{root}: bad member reference(s) {bad}")
        device = getattr(self, "_load_device", None)  # load_detector(..., device=) reaches them
        self.members_ = [load_detector(root / ref, device=device) if ref.startswith("members/")
                         else _load_member(ref, device=device) for ref in refs]
        wants = meta.get("member_sha256") or [None] * len(refs)
        for ref, m, want in zip(refs, self.members_, wants, strict=True):
            if want and weights_sha256(Path(m.model_dir_)) != want:
                raise ModelError(f"{root}: member {ref!r} is not the model this fusion was fitted "
                                 "on (its weights changed since); refit the fusion")
        if len(self.members_) != self.head_.n_features:
            raise ModelError(f"{root}: {len(self.members_)} members but "
                             f"{self.head_.n_features} weights")
