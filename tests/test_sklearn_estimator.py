"""CrossEntropyClassifier: scikit-learn's estimator checks and parity with LogisticRegression."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from sklearn.datasets import (load_breast_cancer, load_digits, load_iris, load_wine,
                              make_classification)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastxent as fx
from fastxent.sklearn import CrossEntropyClassifier, _LinearObjective


def _expected_failures(estimator):
    if estimator.C != np.inf:
        return {}
    return {
        "check_class_weight_classifiers":
            "without a penalty, a fit on this separable toy problem ignores class weights: "
            "the weighted and unweighted optima both separate the classes",
        "check_classifiers_train":
            "with float32 X and no penalty, predict_log_proba (log-sigmoid, computed directly) "
            "keeps log p = -4e-9 where predict_proba rounds p to 1.0f; np.log of that is 0",
    }


@parametrize_with_checks([
    CrossEntropyClassifier(),
    CrossEntropyClassifier(label_smoothing=0.1, class_weight="balanced", n_threads=1),
    CrossEntropyClassifier(fit_intercept=False, C=np.inf, max_iter=1000),
], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _standardised(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _fifty_classes():
    X, y = make_classification(n_samples=4000, n_features=40, n_informative=30, n_classes=50,
                               n_clusters_per_class=1, random_state=0)
    return StandardScaler().fit_transform(X), y


DATASETS = {
    "iris": lambda: _standardised(load_iris),
    "wine": lambda: _standardised(load_wine),
    "breast_cancer": lambda: _standardised(load_breast_cancer),
    "digits": lambda: _standardised(load_digits),
    "fifty_classes": _fifty_classes,
}

SETTINGS = {
    "default": ({}, False),
    "sample_weight": ({}, True),
    "balanced": ({"class_weight": "balanced"}, True),
    "C=0.1,no_intercept": ({"C": 0.1, "fit_intercept": False}, False),
}


def _centred(b):
    # A softmax model with an unpenalised intercept is unchanged by a common shift of it.
    return b - b.mean() if b.size > 1 else b


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_coefficients_match_logistic_regression(dataset, setting):
    X, y = DATASETS[dataset]()
    options, weighted = SETTINGS[setting]
    fit_args = {}
    if weighted:
        fit_args["sample_weight"] = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    common = dict(tol=1e-10, max_iter=10_000, **options)
    ours = CrossEntropyClassifier(n_threads=1, **common).fit(X, y, **fit_args)
    theirs = LogisticRegression(**common).fit(X, y, **fit_args)

    scale = np.abs(theirs.coef_).max()
    assert ours.coef_.shape == theirs.coef_.shape
    assert np.abs(ours.coef_ - theirs.coef_).max() <= 1e-5 * scale
    assert np.abs(_centred(ours.intercept_) - _centred(theirs.intercept_)).max() <= 1e-5 * scale
    assert np.abs(ours.predict_proba(X) - theirs.predict_proba(X)).max() <= 1e-5
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)


def test_class_weight_equals_sample_weight():
    X, y = _standardised(load_wine)
    class_weight = {0: 2.0, 1: 0.5, 2: 1.5}
    a = CrossEntropyClassifier(class_weight=class_weight, tol=1e-10, max_iter=1000).fit(X, y)
    b = CrossEntropyClassifier(tol=1e-10, max_iter=1000).fit(
        X, y, sample_weight=np.array([class_weight[c] for c in y]))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-7, atol=1e-9)


def test_integer_sample_weight_equals_repeated_rows():
    X, y = _standardised(load_iris)
    counts = np.random.default_rng(0).integers(0, 3, len(y))
    a = CrossEntropyClassifier(tol=1e-10, max_iter=1000).fit(X, y, sample_weight=counts)
    b = CrossEntropyClassifier(tol=1e-10, max_iter=1000).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-8)


def _objective(n_classes, smoothing, fit_intercept, rng):
    X = rng.standard_normal((40, 5))
    y = rng.integers(0, n_classes, 40)
    scale = rng.uniform(0.5, 2.0, 40)
    scale /= scale.sum()
    return _LinearObjective(X, y, n_classes, scale, 0.3, smoothing, fit_intercept)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("n_classes", [2, 5])
def test_objective_gradient_by_finite_differences(n_classes, smoothing, fit_intercept, rng):
    objective = _objective(n_classes, smoothing, fit_intercept, rng)
    w = rng.standard_normal(objective.size)
    _, grad = objective(w)
    numeric = approx_fprime(w, lambda v: objective(v)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def _explicit_objective(objective, w, eps):
    """The objective in float64 NumPy, written from its formula."""
    W, b = objective.split(w)
    X, y, n_classes = objective.X.astype(np.float64), objective.target, len(W)
    n_classes = 2 if objective.binary else n_classes
    z = X @ W.T + b
    if n_classes == 2:
        z = z[:, 0]
        losses = np.logaddexp(0, z) - y * z          # target already smoothed
    else:
        log_p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
        q = np.full(z.shape, eps / n_classes)
        q[np.arange(len(y)), y] += 1 - eps
        losses = -(q * log_p).sum(axis=1)
    return losses @ objective.scale + 0.5 * objective.l2 * (W ** 2).sum()


@pytest.mark.parametrize("n_classes", [2, 5])
def test_objective_against_explicit_formula(n_classes, rng):
    objective = _objective(n_classes, 0.2, True, rng)
    w = rng.standard_normal(objective.size)
    assert objective(w)[0] == pytest.approx(_explicit_objective(objective, w, 0.2), rel=1e-13)


# Shapes that give one block, several chunks with a ragged last block, and more chunks than
# blocks of a full size (block rows = 2**15 // max(K, p)).
@pytest.mark.parametrize("n,p,k", [(5, 3, 3), (3000, 300, 7), (2500, 20, 1500), (777, 64, 40)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_blocks_match_the_formula_and_ignore_threads(n, p, k, dtype, rng):
    X = rng.standard_normal((n, p)).astype(dtype)
    y = rng.integers(0, k, n)
    scale = rng.uniform(0.5, 2.0, n)
    objective = _LinearObjective(X, y, k, scale / scale.sum(), 0.1, 0.1, True)
    w = 0.1 * rng.standard_normal(objective.size)
    fx.set_num_threads(1)
    value, grad = objective(w)
    fx.set_num_threads(2)
    value2, grad2 = objective(w)
    assert value == value2
    np.testing.assert_array_equal(grad, grad2)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert value == pytest.approx(_explicit_objective(objective, w, 0.1), rel=rtol)
    step = 1e-6 * np.sign(rng.standard_normal(objective.size))
    if dtype == np.float64:     # directional derivative by central differences
        slope = (objective(w + step)[0] - objective(w - step)[0]) / 2
        assert grad @ step == pytest.approx(slope, rel=1e-6)


def test_label_smoothing_pulls_probabilities_towards_uniform():
    X, y = _standardised(load_iris)
    plain = CrossEntropyClassifier(C=100, max_iter=1000).fit(X, y).predict_proba(X)
    smooth = CrossEntropyClassifier(C=100, max_iter=1000, label_smoothing=0.3).fit(X, y)
    assert smooth.predict_proba(X).max() < plain.max()
    assert smooth.predict_proba(X).min() > plain.min()


@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer], ids=["iris", "bc"])
def test_float32_is_fitted_in_float32(loader):
    X, y = _standardised(loader)
    ours32 = CrossEntropyClassifier(tol=1e-6, max_iter=1000).fit(X.astype(np.float32), y)
    ours64 = CrossEntropyClassifier(tol=1e-6, max_iter=1000).fit(X, y)
    assert ours32.coef_.dtype == np.float32
    assert ours32.predict_proba(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(ours32.coef_, ours64.coef_, rtol=1e-3, atol=1e-3)


def test_binary_problem_has_one_row_and_sigmoid_probabilities():
    X, y = _standardised(load_breast_cancer)
    labels = np.where(y == 1, "yes", "no")
    clf = CrossEntropyClassifier(max_iter=1000).fit(X, labels)
    assert clf.coef_.shape == (1, X.shape[1])
    assert clf.intercept_.shape == (1,)
    d = clf.decision_function(X)
    assert d.shape == (len(y),)
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-d)), rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.where(d > 0, "yes", "no"))


def test_predict_log_proba_is_log_of_predict_proba():
    X, y = _standardised(load_wine)
    clf = CrossEntropyClassifier().fit(X, y)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X),
                               rtol=1e-12)


def test_convergence_warning_when_iterations_run_out():
    X, y = _standardised(load_digits)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        clf = CrossEntropyClassifier(max_iter=3).fit(X, y)
    assert clf.n_iter_[0] == 3


def test_warm_start_continues_from_the_previous_solution():
    X, y = _standardised(load_digits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = CrossEntropyClassifier(warm_start=True, max_iter=20).fit(X, y)
        first = clf.coef_.copy()
        clf.fit(X, y)
    cold = CrossEntropyClassifier(tol=1e-8, max_iter=5000).fit(X, y)
    assert not np.array_equal(clf.coef_, first)
    # The second fit started from the first: it is closer to the optimum than the first.
    assert np.abs(clf.coef_ - cold.coef_).max() < np.abs(first - cold.coef_).max()


def test_results_do_not_depend_on_n_threads():
    X, y = _fifty_classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = [CrossEntropyClassifier(n_threads=n, max_iter=30, tol=0).fit(X, y)
                for n in (1, 2)]
    np.testing.assert_allclose(fits[0].coef_, fits[1].coef_, rtol=1e-9, atol=1e-12)


def test_verbose_prints_the_objective(capsys):
    X, y = _standardised(load_iris)
    CrossEntropyClassifier(verbose=1).fit(X, y)
    assert "L-BFGS iteration 1: objective" in capsys.readouterr().out


def test_pipeline_and_grid_search():
    X, y = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), CrossEntropyClassifier())
    search = GridSearchCV(pipe, {"crossentropyclassifier__C": [0.01, 1.0],
                                 "crossentropyclassifier__label_smoothing": [0.0, 0.1]}, cv=3)
    search.fit(X, y)
    assert search.best_score_ > 0.9
    assert set(search.best_params_) == {"crossentropyclassifier__C",
                                        "crossentropyclassifier__label_smoothing"}


def test_pickle_round_trip():
    X, y = _standardised(load_iris)
    clf = CrossEntropyClassifier().fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.coef_, clf.coef_)
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))


def test_feature_names_are_recorded():
    import pandas as pd
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = CrossEntropyClassifier(max_iter=1000).fit(X, y)
    np.testing.assert_array_equal(clf.feature_names_in_, X.columns)
    assert clf.n_features_in_ == 4
    with pytest.raises(ValueError, match="features"), \
            pytest.warns(UserWarning, match="feature names"):
        clf.predict(pd.DataFrame(X.values[:, :3]))


def test_one_class_is_rejected():
    with pytest.raises(ValueError, match="class"):
        CrossEntropyClassifier().fit(np.ones((5, 2)), np.zeros(5))


def test_import_fastxent_does_not_import_sklearn():
    code = ("import sys, fastxent; "
            "assert not {'sklearn', 'scipy'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("version,refused", [
    ("1.7.2", True), ("1.8.0", True), ("1.9.0", False), ("1.10.dev0", False), ("2.0", False)])
def test_an_older_scikit_learn_is_refused_at_import(version, refused, monkeypatch):
    # pip keeps scikit-learn >= 1.9 through the extras, but one installed beside them is not.
    import importlib

    import sklearn
    monkeypatch.setattr(sklearn, "__version__", version)
    monkeypatch.delitem(sys.modules, "fastxent.sklearn")
    monkeypatch.setattr(fx, "sklearn", fx.sklearn)     # an import rebinds it
    if refused:
        with pytest.raises(ImportError, match=f"scikit-learn >= 1.9.*{version} is installed"):
            importlib.import_module("fastxent.sklearn")
    else:
        assert importlib.import_module("fastxent.sklearn").SKLEARN_MINIMUM == (1, 9)
