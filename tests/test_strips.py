"""Rows that are consecutive elements (Fortran order, the (N, C, d1...dK) layout) with more
than 256 classes, or a class stride that crowds the cache sets, run 64 float (32 double)
rows at a time through a copy, a strip (fx_block.inc: fx_strip_in; on the stack up to 64
float classes, else on the heap). A lane's result depends on its row alone, so a strip must
give, bit for bit, what the same rows give when they are not consecutive: here views whose
rows lie two elements apart, which the block kernels gather lane by lane. Batches cover
whole strips, a strip and a remainder, fewer rows than a strip, groups that cross from one
outer index to the next, and power-of-two class strides."""
import numpy as np
import pytest

import fastxent as fx
import oracle
from cases import assert_same

DTYPES = [np.float32, np.float64]
# (N, C) in Fortran order; the first two crowded (4 KiB and 8 KiB float class strides)
FORTRAN = [(1024, 40), (2048, 100), (128, 257), (200, 300), (40, 1000), (1024, 300)]
# (N, C, d): groups of rows cross from one n to the next when d is not a multiple of 64
SPATIAL = [(2, 300, 64), (3, 260, 80)]


def _awkward(rng, shape, dtype):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x[1, :] = -np.inf
    x[1, 7] = 3.0
    x[2, 5] = np.inf
    x[3, 9] = np.nan
    x[4, 11] = 1e30
    return x


def _gathered(a):
    """`a`'s values in a view whose rows (axis 0, or the last axis) lie two elements apart."""
    if a.ndim == 2:
        big = np.zeros((2 * a.shape[0], a.shape[1]), a.dtype, order="F")
        big[::2] = a
        return big[::2]
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def _cases(dtype):
    rng = np.random.default_rng(0)
    for shape in FORTRAN:
        x = np.asfortranarray(_awkward(rng, shape, dtype))
        yield x, rng.integers(0, shape[1], shape[0])
    for shape in SPATIAL:
        x = _awkward(rng, (shape[0] * shape[2], shape[1]), dtype)
        x = np.ascontiguousarray(x.reshape(shape[0], shape[2], shape[1]).transpose(0, 2, 1))
        yield x, rng.integers(0, shape[1], (shape[0], shape[2]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("option", ["plain", "smoothing_weight"])
def test_class_index_strips_match_gathered_rows(dtype, option):
    for x, t in _cases(dtype):
        t = t.copy()
        t.flat[6] = -100
        C = x.shape[1]
        kw = {}
        if option == "smoothing_weight":
            kw = {"label_smoothing": 0.2,
                  "weight": np.random.default_rng(1).random(C) + 0.5}
        xg = _gathered(x)
        for red in ("none", "mean"):
            loss, grad = fx.cross_entropy(x, t, reduction=red, return_grad=True, **kw)
            gloss, ggrad = fx.cross_entropy(xg, t, reduction=red, return_grad=True, **kw)
            assert_same(loss, gloss)
            assert_same(grad, ggrad)
            assert_same(fx.cross_entropy(x, t, reduction=red, **kw), loss)
            out = np.zeros_like(x)
            fx.cross_entropy(x, t, reduction=red, return_grad=True, grad_out=out, **kw)
            assert_same(out, grad)
        # the gradient over the logits themselves
        over = x.copy(order="K")
        fx.cross_entropy(over, t, return_grad=True, grad_out=over, **kw)
        assert_same(over, fx.cross_entropy(x, t, return_grad=True, **kw)[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_strips_match_gathered_rows(dtype):
    rng = np.random.default_rng(2)
    for x, _ in _cases(dtype):
        q = rng.random(x.shape).astype(dtype)
        q /= q.sum(1, keepdims=True)
        xg = _gathered(x)
        want = fx.cross_entropy(xg, _gathered(q), reduction="none", return_grad=True,
                                label_smoothing=0.1)
        # targets laid out as the logits (a strip of each), and C-ordered targets
        for qv in (q.copy(order="K"), np.ascontiguousarray(q)):
            loss, grad = fx.cross_entropy(x, qv, reduction="none", return_grad=True,
                                          label_smoothing=0.1)
            assert_same(loss, want[0])
            assert_same(grad, want[1])
        over = x.copy(order="K")
        fx.cross_entropy(over, q, reduction="none", return_grad=True, label_smoothing=0.1,
                         grad_out=over)
        assert_same(over, want[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_transform_strips_match_gathered_rows(dtype):
    for x, _ in _cases(dtype):
        xg = _gathered(x)
        for fn in (fx.softmax, fx.log_softmax, fx.logsumexp):
            assert_same(fn(x, axis=1), fn(xg, axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strips_match_pytorch(dtype):
    rng = np.random.default_rng(3)
    x = np.asfortranarray((rng.standard_normal((256, 700)) * 3).astype(dtype))
    t = rng.integers(0, 700, 256)
    w = rng.random(700) + 0.5
    kw = {"label_smoothing": 0.1, "weight": w}
    want_loss, want_grad = oracle.cross_entropy(x, t, **kw)
    loss, grad = fx.cross_entropy(x, t, return_grad=True, **kw)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * np.abs(want_grad).max())
    np.testing.assert_allclose(fx.softmax(x, axis=1), oracle.softmax(x, axis=1), rtol=rtol,
                               atol=rtol)
