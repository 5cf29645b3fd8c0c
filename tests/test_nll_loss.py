"""nll_loss against torch.nn.functional.nll_loss."""
import itertools

import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, class_target, upstream
from layouts import LAYOUTS, with_layout

SHAPES = [(5,), (7, 3), (1, 1), (13, 17), (3, 1031), (2, 3, 4), (2, 5, 3, 2), (0, 3)]


@pytest.mark.parametrize("shape,weighted,ignore,reduction,up", list(itertools.product(
    SHAPES, (False, True), (-100, 0, 50), ("none", "mean", "sum"), (False, True))))
def test_options_float64(shape, weighted, ignore, reduction, up):
    rng = np.random.default_rng(11)
    x = np.log(fx.softmax(rng.standard_normal(shape), axis=0 if len(shape) == 1 else 1))
    ax = 0 if len(shape) == 1 else 1
    t = class_target(rng, shape, ax, ignore_index=ignore)
    w = rng.uniform(0.2, 2, shape[ax]) if weighted else None
    go = upstream(rng, reduction, t.shape) if up else None
    kw = dict(weight=w, ignore_index=ignore, reduction=reduction)
    ref_loss, ref_grad = oracle.nll_loss(x, t, grad_output=go, **kw)
    loss, grad = fx.nll_loss(x, t, return_grad=True, grad_output=go, **kw)
    assert_close(loss, ref_loss, np.float64)
    assert_close(grad, ref_grad, np.float64)
    np.testing.assert_array_equal(fx.nll_loss(x, t, **kw), loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,axis", [((7, 3), None), ((2, 5, 3, 2), None),
                                        ((4, 6, 5), -1)])
def test_layouts_dtypes_axis(dtype, layout, shape, axis):
    rng = np.random.default_rng(5)
    x = with_layout(rng.standard_normal(shape).astype(dtype), layout)
    ax = 1 if axis is None else axis
    t = class_target(rng, shape, ax, ignore_index=-100)
    w = rng.uniform(0.2, 2, shape[ax])
    ref_loss, ref_grad = oracle.nll_loss(np.asarray(x, np.float64), t, weight=w, axis=axis)
    loss, grad = fx.nll_loss(x, t, weight=w, axis=axis, return_grad=True)
    assert loss.dtype == grad.dtype == x.dtype
    assert_close(loss, ref_loss, dtype)
    assert_close(grad, ref_grad, dtype)
