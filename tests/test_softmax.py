"""logsumexp, softmax and log_softmax against torch."""
import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, with_non_finite_rows
from layouts import LAYOUTS, with_layout

CASES = [((5,), -1), ((7, 3), -1), ((7, 3), 0), ((3, 1031), 1), ((2, 3, 4), 1),
         ((2, 5, 3, 2), -2), ((1, 1), -1), ((4, 1), 1),
         # a tuple (NumPy's and SciPy's `axis`, torch.logsumexp's `dim`): the axes as one
         ((3, 4, 5), (1, 2)), ((3, 4, 5), (0, 2)), ((3, 4, 5), (2, 0)), ((3, 4, 5), (-1, 0)),
         ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), (0, 1, 2)), ((7, 3), (0, 1)),
         ((6, 70, 3), (0, 2)), ((2, 1, 3), (1,)), ((2, 40, 9), (2, 1))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_parity(name, shape, axis, layout, dtype):
    rng = np.random.default_rng(0)
    x = with_layout((rng.standard_normal(shape) * 5).astype(dtype), layout)
    before = x.copy()
    got = getattr(fx, name)(x, axis=axis)
    ref = getattr(oracle, name)(np.asarray(x, np.float64), axis=axis)
    assert got.dtype == x.dtype and got.shape == ref.shape
    assert_close(got, ref, dtype)
    np.testing.assert_array_equal(x, before)


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


@pytest.mark.parametrize("shape,axis", [((0, 5), -1), ((0, 5), 0), ((2, 5, 0), 1),
                                        ((0, 3, 4), 1), ((4, 0, 0), 0), ((0, 3, 4), (1, 2)),
                                        ((3, 0, 4), (1, 2)), ((3, 4, 0), (0, 1)),
                                        ((0, 0), (0, 1))])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_empty_batches(name, shape, axis):
    x = np.zeros(shape, np.float32)
    got = getattr(fx, name)(x, axis=axis)
    ref = getattr(oracle, name)(x.astype(np.float64), axis=axis)
    assert got.shape == ref.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, ref)


def test_exponential_accuracy_down_to_subnormals():
    """The kernels' own exp (8 lanes and the scalar tail) is within a few ulp of NumPy's."""
    d = -np.linspace(0, 745, 16 * 20000).reshape(-1, 15 + 1)[:, :15] - 1e-3
    x = np.concatenate([np.zeros((d.shape[0], 1)), d, np.full((d.shape[0], 3), -1e3)], 1)
    got = fx.softmax(x)                      # 19 classes: one 8-lane block + the tail
    e = np.exp(x)
    ref = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=2e-15, atol=1e-322)
    assert (fx.softmax(np.array([0.0, -np.inf] * 8))[1::2] == 0).all()
    assert np.isnan(fx.softmax(np.array([0.0, np.nan] * 8))).all()


# Batches of many rows: every kernel path of the transforms. Up to 64 classes the rows run a
# lane per row (tiled when C-ordered, direct loads in Fortran order, gathered when strided)
# with a partial last block; longer class-adjacent rows run a row at a time (in pairs up to 256
# float classes, their logs deferred to the group's end up to 256 classes).
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", [((40, 10), 1), ((40, 64), 1), ((37, 65), 1),
                                        ((33, 200), 1), ((19, 300), 1), ((3, 12, 18), 1),
                                        ((20, 3, 9), -1)])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_batcheswith_non_finite_rows(name, shape, axis, layout, dtype):
    rng = np.random.default_rng(1)
    x64 = with_non_finite_rows(rng.standard_normal(shape) * 5, axis)
    x = with_layout(x64.astype(dtype), layout)
    got = getattr(fx, name)(x, axis=axis)
    ref = getattr(oracle, name)(np.asarray(x, np.float64), axis=axis)
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_one_axis_in_a_tuple_is_that_axis(name, layout, rng):
    x = with_layout(rng.standard_normal((5, 6, 7)), layout)
    f = getattr(fx, name)
    for ax in (0, 1, 2, -1):
        np.testing.assert_array_equal(f(x, axis=(ax,)), f(x, axis=ax))
    np.testing.assert_array_equal(fx.logsumexp(x, axis=(1,), keepdims=True),
                                  fx.logsumexp(x, axis=1, keepdims=True))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_every_axis_in_a_tuple_is_axis_none(name, layout, rng):
    x = with_layout(rng.standard_normal((4, 3, 5)).astype(np.float32), layout)
    f = getattr(fx, name)
    np.testing.assert_array_equal(f(x, axis=(2, 0, 1)), f(x, axis=None))
    np.testing.assert_array_equal(fx.logsumexp(x, axis=(0, 1, 2), keepdims=True),
                                  fx.logsumexp(x, axis=None, keepdims=True))


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_empty_tuple_reduces_nothing(name):
    """Each element is its own row of one, as NumPy's ``axis=()`` (SciPy gives the same)."""
    x = np.array([[1.5, -np.inf, np.inf], [np.nan, 0.0, -1e30]], np.float32)
    got = getattr(fx, name)(x, axis=())
    ref = getattr(oracle, name)(x[..., None].astype(np.float64), axis=-1)
    ref = ref if name == "logsumexp" else ref[..., 0]
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert getattr(fx, name)(np.float64(2.0), axis=()).shape == ()


def test_tuple_axes_keepdims(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    got = fx.logsumexp(x, axis=(3, 1), keepdims=True)
    assert got.shape == (3, 1, 5, 1)
    np.testing.assert_array_equal(got[:, 0, :, 0], fx.logsumexp(x, axis=(1, 3)))
    assert fx.logsumexp(x, axis=(), keepdims=True).shape == x.shape


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_tuple_axes_non_finite(name):
    x = np.zeros((4, 2, 3))
    x[0, 1, 2] = -np.inf
    x[1] = -np.inf
    x[2, 0, 0] = np.inf
    x[3, 1, 1] = np.nan
    got = getattr(fx, name)(x, axis=(1, 2))
    assert_close(got, getattr(oracle, name)(x, axis=(1, 2)), np.float64)
