"""Supervised machine-text detectors, trained here on a labelled corpus.

- ``TfidfDetector``: word and character n-gram TF-IDF + a logistic regression. The phrases a
  generator favours and its tokenizer's spacing habits show up in n-gram counts, so a linear
  model over them is a strong in-domain baseline; it is also the first thing to break on an
  unseen generator or a paraphrase, which is why it complements the zero-shot LM statistics.
- ``TransformerClassifier``: a small transformer with a one-logit head, trained from scratch or
  started from a causal LM (which already knows what fluent text looks like). It is trained on
  random windows of each text and scores long texts by averaging over windows, so neither the
  opening tokens nor a text's length decide the score on their own.

Both save without pickle: the TF-IDF vocabulary and settings go to ``config.json``, idf and
coefficients to safetensors; the transformer's config dict goes to ``config.json``, its
weights to safetensors and its tokenizer to a ``tokenizer/`` folder beside them.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detect.core.device import load_module, module_tensors, torch_device
from detect.core.errors import ConfigError, ModelError
from detect.core.linear import LinearHead, head_attribute
from detect.text.base import TextDetector
from detect.text.lm import resolve_model_ref

# the word-level tokens of ``count_tokens``: words and single punctuation marks, because a
# generator's punctuation habits are evidence too
WORD_TOKEN_PATTERN = r"(?u)\w+|[^\w\s]"
# only these settings matter to ``transform``; they are saved with the vocabulary
_TRANSFORM_KEYS = ("analyzer", "ngram_range", "lowercase", "token_pattern", "sublinear_tf",
                   "norm", "use_idf", "smooth_idf")


class TfidfDetector(TextDetector):
    """TF-IDF over word 1-2-grams and character 3-5-grams, then a class-balanced logistic
    regression; the score is its decision function (log-odds of machine text)."""

    def __init__(self, *, word_ngrams: tuple[int, int] = (1, 2),
                 char_ngrams: tuple[int, int] = (3, 5), char_analyzer: str = "char_wb",
                 max_word_features: int = 20_000, max_char_features: int = 30_000,
                 min_df: int = 2, lowercase: bool = True, C: float = 1.0,
                 max_iter: int = 2000, min_tokens: int = 16, normalize: bool = True,
                 target_fpr: float = 0.01, seed: int = 0):
        self.word_ngrams, self.char_ngrams = word_ngrams, char_ngrams
        self.char_analyzer = char_analyzer
        self.max_word_features, self.max_char_features = max_word_features, max_char_features
        self.min_df, self.lowercase, self.C, self.max_iter = min_df, lowercase, C, max_iter
        self.min_tokens, self.normalize = min_tokens, normalize
        self.target_fpr, self.seed = target_fpr, seed

    def _settings(self) -> dict[str, dict[str, Any]]:
        """Vectoriser arguments per part ("word", "char"); empty parts are left out."""
        if self.char_analyzer not in ("char", "char_wb"):
            raise ConfigError(f"{self.name}: char_analyzer must be 'char' or 'char_wb', got "
                              f"{self.char_analyzer!r}")
        common = {"lowercase": self.lowercase, "sublinear_tf": True, "norm": "l2",
                  "use_idf": True, "smooth_idf": True, "min_df": self.min_df}
        parts = {
            "word": {"analyzer": "word", "ngram_range": tuple(self.word_ngrams),
                     "token_pattern": WORD_TOKEN_PATTERN,
                     "max_features": self.max_word_features, **common},
            "char": {"analyzer": self.char_analyzer, "ngram_range": tuple(self.char_ngrams),
                     "token_pattern": None, "max_features": self.max_char_features, **common},
        }
        out = {k: v for k, v in parts.items() if v["max_features"]}
        if not out:
            raise ConfigError(f"{self.name}: max_word_features and max_char_features are both 0")
        return out

    def _fit_texts(self, texts: list[str], labels: np.ndarray, rng: np.random.Generator) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizers_ = {}
        for part, settings in self._settings().items():
            vec = TfidfVectorizer(**settings)
            try:
                vec.fit(texts)
            except ValueError as e:  # e.g. "After pruning, no terms remain"
                raise ConfigError(f"{self.name}: cannot build the {part} vocabulary from "
                                  f"{len(texts)} training texts (min_df={self.min_df}): {e}") \
                    from None
            self.vectorizers_[part] = vec
        self.head_ = self._head().fit(self._transform(texts), labels)

    def _head(self) -> LinearHead:
        """Sparse TF-IDF rows, not standardised (that would densify them); balanced classes."""
        return LinearHead(C=self.C, standardise=False, max_iter=self.max_iter,
                          class_weight="balanced", seed=self.seed)

    coef_ = head_attribute("coef")
    intercept_ = head_attribute("intercept")

    def _transform(self, texts: list[str]) -> Any:
        import scipy.sparse as sp

        mats = [vec.transform(texts) for vec in self.vectorizers_.values()]
        return sp.hstack(mats, format="csr", dtype=np.float64)

    def _score_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        return self.head_.decision(self._transform(texts))

    def top_terms(self, k: int = 20) -> dict[str, list[tuple[str, float]]]:
        """The n-grams that push hardest towards "machine" and towards "human": a quick look at
        what the model learned (and at whether it learned the topic instead of the source)."""
        terms: list[str] = []
        for part, vec in self.vectorizers_.items():
            terms += [f"{part}:{t}" for t in vec.get_feature_names_out()]
        order = np.argsort(self.coef_)
        return {"machine": [(terms[i], float(self.coef_[i])) for i in order[::-1][:k]],
                "human": [(terms[i], float(self.coef_[i])) for i in order[:k]]}

    # -- persistence: vocabulary as JSON, numbers as safetensors -------------------------------
    def _get_text_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = self.head_.tensors("logreg.")
        parts = {}
        for part, vec in self.vectorizers_.items():
            params = vec.get_params()
            settings = {k: params[k] for k in _TRANSFORM_KEYS}
            settings["ngram_range"] = list(settings["ngram_range"])
            # terms in column order: the list index is the column, half the size of a dict
            terms = [""] * len(vec.vocabulary_)
            for term, col in vec.vocabulary_.items():
                terms[col] = term
            parts[part] = {"settings": settings, "terms": terms}
            tensors[f"tfidf.{part}.idf"] = np.asarray(vec.idf_, dtype=np.float64)
        return tensors, {"vectorizers": parts}

    def _set_text_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            parts = meta["vectorizers"]
            self.vectorizers_ = {}
            for part, spec in parts.items():
                settings = dict(spec["settings"])
                settings["ngram_range"] = tuple(settings["ngram_range"])
                vocab = {t: i for i, t in enumerate(spec["terms"])}
                if len(vocab) != len(spec["terms"]):
                    raise ValueError(f"the {part} vocabulary has repeated terms")
                vec = TfidfVectorizer(**settings, vocabulary=vocab, dtype=np.float64)
                vec.idf_ = tensors[f"tfidf.{part}.idf"].astype(np.float64)  # sets vocabulary_
                self.vectorizers_[part] = vec
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{self.name}: saved TF-IDF state is incomplete or inconsistent "
                             f"({type(e).__name__}: {e})") from None
        where = getattr(self, "model_dir_", None) or self.name
        self.head_ = self._head().load_tensors(tensors, "logreg.", where=where)
        n = sum(len(v.vocabulary_) for v in self.vectorizers_.values())
        if n != self.head_.n_features:
            raise ModelError(f"{self.name}: {self.head_.n_features} coefficients for {n} terms")


def window_starts(n: int, length: int, max_windows: int) -> list[int]:
    """Starts of windows covering ``n`` tokens: back to back, the last one flush with the end,
    thinned evenly to ``max_windows`` so a huge text costs a bounded number of passes."""
    if n <= length:
        return [0]
    k = max(1, min(max_windows, math.ceil(n / length)))
    return sorted({int(s) for s in np.linspace(0, n - length, k).round()})


class TransformerClassifier(TextDetector):
    """A transformer sequence classifier with one logit (higher = machine-written).

    One logit rather than two: it is the log-odds directly, window logits average into a
    text's score, and the loss is binary cross-entropy computed here (transformers would treat
    ``num_labels=1`` as regression and use a squared error).
    """

    def __init__(self, *, init: str | None = None, tokenizer: str | None = None,
                 max_length: int = 256, max_windows: int = 8, epochs: int = 4,
                 batch_size: int = 16, lr: float = 3e-4, weight_decay: float = 0.01,
                 n_layer: int = 2, n_embd: int = 128, n_head: int = 2, min_tokens: int = 16,
                 normalize: bool = True, target_fpr: float = 0.01, seed: int = 0,
                 device: str = "cpu"):
        torch_device(device, type(self).__name__)  # a bad device fails here, named
        self.init, self.tokenizer, self.device = init, tokenizer, device
        self.max_length, self.max_windows = max_length, max_windows
        self.epochs, self.batch_size = epochs, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.n_layer, self.n_embd, self.n_head = n_layer, n_embd, n_head
        self.min_tokens, self.normalize = min_tokens, normalize
        self.target_fpr, self.seed = target_fpr, seed

    # -- building --------------------------------------------------------------------------
    def _device(self) -> Any:
        return torch_device(self.device, self.name)

    def _resolve(self, ref: str) -> str:
        return resolve_model_ref(ref, getattr(self, "model_dir_", None))

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        ref = self.tokenizer or self.init
        if not ref:
            raise ConfigError(f"{self.name}: a model trained from scratch needs tokenizer=PATH "
                              "(or init=PATH, a causal LM whose tokenizer it then uses)")
        path = self._resolve(ref)
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ModelError(f"{self.name}: cannot load a tokenizer from {path!r} ({e})") \
                from None
        if self._pad_id(tok) is None:
            raise ModelError(f"{self.name}: tokenizer {path!r} has neither a pad nor an eos "
                             "token to pad with")
        return tok

    @staticmethod
    def _pad_id(tok: Any) -> int | None:
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def _build(self, tok: Any) -> Any:
        """A fresh classifier: the init LM with a new one-logit head, or a small GPT-2."""
        from transformers import AutoModelForSequenceClassification, GPT2Config

        pad = self._pad_id(tok)
        if self.init:
            path = self._resolve(self.init)
            from transformers.utils import logging as hf_logging

            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # "head newly initialised" is the point here
            try:
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
            except (OSError, ValueError) as e:
                raise ModelError(f"{self.name}: cannot start from {path!r} ({e})") from None
            finally:
                hf_logging.set_verbosity(verbosity)
            cfg = model.config
            n_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings",
                                                                 None)
            if n_pos and self.max_length > n_pos:
                raise ConfigError(f"{self.name}: max_length={self.max_length} exceeds the "
                                  f"{n_pos} positions of {path!r}")
            if len(tok) > cfg.vocab_size:
                raise ConfigError(f"{self.name}: the tokenizer has {len(tok)} tokens, more than "
                                  f"the {cfg.vocab_size} embeddings of {path!r}")
            if cfg.pad_token_id is None:
                cfg.pad_token_id = pad
            return model.float()
        if self.n_embd % self.n_head:
            raise ConfigError(f"{self.name}: n_embd={self.n_embd} is not a multiple of "
                              f"n_head={self.n_head}")
        from transformers import GPT2ForSequenceClassification

        eos = tok.eos_token_id if tok.eos_token_id is not None else pad
        cfg = GPT2Config(vocab_size=len(tok), n_positions=self.max_length, n_embd=self.n_embd,
                         n_layer=self.n_layer, n_head=self.n_head, num_labels=1,
                         pad_token_id=pad, bos_token_id=eos, eos_token_id=eos)
        return GPT2ForSequenceClassification(cfg)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        ids = self.tokenizer_(texts, add_special_tokens=False, verbose=False)["input_ids"]
        pad = self._pad_id(self.tokenizer_)
        return [list(x) if len(x) else [pad] for x in ids]  # an empty text still gets a score

    def _batch(self, windows: list[list[int]]) -> tuple[Any, Any]:
        """Right-padded ids and attention mask (the head reads the last non-pad token), on
        ``device``."""
        import torch

        pad = self._pad_id(self.tokenizer_)
        width = max(len(w) for w in windows)
        ids = torch.full((len(windows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), width), dtype=torch.long)
        for i, w in enumerate(windows):
            ids[i, :len(w)] = torch.tensor(w, dtype=torch.long)
            mask[i, :len(w)] = 1
        dev = self._device()
        return ids.to(dev), mask.to(dev)

    # -- training --------------------------------------------------------------------------
    def _fit_texts(self, texts: list[str], labels: np.ndarray, rng: np.random.Generator) -> None:
        import torch
        from tqdm.auto import tqdm

        self.tokenizer_ = self._load_tokenizer()
        torch.manual_seed(self.seed)  # head initialisation and dropout
        model = self._build(self.tokenizer_).to(self._device())
        ids = self._encode(texts)
        y_all = torch.from_numpy(np.asarray(labels, dtype=np.float32)).to(self._device())
        n, L = len(ids), self.max_length
        steps_per_epoch = math.ceil(n / self.batch_size)
        total = max(1, self.epochs * steps_per_epoch)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total,
                                                    pct_start=0.1)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        bar = tqdm(total=total, desc=f"train {self.name}", file=sys.stderr, unit="step",
                   leave=False)
        for _epoch in range(self.epochs):
            order = rng.permutation(n)
            for s in range(steps_per_epoch):
                idx = order[s * self.batch_size:(s + 1) * self.batch_size]
                windows = []
                for i in idx:  # a random window, so the model cannot rely on the opening
                    start = int(rng.integers(0, len(ids[i]) - L + 1)) if len(ids[i]) > L else 0
                    windows.append(ids[i][start:start + L])
                x, mask = self._batch(windows)
                logits = model(input_ids=x, attention_mask=mask).logits[:, 0]
                loss = loss_fn(logits, y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        model.eval()
        self.model_ = model

    # -- scoring ---------------------------------------------------------------------------
    def _score_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        windows, owner = [], []
        for t, ids in enumerate(self._encode(texts)):
            for s in window_starts(len(ids), self.max_length, self.max_windows):
                windows.append(ids[s:s + self.max_length])
                owner.append(t)
        logits = np.empty(len(windows), dtype=np.float64)
        with torch.inference_mode():
            for b in range(0, len(windows), self.batch_size):
                x, mask = self._batch(windows[b:b + self.batch_size])
                out = self.model_(input_ids=x, attention_mask=mask).logits[:, 0]
                logits[b:b + len(x)] = out.double().cpu().numpy()
        sums = np.bincount(owner, weights=logits, minlength=len(texts))
        counts = np.bincount(owner, minlength=len(texts))
        return sums / np.maximum(counts, 1)

    # -- persistence: weights as safetensors, config as JSON, tokenizer copied in ----------
    def save(self, directory: str | Path) -> Path:
        d = super().save(directory)
        tok_dir = d / "tokenizer"
        shutil.rmtree(tok_dir, ignore_errors=True)
        self.tokenizer_.save_pretrained(str(tok_dir))
        cfg_path = d / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["params"]["tokenizer"] = "model-dir:tokenizer"
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return d

    def _get_text_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = module_tensors(self.model_)
        return tensors, {"hf_config": self.model_.config.to_dict()}

    def _set_text_state(self, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.tokenizer_ = self._load_tokenizer()
        try:
            config = AutoConfig.for_model(**meta["hf_config"])
            model = AutoModelForSequenceClassification.from_config(config)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{self.name}: saved transformer config is unusable "
                             f"({type(e).__name__}: {e})") from None
        self.model_ = load_module(model, tensors, self._device(),
                                  f"{self.name}: weights do not match the saved config")
