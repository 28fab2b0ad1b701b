"""The one linear head (standardise + logistic regression) that spectrum, recon, GLTR and
TF-IDF end in: it fits, scores, saves under a prefix, and its saved names stay the models'."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.metrics import auroc
from detect.core.errors import ModelError
from detect.core.linear import LinearHead, head_attribute


def _toy(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs 6 sigma apart along feature 0, on features of very different scales
    (so standardising matters), plus two pure-noise features."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 3)) * np.array([1.0, 50.0, 1e-3])
    X[:, 0] += 6.0 * y
    return X + np.array([10.0, -300.0, 5.0]), y


def test_fits_a_separable_problem():
    X, y = _toy()
    head = LinearHead(C=1.0).fit(X, y)
    Xt, yt = _toy(seed=1)  # held out
    s = head.decision(Xt)
    assert s.shape == (len(yt),) and s.dtype == np.float64
    assert auroc(yt, s) > 0.99
    assert ((s > 0) == (yt == 1)).mean() > 0.97
    assert head.fitted and head.n_features == 3
    # the informative feature carries the weight: it is what separates the blobs
    assert np.argmax(np.abs(head.coef)) == 0
    # standardised: mean and scale are the training columns'
    np.testing.assert_allclose(head.mean, X.mean(axis=0))
    np.testing.assert_allclose(head.scale, X.std(axis=0) + 1e-8)


def test_fit_is_sklearns_logistic_regression_on_standardised_features():
    """The head is a refactor of the code each detector had: same model, same numbers."""
    from sklearn.linear_model import LogisticRegression

    X, y = _toy()
    head = LinearHead(C=0.5, max_iter=2000).fit(X, y)
    Z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    ref = LogisticRegression(C=0.5, max_iter=2000).fit(Z, y)
    np.testing.assert_array_equal(head.coef, ref.coef_.ravel())
    assert head.intercept == float(ref.intercept_[0])
    # rtol: sklearn multiplies by a (d, 1) matrix, the head by a vector; BLAS may sum the
    # same products in another order, which moves the last bits and nothing more
    np.testing.assert_allclose(head.decision(X), ref.decision_function(Z), rtol=1e-12)


def test_tensors_round_trip_under_a_prefix():
    X, y = _toy()
    head = LinearHead().fit(X, y)
    t = head.tensors("gltr.")
    assert set(t) == {"gltr.coef", "gltr.intercept", "gltr.mean", "gltr.scale"}
    assert t["gltr.intercept"].shape == (1,)
    back = LinearHead().load_tensors(t, "gltr.")
    np.testing.assert_array_equal(back.decision(X), head.decision(X))
    # no prefix: the names spectrum and recon always saved
    assert set(head.tensors()) == {"coef", "intercept", "mean", "scale"}


def test_a_missing_tensor_names_the_model():
    X, y = _toy()
    t = LinearHead().fit(X, y).tensors("logreg.")
    del t["logreg.scale"]
    with pytest.raises(ModelError, match=r"models/spectrum-x: weights lack logreg\.scale"):
        LinearHead().load_tensors(t, "logreg.", where="models/spectrum-x")
    bad = LinearHead().fit(X, y).tensors()
    bad["mean"] = bad["mean"][:2]
    with pytest.raises(ModelError, match="shapes differ"):
        LinearHead().load_tensors(bad, where="m")


def test_unfitted_head_refuses_to_score_or_save():
    head = LinearHead()
    assert not head.fitted
    for call in (lambda: head.decision(np.zeros((1, 2))), head.tensors,
                 lambda: head.n_features):
        with pytest.raises(ModelError, match="not fitted"):
            call()


def test_standardise_off_takes_a_sparse_matrix():
    """TF-IDF's rows are sparse: no standardisation (it would densify them), balanced classes."""
    rng = np.random.default_rng(0)
    n, d = 300, 200
    y = (rng.random(n) < 0.3).astype(int)  # unbalanced on purpose
    dense = (rng.random((n, d)) < 0.05) * rng.random((n, d))
    dense[y == 1, 0] += 1.0  # one "term" only machine texts use
    X = sp.csr_matrix(dense)
    head = LinearHead(standardise=False, class_weight="balanced", seed=0).fit(X, y)
    assert head.mean is None and head.scale is None
    s = head.decision(X)
    assert isinstance(s, np.ndarray) and s.shape == (n,)
    np.testing.assert_allclose(s, dense @ head.coef + head.intercept, rtol=1e-12)
    assert auroc(y, s) > 0.99
    t = head.tensors("logreg.")
    assert set(t) == {"logreg.coef", "logreg.intercept"}
    back = LinearHead(standardise=False).load_tensors(t, "logreg.")
    np.testing.assert_array_equal(back.decision(X), s)


def test_head_attribute_is_a_read_only_view():
    class Det:
        coef_ = head_attribute("coef")

    det = Det()
    assert not hasattr(det, "coef_")  # no head yet: as before, the attribute is absent
    X, y = _toy()
    det.head_ = LinearHead().fit(X, y)
    assert det.coef_ is det.head_.coef
    with pytest.raises(AttributeError):
        det.coef_ = np.zeros(3)


@pytest.mark.parametrize(("model", "names"), [
    ("spectrum-logreg", {"mean", "scale", "coef", "intercept"}),
    ("recon-vae", {"mean", "scale", "coef", "intercept"}),
    ("text-tfidf-logreg", {"logreg.coef", "logreg.intercept"}),
])
def test_shipped_models_keep_their_tensor_names(model, names):
    """A shipped model loads into the head and saves back the same names and numbers."""
    from safetensors.numpy import load_file

    from detect.core.detector import load_detector
    from detect.core.models import MODELS_DIR

    det = load_detector(MODELS_DIR / model)
    saved = load_file(str(MODELS_DIR / model / "weights.safetensors"))
    mine = det.head_.tensors("logreg." if model.startswith("text-") else "")
    assert set(mine) == names
    for k in names:
        np.testing.assert_array_equal(mine[k], saved[k])
        assert mine[k].dtype == saved[k].dtype
    np.testing.assert_array_equal(det.coef_, saved[next(k for k in names if "coef" in k)])
