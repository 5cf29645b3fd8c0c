"""Blocks of consecutive lanes whose class stride is a multiple of 2 KiB (Fortran order with a
power-of-two batch, the (N, C, d1...dK) layout with power-of-two spatial sizes) are copied
into a tile and their gradient or output written back at the end (fx_block.inc:
fx_blk_crowded). They must give what the same values give in place, bit for bit: here the
same arrays as views whose class stride is padded by 16 elements, which the kernels read and
write directly, with every option, in-place gradients and the transforms."""
import numpy as np
import pytest

import fastxent as fx
import oracle
from cases import assert_same

# (outer, C, inner) with a class stride of 2 KiB or 4 KiB in the dtype's elements; C up to
# and past the tile's 256 classes (257 stays on the direct path, crowded or not)
SHAPES = [(2, 5, 1024), (3, 21, 512), (1, 150, 1024), (1, 256, 512), (1, 257, 512),
          (2, 9, 544)]     # 544 elements: a 2 KiB factor is missing, never crowded
DTYPES = [np.float32, np.float64]


def _inner(inner, dtype):
    # float64 elements are twice as wide: half the inner size gives the same stride in bytes
    return inner if dtype == np.float32 else inner // 2


def _padded(a):
    """`a`'s values in a view whose class stride is 16 elements longer (not crowded)."""
    big = np.zeros(a.shape[:-1] + (a.shape[-1] + 16,), a.dtype)
    big[..., :a.shape[-1]] = a
    return big[..., :a.shape[-1]]


def _problem(shape, dtype, seed=0):
    outer, C, inner = shape[0], shape[1], _inner(shape[2], dtype)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((outer, C, inner)) * 4).astype(dtype)
    t = rng.integers(0, C, (outer, inner))
    t[0, 3] = -100
    x[0, :, 5] = -np.inf
    x[0, C // 2, 7] = np.inf
    x[-1, 0, 9] = np.nan
    x[-1, -1, 11] = 1e30
    return rng, x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("option", ["plain", "smoothing_weight"])
def test_class_index_crowded_matches_direct(shape, dtype, option):
    rng, x, t = _problem(shape, dtype)
    kw = {}
    if option == "smoothing_weight":
        kw = {"label_smoothing": 0.2, "weight": rng.random(x.shape[1]) + 0.5}
    xp = _padded(x)
    for red in ("none", "mean"):
        loss, grad = fx.cross_entropy(x, t, reduction=red, return_grad=True, **kw)
        ploss, pgrad = fx.cross_entropy(xp, t, reduction=red, return_grad=True, **kw)
        assert_same(loss, ploss)
        assert_same(grad, pgrad)
    # the gradient into a crowded grad_out, and over the logits themselves
    out, pout = np.empty_like(x), _padded(np.zeros_like(x))
    fx.cross_entropy(x, t, return_grad=True, grad_out=out, **kw)
    fx.cross_entropy(xp, t, return_grad=True, grad_out=pout, **kw)
    assert_same(out, pout)
    own, pown = x.copy(), _padded(x)
    fx.cross_entropy(own, t, return_grad=True, grad_out=own, **kw)
    fx.cross_entropy(pown, t, return_grad=True, grad_out=pown, **kw)
    assert_same(own, pown)
    assert_same(own, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_probability_targets_crowded_matches_direct(shape, dtype):
    rng, x, _ = _problem(shape, dtype)
    q = rng.random(x.shape).astype(dtype)
    q /= q.sum(axis=1, keepdims=True)
    w = rng.random(x.shape[1]) + 0.5
    loss, grad = fx.cross_entropy(x, q, weight=w, label_smoothing=0.1, reduction="none",
                                  return_grad=True)
    ploss, pgrad = fx.cross_entropy(_padded(x), _padded(q), weight=w, label_smoothing=0.1,
                                    reduction="none", return_grad=True)
    assert_same(loss, ploss)
    assert_same(grad, pgrad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_transforms_crowded_match_direct(shape, dtype, name):
    _, x, _ = _problem(shape, dtype)
    fn = getattr(fx, name)
    assert_same(fn(x, axis=1), fn(_padded(x), axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fortran_order_power_of_two_batch_matches_direct(dtype):
    # (N, C) in Fortran order: the class stride is N elements (4 KiB for 1024 floats)
    rng = np.random.default_rng(3)
    n = _inner(1024, dtype)
    x = np.asfortranarray((rng.standard_normal((n, 40)) * 3).astype(dtype))
    t = rng.integers(0, 40, n)
    padded = np.asfortranarray(np.zeros((n + 16, 40), dtype))[:n]
    padded[...] = x
    loss, grad = fx.cross_entropy(x, t, return_grad=True, grad_out=np.empty_like(x))
    ploss, pgrad = fx.cross_entropy(padded, t, return_grad=True,
                                    grad_out=np.asfortranarray(np.zeros((n + 16, 40), dtype))[:n])
    assert_same(loss, ploss)
    assert_same(grad, pgrad)
    assert_same(fx.softmax(x, axis=1), fx.softmax(padded, axis=1))


def test_crowded_segmentation_layout_matches_pytorch():
    # An (N, C, H, W) batch with 64 x 64 pixels: a 16 KiB class stride
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 21, 64, 64)).astype(np.float32)
    t = rng.integers(0, 21, (2, 64, 64))
    t[0, 0, :5] = 255
    loss, grad = fx.cross_entropy(x, t, ignore_index=255, return_grad=True)
    want_loss, want_grad = oracle.cross_entropy(x, t, ignore_index=255)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-9)
