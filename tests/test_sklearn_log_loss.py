"""fastxent.sklearn.log_loss gives scikit-learn's log_loss, float for float, and its errors."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from fastxent.sklearn import log_loss


def _probabilities(rng, n, k, dtype):
    p = rng.random((n, k)) ** 3            # some entries near 0, to exercise the clip
    p[rng.random((n, k)) < 0.05] = 0.0
    p[:, 0] += 1e-3
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("n,k", [(1, 2), (7, 2), (300, 3), (1000, 17)])
def test_equals_sklearn_float_for_float(n, k, dtype, normalize, weighted, rng):
    p = _probabilities(rng, n, k, dtype)
    y = rng.integers(0, k, n)
    labels = np.arange(k)
    w = rng.uniform(0, 3, n) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # float16 rows need not sum to 1
        expected = sklearn_log_loss(y, p, normalize=normalize, sample_weight=w, labels=labels)
        got = log_loss(y, p, normalize=normalize, sample_weight=w, labels=labels)
    assert type(got) is float
    assert got == expected


@pytest.mark.parametrize("y_true", [
    ["spam", "ham", "ham", "spam"],
    np.array([3, 9, 9, 3]),
    np.array([[1], [0], [0], [1]]),
    [True, False, False, True],
], ids=["strings", "ints", "column", "bools"])
def test_binary_labels_and_positive_class_column(y_true, rng):
    p2 = np.array([[.1, .9], [.9, .1], [.8, .2], [.35, .65]])
    for p in (p2, p2[:, 1], p2[:, 1:]):
        assert log_loss(y_true, p) == sklearn_log_loss(y_true, p)


def test_label_indicator_matrix(rng):
    y = (rng.random((50, 4)) < 0.4).astype(int)
    p = _probabilities(rng, 50, 4, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert log_loss(y, p) == sklearn_log_loss(y, p)


def test_extreme_probabilities_are_clipped():
    p = np.array([[0.0, 1.0], [1.0, 0.0]])
    y = [0, 1]
    assert log_loss(y, p) == sklearn_log_loss(y, p)
    assert np.isfinite(log_loss(y, p))


def test_rows_not_summing_to_one_warn():
    with pytest.warns(UserWarning, match="do not sum to one"):
        log_loss([0, 1], [[0.2, 0.2], [0.5, 0.5]])


def test_unordered_labels_warn():
    with pytest.warns(UserWarning, match="ordered"):
        log_loss([0, 1, 2], np.eye(3), labels=[2, 1, 0])


@pytest.mark.parametrize("args, kwargs, match", [
    (([0, 1], [[0.5, 1.5], [0.5, 0.5]]), {}, "greater than 1"),
    (([0, 1], [[-0.5, 1.5], [0.5, 0.5]]), {}, "greater than 1"),
    (([0, 1], [[-0.1, 1.0], [0.5, 0.5]]), {}, "lower than 0"),
    (([0, 0], [[0.5, 0.5], [0.5, 0.5]]), {}, "only one label"),
    (([0, 0], [[0.5, 0.5], [0.5, 0.5]]), {"labels": [0]}, "at least two labels"),
    (([0, 5], [[0.5, 0.5], [0.5, 0.5]]), {"labels": [0, 1]}, "not belonging"),
    (([0, 1, 2], [[0.5, 0.5]] * 3), {}, "different numbers of classes"),
    (([0, 1], [[0.5, 0.5]] * 2), {"labels": [0, 1, 2]}, "number of classes in labels"),
    (([0, 1, 1], [[0.5, 0.5]] * 2), {}, "inconsistent numbers of samples"),
    (([0, 1], [[0.5, np.nan], [0.5, 0.5]]), {}, "NaN"),
    (([0, 1], [[0.5, 0.5], [0.5, 0.5]]), {"sample_weight": [1.0]}, "inconsistent"),
])
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        log_loss(*args, **kwargs)


def test_bad_parameter_types():
    with pytest.raises(ValueError, match="normalize"):      # InvalidParameterError
        log_loss([0, 1], [[0.5, 0.5]] * 2, normalize="yes")


def test_inputs_are_not_modified(rng):
    p = _probabilities(rng, 40, 5, np.float64)
    p[0, 1] = 0.0
    p[0] /= p[0].sum()
    y = rng.integers(0, 5, 40)
    w = rng.random(40)
    copies = p.copy(), y.copy(), w.copy()
    log_loss(y, p, sample_weight=w, labels=np.arange(5))
    for before, after in zip(copies, (p, y, w)):
        np.testing.assert_array_equal(before, after)
