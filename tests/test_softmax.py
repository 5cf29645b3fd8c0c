"""logsumexp, softmax and log_softmax against torch."""
import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close
from layouts import LAYOUTS, with_layout

CASES = [((5,), -1), ((7, 3), -1), ((7, 3), 0), ((3, 1031), 1), ((2, 3, 4), 1),
         ((2, 5, 3, 2), -2), ((1, 1), -1), ((4, 1), 1)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_parity(name, shape, axis, layout, dtype):
    rng = np.random.default_rng(0)
    x = with_layout((rng.standard_normal(shape) * 5).astype(dtype), layout)
    got = getattr(fx, name)(x, axis=axis)
    ref = getattr(oracle, name)(np.asarray(x, np.float64), axis=axis)
    assert got.dtype == x.dtype
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_non_finite_rows_match_torch(name):
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0],
                  [np.nan, 0.0, 1.0], [1000.0, 0.0, -1000.0]])
    assert_close(getattr(fx, name)(x), getattr(oracle, name)(x), np.float64)


def test_logsumexp_keepdims_and_axis_none(rng):
    x = rng.standard_normal((3, 4, 5))
    assert fx.logsumexp(x, axis=1, keepdims=True).shape == (3, 1, 5)
    np.testing.assert_allclose(fx.logsumexp(x, axis=None),
                               np.log(np.exp(x).sum()), rtol=1e-13)
    assert fx.logsumexp(x, axis=None, keepdims=True).shape == (1, 1, 1)
    np.testing.assert_allclose(fx.softmax(x, axis=None).sum(), 1.0, rtol=1e-13)


def test_empty_class_axis():
    x = np.zeros((3, 0))
    np.testing.assert_array_equal(fx.logsumexp(x), [-np.inf] * 3)
    assert fx.softmax(x).shape == (3, 0) and fx.log_softmax(x).shape == (3, 0)
