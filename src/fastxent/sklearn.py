"""scikit-learn estimators and metrics built on fastxent's fused loss + gradient.

Importing this module imports scikit-learn and SciPy (``pip install "fastxent[sklearn]"``);
``import fastxent`` alone never does.

Design
------
:class:`CrossEntropyClassifier` solves the problem that
``LogisticRegression(solver="lbfgs")`` solves, with the same L-BFGS-B options, so that the two
agree to the optimiser's tolerance. One objective evaluation takes three steps: the logits
``Z = X Wᵀ + b``; the per-sample losses and, in place, the weighted gradient
``G = (s / S) ⊙ (p − q)`` from one fused pass; then ``∇W = Gᵀ X + W / (C S)`` and
``∇b = Σᵢ Gᵢ``.

With three or more classes the steps run block by block inside one kernel
(``_cpu/_linear.pyx``), so that ``Z`` stays in cache and one thread pool does all the work.
With two classes they are three calls: a GEMV, ``binary_cross_entropy_with_logits`` with
``grad_out=Z``, a GEMV. A float32 ``X`` keeps ``Z`` and both products in float32; the sums
that L-BFGS sees (the objective and ``∇b``) are accumulated in float64.
"""
from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np
import sklearn

# log_loss reproduces 1.9's checks and float-for-float result through 1.9's helpers, and
# class_weight="balanced" passes sample weights to compute_class_weight (1.7 and later): an
# older scikit-learn would fail inside a call, or give log_loss results that differ from its own.
SKLEARN_MINIMUM = (1, 9)
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < SKLEARN_MINIMUM:
    raise ImportError("fastxent.sklearn needs scikit-learn >= %d.%d (Python >= 3.11); "
                      "scikit-learn %s is installed" % (*SKLEARN_MINIMUM, sklearn.__version__))

from scipy import optimize
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer, LabelEncoder
from sklearn.utils import compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (_check_sample_weight, check_array,
                                      check_consistent_length, check_is_fitted,
                                      validate_data)
from scipy.linalg import cython_blas
from threadpoolctl import ThreadpoolController

from . import functional as F
from ._cpu import _linear
from ._threads import threads_for

_linear.init_blas(cython_blas.__pyx_capi__["dgemm"], cython_blas.__pyx_capi__["sgemm"])

__all__ = ["CrossEntropyClassifier", "log_loss"]


class _LinearObjective:
    """The penalised, weighted cross entropy of a linear model and its gradient.

    ``f(w) = Σᵢ (sᵢ / S) ℓᵢ(x_i W ᵀ + b) + ‖W‖² / (2 C S)`` where ``ℓ`` is softmax cross
    entropy against ``q = (1 − ε) onehot(y) + ε / K`` (``K ≥ 3``) or sigmoid binary cross
    entropy against ``q = (1 − ε) y + ε / 2`` (``K = 2``, one coefficient row). The intercept
    is not penalised. ``w`` is the flat float64 vector L-BFGS works on: the rows of
    ``[W | b]``. `X` must be C-contiguous; call it under a one-thread BLAS limit (see
    ``_cpu/_linear.pyx``).
    """

    #: Rows of X and of the logits that one block keeps in cache, in elements.
    BLOCK_ELEMENTS = 1 << 15
    #: Upper bounds on the per-chunk partial gradients: count, and bytes in all.
    MAX_CHUNKS, MAX_PARTIAL_BYTES = 64, 64 << 20

    def __init__(self, X, y_enc, n_classes, scale, l2, label_smoothing, fit_intercept):
        self.X = X
        self.fit_intercept = fit_intercept
        self.l2 = l2
        self.scale = np.ascontiguousarray(scale, dtype=np.float64)   # s / S, sums to one
        self.binary = n_classes == 2
        self.n_rows = 1 if self.binary else n_classes
        self.label_smoothing = label_smoothing
        n, p = X.shape
        if self.binary:
            eps = label_smoothing
            self.target = ((1.0 - eps) * y_enc + 0.5 * eps).astype(X.dtype)
            self.z = np.empty(n, X.dtype)
            return
        K = n_classes
        self.target = np.ascontiguousarray(y_enc, dtype=np.int64)
        self.block_rows = int(np.clip(self.BLOCK_ELEMENTS // max(K, p), 16, 1024))
        # The partition into chunks depends on the shape only, so that the sums of the
        # partial gradients, and the fit, do not depend on the thread count.
        chunks = min(self.MAX_CHUNKS, -(-n // self.block_rows),
                     self.MAX_PARTIAL_BYTES // (K * p * X.itemsize))
        self.chunks = max(chunks, 1)
        self.zbuf = np.empty((self.chunks, self.block_rows * K), X.dtype)
        self.loss = np.empty(n)

    @property
    def size(self) -> int:
        return self.n_rows * (self.X.shape[1] + int(self.fit_intercept))

    def split(self, w):
        """``(W, b)`` views of the flat vector: ``W`` is ``(rows, p)``, ``b`` ``(rows,)``."""
        w2 = w.reshape(self.n_rows, -1)
        p = self.X.shape[1]
        b = w2[:, p] if self.fit_intercept else np.zeros(self.n_rows)
        return w2[:, :p], b

    def _softmax_terms(self, W, b):
        """Losses per row, ∂/∂W and ∂/∂b of Σ (s/S) ℓ, from the fused block kernel."""
        X = self.X
        K, p = W.shape
        gW = np.zeros((self.chunks, K, p), X.dtype)
        gb = np.zeros((self.chunks, K))
        _linear.index_linear(X, np.ascontiguousarray(W, dtype=X.dtype), b.astype(X.dtype),
                             self.target, self.label_smoothing, self.scale, self.loss, gW, gb,
                             self.zbuf, self.block_rows, threads_for(X.shape[0] * K))
        return self.loss, gW.sum(axis=0, dtype=np.float64), gb.sum(axis=0)

    def _sigmoid_terms(self, W, b):
        """The same for one logit per row: X w + b, fused BCE with logits in place, Xᵀ G."""
        X, z = self.X, self.z
        np.matmul(X, W[0].astype(X.dtype), out=z)
        z += X.dtype.type(b[0])
        loss = F.binary_cross_entropy_with_logits(
            z, self.target, reduction="none", return_grad=True,
            grad_output=self.scale, grad_out=z)[0]
        return loss, (z @ X)[None, :].astype(np.float64), z.sum(dtype=np.float64)[None]

    def __call__(self, w):
        W, b = self.split(w)
        terms = self._sigmoid_terms if self.binary else self._softmax_terms
        loss, grad_W, grad_b = terms(W, b)
        value = float(np.dot(loss, self.scale)) + 0.5 * self.l2 * float(np.vdot(W, W))
        grad = np.empty_like(w).reshape(self.n_rows, -1)
        grad[:, :W.shape[1]] = grad_W + self.l2 * W
        if self.fit_intercept:
            grad[:, -1] = grad_b
        return value, grad.ravel()


@functools.lru_cache(maxsize=1)
def _thread_pools():
    """The process's thread pools, inspected once: a new inspection costs ~3 ms per fit."""
    return ThreadpoolController()


class _Reporter:
    """L-BFGS callback for ``verbose``: prints the objective after each iteration."""

    def __init__(self):
        self.iteration = 0

    def __call__(self, intermediate_result):
        self.iteration += 1
        print(f"L-BFGS iteration {self.iteration}: objective {intermediate_result.fun:.10g}")


class CrossEntropyClassifier(ClassifierMixin, BaseEstimator):
    """Linear classifier fitted by L-BFGS on fastxent's fused cross entropy and gradient.

    With ``label_smoothing=0`` this is the model of
    ``sklearn.linear_model.LogisticRegression(solver="lbfgs")``: it minimises

    .. math::

        \\frac{1}{S} \\sum_i s_i \\, \\ell_i(W x_i + b) + \\frac{\\lVert W \\rVert^2}{2 C S},
        \\qquad S = \\sum_i s_i,

    where :math:`s_i` is the sample weight times the class weight of :math:`y_i`. With three
    or more classes :math:`\\ell_i` is the softmax cross entropy against the smoothed target
    :math:`q = (1 - \\varepsilon)\\,\\mathrm{onehot}(y_i) + \\varepsilon / K`; with two classes it
    is the sigmoid (binary) cross entropy of one coefficient row against
    :math:`q = (1 - \\varepsilon)\\,y_i + \\varepsilon / 2`, which is the two-class softmax
    smoothing of PyTorch. Each objective evaluation computes :math:`XW^T + b`, then the loss
    and its gradient :math:`(s_i/S)(p_i - q_i)` in one fastxent pass, in place, then
    :math:`G^T X`.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the L2 penalty strength, scaled as in ``LogisticRegression``; ``np.inf``
        fits without a penalty.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept.
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into the sample weights (as ``LogisticRegression``
        does). "balanced" uses ``n_samples / (n_classes * bincount(y))``.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the one-hot target with the uniform distribution over classes.
    max_iter : int, default=100
        Maximum number of L-BFGS iterations.
    tol : float, default=1e-4
        L-BFGS stops when the largest gradient component falls below `tol`.
    n_threads : int or None, default=None
        OpenMP threads for `fit`; None uses :func:`fastxent.get_num_threads`. Each thread runs
        whole blocks of rows, matrix products included, with BLAS held to one thread during
        `fit`; the fitted model does not depend on the thread count.
    warm_start : bool, default=False
        Start from the previous solution when refitting on data of the same shape.
    verbose : int, default=0
        Print the objective and gradient norm after each iteration when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Coefficients; one row for binary problems (the positive class is ``classes_[1]``).
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts (zero when ``fit_intercept=False``).
    n_iter_ : ndarray of shape (1,)
        Number of L-BFGS iterations run.
    n_features_in_ : int
        Number of features seen during `fit`.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Feature names, when `X` had string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastxent.sklearn import CrossEntropyClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CrossEntropyClassifier(max_iter=1000).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> round(clf.score(X, y), 2)
    0.97
    """

    _parameter_constraints = {
        "C": [Interval(numbers.Real, 0, None, closed="right")],
        "fit_intercept": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="both")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(self, *, C=1.0, fit_intercept=True, class_weight=None, label_smoothing=0.0,
                 max_iter=100, tol=1e-4, n_threads=None, warm_start=False, verbose=0):
        self.C = C
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 is fitted in float32, anything else in float64.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights per sample; integer weights act like repeated rows.

        Returns
        -------
        self : CrossEntropyClassifier
            The fitted estimator.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        if len(classes) < 2:
            raise ValueError("This solver needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {classes[0]!r}")
        y_enc = encoder.transform(y)
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)
        if self.class_weight is not None:
            # "balanced" gives a class whose samples all weigh zero an infinite weight;
            # those samples still contribute nothing (0 * inf is taken as 0).
            with np.errstate(divide="ignore"):
                per_class = compute_class_weight(self.class_weight, classes=classes, y=y,
                                                 sample_weight=weights)
            positive = weights > 0
            weights[positive] *= per_class[y_enc[positive]]
        total = float(weights.sum())
        if not total > 0:
            raise ValueError("sample_weight must have a positive sum after class weights are "
                             f"applied; got {total}")

        objective = _LinearObjective(X, y_enc, len(classes), weights / total,
                                     1.0 / (self.C * total), float(self.label_smoothing),
                                     self.fit_intercept)
        w0 = self._initial_coef(objective, X.shape[1], len(classes))
        callback = _Reporter() if self.verbose else None
        pools = _thread_pools()
        with pools.limit(limits=self.n_threads, user_api="openmp"), \
                pools.limit(limits=1, user_api="blas"):
            result = optimize.minimize(
                objective, w0, method="L-BFGS-B", jac=True, callback=callback,
                options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol,
                         # As LogisticRegression. It also suits float32 X: the objective
                         # is summed in float64, so it keeps decreasing smoothly.
                         "ftol": 64 * np.finfo(np.float64).eps})
        n_iter = min(result.nit, self.max_iter)
        if result.status != 0:
            warnings.warn(f"L-BFGS failed to converge after {n_iter} iteration(s) "
                          f"(status={result.status}): {result.message}. Increase max_iter "
                          "or scale the data.", ConvergenceWarning, stacklevel=2)

        W, b = objective.split(result.x)
        self.classes_ = classes
        self.coef_ = np.ascontiguousarray(W, dtype=X.dtype)
        self.intercept_ = np.asarray(b, dtype=X.dtype).copy()
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        return self

    def _initial_coef(self, objective, n_features, n_classes):
        """Zeros, or the previous solution under ``warm_start``."""
        w0 = np.zeros(objective.size)
        rows = objective.n_rows
        if (self.warm_start and hasattr(self, "coef_")
                and self.coef_.shape == (rows, n_features) and len(self.classes_) == n_classes):
            w2 = w0.reshape(rows, -1)
            w2[:, :n_features] = self.coef_
            if self.fit_intercept:
                w2[:, -1] = self.intercept_
        return w0

    def decision_function(self, X):
        """Return the logits ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
            For two classes, the logit of ``classes_[1]``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        scores = X @ self.coef_.T.astype(X.dtype, copy=False) + self.intercept_.astype(X.dtype)
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict(self, X):
        """Return the most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted labels, taken from ``classes_``.
        """
        scores = self.decision_function(X)
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def predict_log_proba(self, X):
        """Return log-probabilities: ``log_softmax`` of the logits (log-sigmoid for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.stack([log_expit(-scores), log_expit(scores)], axis=1)
        return F.log_softmax(scores, axis=1)

    def predict_proba(self, X):
        """Return class probabilities: ``softmax`` of the logits (sigmoid for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; each row sums to one.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.stack([expit(-scores), expit(scores)], axis=1)
        return F.softmax(scores, axis=1)


@validate_params(
    {
        "y_true": ["array-like"],
        "y_proba": ["array-like"],
        "normalize": ["boolean"],
        "sample_weight": ["array-like", None],
        "labels": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def log_loss(y_true, y_proba, *, normalize=True, sample_weight=None, labels=None):
    """Log loss of predicted probabilities, as ``sklearn.metrics.log_loss`` computes it.

    .. math::

        L = -\\frac{1}{\\sum_i w_i} \\sum_i w_i \\log \\operatorname{clip}(p_{i, y_i},
        \\epsilon, 1 - \\epsilon)

    with :math:`\\epsilon` the machine epsilon of `y_proba`'s dtype (the sum alone when
    ``normalize=False``). The arguments, checks, warnings and result are those of
    scikit-learn 1.9's ``log_loss``; the result is the same float. It is faster because
    only the probability of each sample's true class is clipped and logged, where
    scikit-learn builds a one-hot matrix and logs every entry.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or label indicator matrix
        True labels.
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the sorted order of the labels; a 1-D array is
        the probability of the positive (larger) label of a binary problem.
    normalize : bool, default=True
        Return the (weighted) mean over samples; otherwise the (weighted) sum.
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.
    labels : array-like, default=None
        All class labels, when `y_true` may not contain every one.

    Returns
    -------
    float
        The log loss.

    Raises
    ------
    ValueError
        If `y_proba` has values outside [0, 1] or a number of columns that does not match
        the labels, if there are fewer than two labels, or if `y_true` holds a label not
        in `labels`.

    Examples
    --------
    >>> from fastxent.sklearn import log_loss
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 5)
    0.21616
    """
    y_proba = check_array(y_proba, ensure_2d=False,
                          dtype=[np.float64, np.float32, np.float16])
    top, bottom = y_proba.max(), y_proba.min()
    if top > 1:
        raise ValueError(f"y_proba contains values greater than 1: {top}")
    if bottom < 0:
        raise ValueError(f"y_proba contains values lower than 0: {bottom}")
    check_consistent_length(y_proba, y_true, sample_weight)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, y_proba, force_float_dtype=False)

    y_true_array = np.asarray(y_true)
    binarizer = _label_binarizer(y_true_array, labels)
    n_classes = len(binarizer.classes_)
    positive_only = y_proba.ndim == 1 or y_proba.shape[1] == 1
    if positive_only:
        y_proba = y_proba.reshape(-1)
        row_sums = (1 - y_proba) + y_proba
    else:
        row_sums = y_proba.sum(axis=1)
    eps = np.finfo(y_proba.dtype).eps
    if not np.all(np.isclose(row_sums, np.asarray(1, row_sums.dtype), rtol=np.sqrt(eps))):
        warnings.warn("The y_proba values do not sum to one. Make sure to pass probabilities.",
                      UserWarning, stacklevel=2)
    n_columns = 2 if positive_only else y_proba.shape[1]
    if n_classes != n_columns:
        if labels is None:
            raise ValueError(f"y_true and y_proba contain different numbers of classes: "
                             f"{n_classes} vs {n_columns}. Pass the labels explicitly through "
                             f"the labels argument. Classes found in y_true: "
                             f"{binarizer.classes_}")
        raise ValueError("The number of classes in labels differs from the number of columns "
                         f"of y_proba ({n_columns}). Classes found in labels: "
                         f"{binarizer.classes_}")

    if y_true_array.ndim == 2 and y_true_array.shape[1] > 1:     # a label indicator matrix
        indicator = binarizer.transform(y_true_array).astype(y_proba.dtype)
        if positive_only:
            y_proba = np.stack([1 - y_proba, y_proba], axis=1)
        clipped = np.clip(y_proba, eps, 1 - eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(indicator == 0, 0, indicator * np.log(clipped))
        losses = -terms.sum(axis=1)
    else:
        # Rows of a one-hot target have a single non-zero term, so the row sum of
        # y * log(clip(p)) is exactly log(clip(p[true class])).
        index = np.searchsorted(binarizer.classes_, np.ravel(y_true_array))
        if positive_only:
            picked = np.where(index == 1, y_proba, 1 - y_proba)
        else:
            picked = np.take_along_axis(y_proba, index[:, None], axis=1)[:, 0]
        losses = -np.log(np.clip(picked, eps, 1 - eps))

    if normalize:
        return float(np.average(losses, weights=sample_weight))
    if sample_weight is not None:
        return float(np.dot(losses, sample_weight))
    return float(np.sum(losses))


def _label_binarizer(y_true, labels):
    """A fitted LabelBinarizer for the array `y_true` (or `labels`), with scikit-learn's checks."""
    binarizer = LabelBinarizer()
    if labels is None:
        binarizer.fit(y_true)
    else:
        binarizer.fit(labels)
        labels_array = np.asarray(labels)
        if not np.array_equal(binarizer.classes_, labels_array):
            warnings.warn(f"Labels passed were {labels}. But this function assumes labels are "
                          "ordered lexicographically. Pass the ordered "
                          f"labels={binarizer.classes_.tolist()} and ensure that the columns "
                          "of y_proba correspond to this ordering.", UserWarning, stacklevel=3)
        present = np.isin(y_true, labels_array)
        if not np.all(present):
            undeclared = set(y_true[~present].ravel().tolist())
            raise ValueError(f"y_true contains values {undeclared} not belonging to the "
                             f"passed labels {labels}.")
    if len(binarizer.classes_) == 1:
        if labels is None:
            raise ValueError(f"y_true contains only one label ({binarizer.classes_[0]}). "
                             "Provide the list of all expected class labels explicitly "
                             "through the labels argument.")
        raise ValueError("The labels array needs to contain at least two labels, got "
                         f"{binarizer.classes_}.")
    return binarizer
