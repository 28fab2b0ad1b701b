"""Zero-shot machine-text detectors: one statistic of an LM's view of the text.

- ``likelihood``: mean log-probability (machine text is more probable to an LM);
- ``logrank``: minus the mean log rank (GLTR's / DetectGPT's log-rank baseline);
- ``entropy``: minus the mean predictive entropy (the model is surer on machine text);
- ``lrr``: DetectLLM's log-likelihood / log-rank ratio;
- ``gltr``: GLTR's rank-bucket fractions (top-10/100/1000/rest) through a logistic regression
  trained on the train split;
- ``fastdetect``: Fast-DetectGPT's analytic sampling discrepancy: (sum log p(x_t) - sum mu_t) /
  sqrt(sum var_t), mu and var of log p under the reference distribution (the observer itself,
  or the performer when given), computed exactly, without sampling;
- ``binoculars``: minus Binoculars' score, log-perplexity under the observer divided by the
  cross-perplexity of the performer's predictions under the observer (two LMs, one tokenizer).

All read the same ``LMScorer`` pass (cached per text), so running every one of them on a file
costs one forward pass per model. Only calibration is fitted (plus GLTR's 5-weight regression);
the thresholds are per length bucket (``TextDetector``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.device import torch_device
from detect.core.errors import ConfigError
from detect.core.linear import LinearHead, head_attribute
from detect.text.base import TextDetector
from detect.text.lm import STATISTICS, LMScorer, gltr_features, resolve_model_ref, statistic

_SCORERS: dict[tuple[str, str, int, str, str], LMScorer] = {}


def _is_local(ref: str | None) -> bool:
    from detect.core.models import is_local_ref

    return is_local_ref(ref)


class ZeroShotDetector(TextDetector):
    def __init__(self, *, statistic: str = "fastdetect", observer: str = "shipped:text-lm-a",
                 performer: str | None = None, max_tokens: int = 1024, batch_size: int = 8,
                 min_tokens: int = 16, normalize: bool = True, C: float = 1.0,
                 target_fpr: float = 0.01, seed: int = 0, device: str = "cpu"):
        torch_device(device, type(self).__name__)  # a bad device fails here, named
        self.statistic, self.observer, self.performer = statistic, observer, performer
        self.device = device
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.min_tokens, self.normalize, self.C = min_tokens, normalize, C
        self.target_fpr, self.seed = target_fpr, seed

    @property
    def scorer(self) -> LMScorer:
        """Shared between detectors with the same models (so the pass and its cache are too)."""
        if self.statistic not in STATISTICS:
            raise ConfigError(f"{self.name}: statistic must be one of {list(STATISTICS)}, got "
                              f"{self.statistic!r}")
        if self.statistic == "binoculars" and not self.performer:
            raise ConfigError(f"{self.name}: binoculars needs performer=... (a second LM with "
                              "the observer's tokenizer)")
        base = getattr(self, "model_dir_", None)
        key = (self.observer, self.performer or "", self.max_tokens, str(base), self.device)
        if key not in _SCORERS:
            _SCORERS[key] = LMScorer(self.observer, self.performer, max_tokens=self.max_tokens,
                                     batch_size=self.batch_size, base=base, device=self.device)
        return _SCORERS[key]

    def token_stats(self, texts: list[str]) -> list[Any]:
        return self.scorer.stats(texts)

    def _features(self, texts: list[str]) -> np.ndarray:
        return np.stack([gltr_features(ts) for ts in self.token_stats(texts)])

    def _fit_texts(self, texts: list[str], labels: np.ndarray, rng: np.random.Generator) -> None:
        if self.statistic != "gltr":
            return
        X = self._features(texts)
        ok = np.isfinite(X).all(1)
        self.head_ = self._gltr_head().fit(X[ok], labels[ok])

    def _gltr_head(self) -> LinearHead:
        """GLTR's head: bucket fractions are already on one scale, so no standardisation."""
        return LinearHead(C=self.C, standardise=False, max_iter=2000)

    coef_ = head_attribute("coef")
    intercept_ = head_attribute("intercept")

    def _score_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        if self.statistic == "gltr":
            return self.head_.decision(self._features(texts))
        return np.array([statistic(ts, self.statistic) for ts in self.token_stats(texts)],
                        dtype=np.float64)

    def _details(self, text: str) -> dict[str, Any]:
        ts = self.token_stats([text])[0]  # cached: no second pass
        res: dict[str, Any] = {"lm_tokens": ts.n_tokens, "lm_tokens_scored": ts.n_scored}
        if ts.truncated:
            res["truncated"] = (f"scored the first {self.max_tokens} of {ts.n_tokens} tokens "
                                "(max_tokens)")
        return res

    def sentence_scores(self, item: Any) -> list[dict[str, Any]]:
        """The statistic per sentence (character spans into the prepared text): where in a
        mixed text the machine-like part is. Sentences under 4 scored tokens are left out."""
        from detect.text.sentences import split_sentences

        text = self.prepare(item)
        ts = self.token_stats([text])[0]
        out = []
        ends = np.array([o[1] for o in ts.offsets]) if ts.offsets else np.zeros(0)
        for a, b in split_sentences(text):
            sel = np.nonzero((ends > a) & (ends <= b))[0]
            if sel.size < 4:
                continue
            sl = slice(int(sel[0]), int(sel[-1]) + 1)
            if self.statistic == "gltr":
                val = float(self.head_.decision(gltr_features(ts, sl)[None])[0])
            else:
                val = statistic(ts, self.statistic, sl)
            out.append({"start": a, "end": b, "tokens": int(sel.size), "score": val,
                        "text": text[a:b]})
        return out

    # -- persistence: a local scorer folder is copied in, so the model is self-contained ---
    def save(self, directory: str | Path) -> Path:
        import json

        d = super().save(directory)
        cfg_path = d / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        for role in ("observer", "performer"):
            ref = getattr(self, role)
            if ref and ref.startswith("model-dir:") and getattr(self, "model_dir_", None):
                ref = resolve_model_ref(ref, self.model_dir_)  # re-saving a loaded model
            if _is_local(ref):
                dest = d / role
                if Path(ref).resolve() != dest.resolve():
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(ref, dest)
                cfg["params"][role] = f"model-dir:{role}"
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d

    def _get_text_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.statistic == "gltr":
            return self.head_.tensors("gltr."), {}
        return {}, {}

    def _set_text_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if self.statistic == "gltr":
            where = getattr(self, "model_dir_", None) or self.name
            self.head_ = self._gltr_head().load_tensors(tensors, "gltr.", where=where)


HUMAN_CALIBRATION = "text-human-calibration.jsonl"  # shipped beside the default models


def human_calibration_texts(path: str | Path | None = None) -> list[str]:
    """Human texts kept for re-calibrating zero-shot detectors on another scorer (one JSON
    object per line with a "text" field): the calib split's human side of the text corpus."""
    import json

    from detect.text.lm import models_dir

    p = Path(path) if path else models_dir() / HUMAN_CALIBRATION
    if not p.is_file():
        raise ConfigError(f"{p}: no human calibration texts; give a file with one "
                          '{"text": ...} per line, or a text corpus to calibrate on')
    out = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(str(json.loads(line)["text"]))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ConfigError(f"{p}:{n}: expected a JSON object with a 'text' field "
                                      f"({e})") from None
    return out


def with_scorer(dets: list[Any], observer: str, performer: str | None = None, *,
                calibration: str | Path | None = None,
                log: Any = None) -> list[Any]:
    """Zero-shot detectors re-pointed at another LM (``--scorer``), re-calibrated on human
    texts: a threshold from one model means nothing for another. Other detectors pass through;
    one that needs a performer when none is given is dropped, and ``log`` is told."""
    from detect.core.registry import detectors as registry

    out, texts = [], None
    for det in dets:
        if not isinstance(det, ZeroShotDetector):
            out.append(det)
            continue
        if det.performer and not performer:
            if log:
                log(f"{det.name}: needs a second LM; left out (give --performer with --scorer)")
            continue
        params = {**det.get_params(), "observer": observer,
                  "performer": performer if det.performer else None}
        new = registry.create(det.name, **params)
        if det.statistic == "gltr":  # rank-bucket fractions are scale-free: keep the weights
            new.head_ = det.head_
        if texts is None:
            texts = [new.prepare(t) for t in human_calibration_texts(calibration)]
        new.calibrate_texts(texts, np.zeros(len(texts), dtype=np.int64))
        new.trained_on_ = {**(det.trained_on_ or {}), "rescored_with": observer,
                           "calibrated_on": "human texts only (FPR is all a human set can set)"}
        out.append(new)
    return out
