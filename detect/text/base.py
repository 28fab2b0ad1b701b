"""What every text detector shares: normalisation first, length-aware calibration, and an
honest "uncertain" for texts too short or in a language the detectors were not trained on.

Detectors of machine text are far more reliable on long texts than on short ones, so a single
threshold either flags many short human texts or misses most long machine ones. Calibration is
therefore per length bucket: the calibration split's scores are grouped by the text's length and
each bucket gets its own threshold at the target FPR (a bucket with too few human texts falls
back to the pooled threshold, and says so). Below ``min_tokens`` no threshold is trusted and the
verdict is "uncertain".

Length is counted in word-level tokens (words and punctuation marks, ``count_tokens``), the
same for every detector whatever its own tokenizer, so buckets mean the same thing across
detectors; BPE tokens of our LMs run about 1.1-1.3 per word-level token in English prose.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.core.calibration import Calibration
from detect.core.detector import Detector, Tags
from detect.core.errors import ConfigError, InputError
from detect.core.types import DetectorResult, Modality

if TYPE_CHECKING:
    from detect.io.corpus import Corpus

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# bucket upper edges in word-level tokens; nominal lengths 50 / 100 / 200 / 400 BPE tokens
LENGTH_EDGES = (70, 140, 280)
BUCKET_NAMES = ("~50", "~100", "~200", "~400+")
MIN_BUCKET_REALS = 30  # fewer human calibration texts than this in a bucket: use the pooled rule


def count_tokens(text: str) -> int:
    """Word-level tokens: runs of word characters and single punctuation marks."""
    return len(_TOKEN.findall(text))


def bucket_of(n_tokens: int, edges: tuple[int, ...] = LENGTH_EDGES) -> int:
    return int(np.searchsorted(np.asarray(edges), n_tokens, side="right"))


def text_of(x: Any) -> str:
    t = getattr(x, "content", x)
    if not isinstance(t, str):
        raise InputError(getattr(x, "path", "input"), "expected text")
    return t


class TextDetector(Detector):
    """Base for text detectors. Subclasses implement ``_fit_texts``, ``_score_texts`` and
    ``_get_text_state`` / ``_set_text_state``; constructor arguments should include
    ``min_tokens``, ``normalize``, ``target_fpr`` and ``seed``."""

    tags = Tags(modality=Modality.TEXT, needs_fit=True, min_size=0)
    min_tokens: int = 16
    normalize: bool = True
    check_language: bool = True

    # -- text preparation ----------------------------------------------------------------
    def prepare(self, x: Any) -> str:
        """The text a detector sees: normalised (NFKC, homoglyphs, zero-width, whitespace)."""
        text = text_of(x)
        if self.normalize:
            from detect.io.normalize import normalize

            text = normalize(text).text
        return text

    # -- training --------------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> TextDetector:
        train = corpus.split("train").filter(lambda r: r.modality == Modality.TEXT)
        if len(train) == 0 or len(set(train.labels.tolist())) < 2:
            raise ConfigError(f"{self.name}: the train split needs both human and machine texts")
        texts = [self.prepare(it) for it in train.iter_items()]
        rng = np.random.default_rng(self.seed)
        self._fit_texts(texts, train.labels, rng)
        self._record_training(corpus, n_train=len(train))
        self.calibrate_on(corpus.split("calib"))
        return self

    def _fit_texts(self, texts: list[str], labels: np.ndarray, rng: np.random.Generator) -> None:
        """Train on prepared texts (zero-shot detectors have nothing to learn)."""

    def calibrate_on(self, calib: Corpus) -> TextDetector:
        """Calibrate on the texts of ``calib`` (see ``calibrate_texts``)."""
        calib = calib.filter(lambda r: r.modality == Modality.TEXT)
        if len(calib) == 0:
            raise ConfigError(f"{self.name}: the calib split has no texts; calibration needs it")
        texts = [self.prepare(it) for it in calib.iter_items()]
        return self.calibrate_texts(texts, calib.labels)

    def calibrate_texts(self, texts: list[str], labels: np.ndarray) -> TextDetector:
        """Calibrate on prepared texts and their labels (0 human, 1 machine; human-only works:
        a threshold at an FPR needs only human texts)."""
        scores = self._score_texts(texts)
        ok = np.isfinite(scores)
        self.calib_lengths_ = np.array([count_tokens(t) for t in texts], dtype=np.int64)[ok]
        self.calibrate(scores[ok], np.asarray(labels)[ok])
        return self

    # -- decisions -------------------------------------------------------------------------
    def calibration_for(self, target_fpr: float | None = None,
                        length: int | None = None) -> Calibration:
        """The pooled rule, or the rule of ``length``'s bucket when it has enough human texts."""
        if length is None:
            return super().calibration_for(target_fpr)
        self._check_fitted()
        fpr = self.calibration_.target_fpr if target_fpr is None else target_fpr
        b = bucket_of(length)
        key = ("bucket", fpr, b, id(self.calib_scores_))
        cache = self.__dict__.setdefault("_calibration_cache", {})
        if key not in cache:
            lengths = getattr(self, "calib_lengths_", None)
            cal = None
            if lengths is not None and len(lengths) == len(self.calib_scores_):
                sel = np.array([bucket_of(int(n)) == b for n in lengths], dtype=bool)
                if int((self.calib_labels_[sel] == 0).sum()) >= MIN_BUCKET_REALS:
                    cal = Calibration.fit(self.calib_scores_[sel], self.calib_labels_[sel], fpr)
            cache[key] = cal or super().calibration_for(target_fpr)
        return cache[key]

    def decide(self, item: Any, score: float, target_fpr: float | None = None) -> DetectorResult:
        """The detector's result for one text: verdict at the target FPR for its length, or
        "uncertain" with a reason when the text is too short or not in a supported language
        (details: ``tokens``, ``length_bucket`` and the detector's own, ``_details``)."""
        text = self.prepare(item)
        n = count_tokens(text)
        b = bucket_of(n)
        cal = self.calibration_for(target_fpr, n)
        pooled = cal is self.calibration_for(target_fpr)
        res = cal.decision(score, "pooled" if pooled else f"bucket {BUCKET_NAMES[b]}")
        res.details.update(tokens=n, length_bucket=BUCKET_NAMES[b])
        reason = None
        if n < self.min_tokens:
            reason = (f"too short: {n} tokens, below the {self.min_tokens} at which this "
                      "detector is calibrated")
        elif self.check_language:
            from detect.io.normalize import language_check

            lang = language_check(text)
            if not lang["supported"]:
                reason = f"unsupported language or script: {lang['reason']}"
        if reason and res.verdict != "error":
            res.verdict = "uncertain"
            res.reason = "; ".join(filter(None, [reason, res.reason]))
        res.details.update(self._details(text))
        return res

    def _details(self, text: str) -> dict[str, Any]:
        """Detector-specific facts about one prepared text for its result (none by default)."""
        return {}

    # -- scoring ---------------------------------------------------------------------------
    def score(self, items: list[Any]) -> np.ndarray:
        return np.asarray(self._score_texts([self.prepare(x) for x in items]), dtype=np.float64)

    def _score_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, meta = self._get_text_state()
        tensors = dict(tensors)
        tensors["text.calib_lengths"] = np.asarray(self.calib_lengths_, dtype=np.int64)
        return tensors, meta

    def _set_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        tensors = dict(tensors)
        lengths = tensors.pop("text.calib_lengths", None)
        if lengths is not None:
            self.calib_lengths_ = lengths.astype(np.int64)
        self._set_text_state(tensors, meta)

    def _get_text_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}

    def _set_text_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        return None
