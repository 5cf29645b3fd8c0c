"""cross_entropy against torch.nn.functional.cross_entropy: forward and gradient."""
import itertools

import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, class_target, upstream
from layouts import LAYOUTS, with_layout

SHAPES = [(5,), (7, 3), (1, 1), (4, 1), (13, 17), (3, 1031), (2, 3, 4), (2, 5, 3, 2),
          (0, 3), (0, 3, 2)]


def _option_grid():
    for shape, probs, weighted, ignore, reduction, eps, up in itertools.product(
            SHAPES, (False, True), (False, True), ("default", "valid", "outside"),
            ("none", "mean", "sum"), (0.0, 0.3, 1.0), (False, True)):
        if probs and ignore != "default":
            continue          # an error case, covered in test_validation
        yield shape, probs, weighted, ignore, reduction, eps, up


def _ignore_value(ignore, C):
    return {"default": -100, "valid": min(1, C - 1), "outside": C + 2}[ignore]


def _run(rng, x, shape, probs, weighted, ignore, reduction, eps, up, dtype, axis=None):
    ax = (0 if len(shape) == 1 else 1) if axis is None else axis % len(shape)
    C = shape[ax]
    ignore_index = _ignore_value(ignore, C)
    t = class_target(rng, shape, ax, probs=probs, ignore_index=ignore_index)
    w = rng.uniform(0.2, 2.0, C) if weighted else None
    loss_shape = shape[:ax] + shape[ax + 1:]
    go = upstream(rng, reduction, loss_shape) if up else None
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    ref_loss, ref_grad = oracle.cross_entropy(
        np.asarray(x, np.float64), t, axis=axis, grad_output=go, **kw)
    tt = t.astype(dtype) if probs else t
    loss, grad = fx.cross_entropy(x, tt, axis=axis, return_grad=True, grad_output=go, **kw)
    assert loss.dtype == x.dtype and grad.dtype == x.dtype
    assert grad.shape == x.shape and loss.shape == ref_loss.shape
    assert_close(loss, ref_loss, dtype)
    assert_close(grad, ref_grad, dtype)
    # The loss-only kernel gives the same loss as the fused one, bit for bit.
    alone = fx.cross_entropy(x, tt, axis=axis, **kw)
    np.testing.assert_array_equal(alone, loss)


@pytest.mark.parametrize("shape,probs,weighted,ignore,reduction,eps,up", list(_option_grid()))
def test_options_float64(shape, probs, weighted, ignore, reduction, eps, up):
    rng = np.random.default_rng(hash((shape, probs, weighted, ignore)) % 2**32)
    x = rng.standard_normal(shape) * 3
    _run(rng, x, shape, probs, weighted, ignore, reduction, eps, up, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(7, 3), (45, 10), (13, 17), (40, 64), (37, 65), (3, 1031),
                                   (2, 3, 4), (2, 5, 3, 2), (3, 4, 37)])
@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_layouts_and_dtypes(dtype, layout, shape, probs, reduction):
    rng = np.random.default_rng(7)
    x = with_layout((rng.standard_normal(shape) * 3).astype(dtype), layout)
    _run(rng, x, shape, probs, True, "default" if probs else "valid", reduction, 0.1, True,
         dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", [((2, 4, 3), -1), ((2, 4, 3), 2), ((6, 5), 0),
                                        ((3, 2, 5, 4), 2), ((4, 3, 7), 0)])
@pytest.mark.parametrize("probs", [False, True])
def test_axis(layout, shape, axis, probs):
    """axis= takes class-last and other layouts without a transpose."""
    rng = np.random.default_rng(3)
    x = with_layout(rng.standard_normal(shape) * 2, layout)
    _run(rng, x, shape, probs, True, "default" if probs else "valid", "mean", 0.2, True,
         np.float64, axis=axis)


def test_class_last_equals_transposed(rng):
    x = rng.standard_normal((3, 5, 7))
    t = rng.integers(0, 7, (3, 5))
    a = fx.cross_entropy(x, t, axis=-1, reduction="none")
    b = fx.cross_entropy(np.moveaxis(x, -1, 1), t, reduction="none")
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", sorted({np.int8, np.int16, np.int32, np.int64, np.uint8,
                                          np.uint16, np.uint32, np.uint64}, key=str))
def test_any_integer_target_dtype(dtype, rng):
    x = rng.standard_normal((6, 4))
    t = rng.integers(0, 4, 6)
    ref = fx.cross_entropy(x, t.astype(np.int64), return_grad=True)
    got = fx.cross_entropy(x, t.astype(dtype), return_grad=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_unsigned_target_with_negative_ignore_index(rng):
    x = rng.standard_normal((3, 4))
    t = np.array([1, 255, 2], np.uint8)
    got = fx.cross_entropy(x, t, ignore_index=255, reduction="none")
    assert got[1] == 0
    with pytest.raises(IndexError, match="255"):
        fx.cross_entropy(x, t)            # 255 is neither a class nor ignore_index=-100
