"""Random problems and tolerances shared by the parity grids."""
import ml_dtypes
import numpy as np
import pytest

import fastxent as fx

BF16 = np.dtype(ml_dtypes.bfloat16)

# (rtol, atol relative to the largest magnitude) of fastxent against the float64 oracle
# evaluated on the same (rounded) inputs.
TOL = {
    np.float64: (1e-10, 1e-12),
    np.float32: (2e-6, 2e-7),
    np.float16: (2e-3, 1e-3),
    BF16.type: (1.6e-2, 8e-3),     # float16's times 8: three mantissa bits fewer
}


def assert_close(actual, expected, dtype, *, scale=None):
    """Compare with dtype-dependent tolerances; NaN and inf must match exactly."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol, atol = TOL[np.dtype(dtype).type]
    finite = np.isfinite(expected)
    if scale is None:
        scale = np.abs(expected[finite]).max() if finite.any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(scale, 1.0))


def assert_same(actual, expected):
    """Bit for bit: the same values, NaNs where NaNs are, shape and dtype. bfloat16 values
    are compared in float64, which holds each of them: NumPy's NaN test does not know
    bfloat16, and would find its NaNs unequal."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.dtype == expected.dtype == BF16:
        actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    np.testing.assert_array_equal(actual, expected, strict=True)


def swapped(a):
    """`a` with its bytes stored in the other order (the same values)."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("S"))


def class_target(rng, shape, axis, *, probs=False, ignore_index=None, ignore_frac=0.3):
    """Class-index targets (some set to ignore_index) or normalised probabilities."""
    ax = axis % len(shape)
    C = shape[ax]
    if probs:
        q = rng.random(shape) + 0.05
        return q / q.sum(axis=ax, keepdims=True)
    loss_shape = shape[:ax] + shape[ax + 1:]
    t = rng.integers(0, C, size=loss_shape)
    if ignore_index is not None and t.size:
        t[rng.random(loss_shape) < ignore_frac] = ignore_index
    return np.asarray(t, dtype=np.int64)


def upstream(rng, reduction, loss_shape):
    """A non-trivial grad_output for the reduction."""
    if reduction == "none":
        return rng.standard_normal(loss_shape)
    return np.float64(rng.uniform(0.5, 2.0))


def with_non_finite_rows(x, axis):
    """x with some rows (along `axis`) all -inf, holding +inf, NaN, or +inf and NaN."""
    x = np.moveaxis(x.copy(), axis, -1)
    flat = x.reshape(-1, x.shape[-1])
    flat[1] = -np.inf
    flat[4, 2] = np.inf
    flat[6, 0] = np.nan
    flat[9, [1, 3]] = [np.inf, np.nan]
    flat[11, :] = -np.inf
    flat[11, 5] = np.nan
    return np.moveaxis(flat.reshape(x.shape), -1, axis)


# The Dask grids' (shape, chunks, axis): rows only, classes only, both, odd sizes, 1-d,
# N-d, class-last.
DASK_CLASS_LAYOUTS = [
    ((37, 11), (10, 11), None),
    ((37, 11), (37, 4), None),
    ((37, 11), (7, 3), None),
    ((13,), (5,), None),
    ((6, 9, 5), (4, 4, 2), None),
    ((5, 4, 9), (2, 3, 4), -1),
]


# Calls that every backend must refuse before any work, with the NumPy API's exception and
# message: (function name, input, target or None, options).
X23 = np.zeros((2, 3), np.float32)
T2 = np.array([0, 1])
BAD_CALLS = [
    ("cross_entropy", X23, T2, dict(reduction="avg")),
    ("cross_entropy", X23, T2, dict(label_smoothing=1.5)),
    ("cross_entropy", X23, T2, dict(label_smoothing="a")),
    ("cross_entropy", X23, T2, dict(axis=3)),
    ("cross_entropy", X23, T2, dict(ignore_index=1.5)),
    ("cross_entropy", X23, T2, dict(weight=np.ones(4))),
    ("cross_entropy", X23, T2, dict(weight=np.ones((3, 1)))),
    ("cross_entropy", X23, np.zeros(5, np.int64), {}),
    ("cross_entropy", X23, np.zeros((2, 4), np.float32), {}),
    ("cross_entropy", X23, np.array([0.5, 1.0]), {}),
    ("cross_entropy", X23.astype(np.int32), T2, {}),
    ("cross_entropy", np.zeros((), np.float32), T2, {}),
    ("cross_entropy", X23, T2, dict(return_grad=1)),
    ("cross_entropy", X23, T2, dict(grad_output=np.ones(2))),
    ("cross_entropy", X23, T2, dict(return_grad=True, grad_output=np.ones(2))),
    ("cross_entropy", X23, T2, dict(return_grad=True, reduction="none",
                                    grad_output=np.ones(3))),
    ("cross_entropy", X23, T2, dict(return_grad=True, grad_out=np.zeros((3, 2),
                                                                         np.float32))),
    ("nll_loss", X23, np.zeros((2, 3), np.float32), {}),
    ("nll_loss", X23, T2, dict(reduction="batchmean")),
    ("nll_loss", X23, T2.astype(np.float32), {}),
    ("binary_cross_entropy", X23, np.zeros(3, np.float32), {}),
    ("binary_cross_entropy", X23, X23, dict(weight=np.ones(4))),
    ("binary_cross_entropy", X23, X23, dict(reduction="batchmean")),
    ("binary_cross_entropy_with_logits", X23, X23, dict(pos_weight=np.ones(2))),
    ("binary_cross_entropy_with_logits", X23, X23.astype(np.complex64), {}),
    ("binary_cross_entropy_with_logits", X23, X23, dict(return_grad=True,
                                                        grad_output=np.ones(3))),
    ("kl_div", X23, X23, dict(reduction="avg")),
    ("kl_div", X23, X23, dict(log_target=1)),
    ("kl_div", X23.astype(np.int64), X23, {}),
    ("softmax", X23, None, dict(axis=2)),
    ("log_softmax", X23.astype(np.bool_), None, {}),
    ("logsumexp", X23, None, dict(axis=-3)),
    ("logsumexp", X23, None, dict(keepdims=1)),
    ("logsumexp", X23, None, dict(axis=(1, -1))),
    ("softmax", X23, None, dict(axis=(0, 2))),
    ("log_softmax", X23, None, dict(axis=[0, 1])),
    ("logsumexp", X23, None, dict(axis=(0, 1.0))),
    ("softmax", X23.astype(np.int32), None, dict(axis=(0, 1))),
    ("cross_entropy", X23, T2, dict(axis=(1,))),
]


def assert_refused_as_numpy(name, x, t, options, call):
    """``call(name, args, options)`` (another backend's or API's call) raises the exception
    type and message that the NumPy API raises for the BAD_CALLS row (name, x, t, options)."""
    args = (x,) if t is None else (x, t)
    with pytest.raises((ValueError, TypeError, IndexError)) as numpy_error:
        getattr(fx, name)(*args, **options)
    with pytest.raises(type(numpy_error.value)) as other:
        call(name, args, options)
    assert str(other.value) == str(numpy_error.value)
