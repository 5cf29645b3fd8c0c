"""binary_cross_entropy and binary_cross_entropy_with_logits against PyTorch."""
import itertools

import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, upstream
from layouts import LAYOUTS, with_layout

SHAPES = [(), (1,), (7,), (4, 3), (3, 5, 2), (2, 3, 4, 5), (0,), (0, 3), (5000,)]


def _weights(rng, shape, kind):
    """Weights of a shape that broadcasts against `shape` (PyTorch's trailing rule)."""
    if kind == "none" or not shape:
        return None if kind == "none" else rng.uniform(0.2, 2)
    if kind == "full":
        return rng.uniform(0.2, 2, shape)
    if kind == "last":
        return rng.uniform(0.2, 2, shape[-1:])
    return rng.uniform(0.2, 2, shape[:1] + (1,) * (len(shape) - 1))    # "lead"


@pytest.mark.parametrize("shape,wkind,reduction,up", list(itertools.product(
    SHAPES, ("none", "full", "last", "lead"), ("none", "mean", "sum"), (False, True))))
def test_bce_options(shape, wkind, reduction, up):
    rng = np.random.default_rng(2)
    p = rng.uniform(0.001, 0.999, shape)
    y = rng.random(shape)
    w = _weights(rng, shape, wkind)
    go = upstream(rng, reduction, shape) if up else None
    ref = oracle.binary_cross_entropy(p, y, weight=w, reduction=reduction, grad_output=go)
    loss, grad = fx.binary_cross_entropy(p, y, weight=w, reduction=reduction,
                                         return_grad=True, grad_output=go)
    assert_close(loss, ref[0], np.float64)
    assert_close(grad, ref[1], np.float64)
    np.testing.assert_array_equal(fx.binary_cross_entropy(p, y, weight=w,
                                                          reduction=reduction), loss)


@pytest.mark.parametrize("shape,wkind,pwkind,reduction,up", list(itertools.product(
    SHAPES, ("none", "full", "last", "lead"), ("none", "last", "lead"),
    ("none", "mean", "sum"), (False, True))))
def test_bce_logits_options(shape, wkind, pwkind, reduction, up):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 4
    y = rng.random(shape)
    w = _weights(rng, shape, wkind)
    pw = _weights(rng, shape, pwkind)
    go = upstream(rng, reduction, shape) if up else None
    kw = dict(weight=w, pos_weight=pw, reduction=reduction)
    ref = oracle.binary_cross_entropy_with_logits(x, y, grad_output=go, **kw)
    loss, grad = fx.binary_cross_entropy_with_logits(x, y, return_grad=True,
                                                     grad_output=go, **kw)
    assert_close(loss, ref[0], np.float64)
    assert_close(grad, ref[1], np.float64)
    np.testing.assert_array_equal(fx.binary_cross_entropy_with_logits(x, y, **kw), loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 2), (2, 3, 4, 5), (64, 257)])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_layouts_and_dtypes(dtype, layout, shape, reduction):
    rng = np.random.default_rng(9)
    x = with_layout((rng.standard_normal(shape) * 3).astype(dtype), layout)
    p = with_layout(rng.uniform(0.01, 0.99, shape).astype(dtype), layout)
    y = with_layout(rng.random(shape).astype(dtype), "C")
    w, pw = rng.uniform(0.5, 2, shape[-1:]), rng.uniform(0.5, 3, shape[:1] + (1,) *
                                                          (len(shape) - 1))
    ref = oracle.binary_cross_entropy_with_logits(np.asarray(x, np.float64), y, weight=w,
                                                  pos_weight=pw, reduction=reduction)
    got = fx.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                              reduction=reduction, return_grad=True)
    assert got[0].dtype == got[1].dtype == x.dtype
    assert_close(got[0], ref[0], dtype)
    assert_close(got[1], ref[1], dtype)
    ref = oracle.binary_cross_entropy(np.asarray(p, np.float64), y, weight=w,
                                      reduction=reduction)
    got = fx.binary_cross_entropy(p, y, weight=w, reduction=reduction, return_grad=True)
    assert_close(got[0], ref[0], dtype)
    assert_close(got[1], ref[1], dtype)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int64])
def test_integer_and_bool_labels(dtype, rng):
    x = rng.standard_normal((5, 3))
    y = rng.integers(0, 2, (5, 3))
    ref = fx.binary_cross_entropy_with_logits(x, y.astype(np.float64), return_grad=True)
    got = fx.binary_cross_entropy_with_logits(x, y.astype(dtype), return_grad=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_bce_clamp_and_extremes():
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-50])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    ref = oracle.binary_cross_entropy(p, y, reduction="none")
    loss, grad = fx.binary_cross_entropy(p, y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, [100.0, 100.0, 0.0, 0.0, 100.0])
    assert_close(loss, ref[0], np.float64)
    assert_close(grad, ref[1], np.float64)
    # float32 subnormal probability: log is -92.1, not clamped
    loss32 = fx.binary_cross_entropy(np.array([1e-40], np.float32), np.array([1.0]),
                                     reduction="none")
    assert_close(loss32, [92.1034088], np.float32)


def test_bce_logits_infinities_match_torch():
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, 100.0, -100.0, 1e4])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    ref = oracle.binary_cross_entropy_with_logits(x, y, reduction="none")
    loss, grad = fx.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    assert_close(loss, ref[0], np.float64)
    assert_close(grad, ref[1], np.float64)
    assert np.isnan(loss[0]) and np.isnan(loss[1]) and loss[2] == np.inf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extremes_in_vector_runs_match_torch(dtype):
    """The 8-lane loops see every extreme, at every lane position, and so does the tail."""
    p_values = [0.0, 1.0, 1e-50, 1e-310, 1e-40, 1 - 2**-53, 1 - 1e-7, 1e-8, 0.5, 0.3, 0.999,
                2**-30, 0.75]
    x_values = [np.inf, -np.inf, 100.0, -100.0, 1e4, -1e4, 0.0, -0.0, 1e-30, 37.0, -37.0,
                0.5, -2.5]
    y_values = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.3, 1.0, 0.0, 0.7, 1.0, 0.0, 1.0]
    reps = 9               # 117 elements: 14 full vectors and a tail; each copy rotated by one
    y = np.array(y_values * reps, dtype)
    p, x = (np.concatenate([np.roll(v, k) for k in range(reps)]).astype(dtype)
            for v in (p_values, x_values))
    for fn, a in ((fx.binary_cross_entropy, p), (fx.binary_cross_entropy_with_logits, x)):
        ref = getattr(oracle, fn.__name__)(np.asarray(a, np.float64), np.asarray(y, np.float64),
                                            reduction="none")
        loss, grad = fn(a, y, reduction="none", return_grad=True)
        assert_close(loss, ref[0], dtype)
        assert_close(grad, ref[1], dtype)
        total = fn(a, y, reduction="sum")
        assert_close(total, np.sum(ref[0]), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits",
                                  "kl_div"])
def test_an_element_does_not_depend_on_its_position(dtype, name):
    """A run's last n % 8 elements go through the same vector operations as the others
    (a padded vector): rows of 7 (a view whose every row is a run that is all tail) give
    every element the bits the same values get inside one long run of whole vectors."""
    rng = np.random.default_rng(12)
    shape = (300, 8)
    a = rng.random(shape) if name == "binary_cross_entropy" else rng.standard_normal(shape) * 6
    y = rng.random(shape)
    a, y = a.astype(dtype)[:, :7], y.astype(dtype)[:, :7]
    fn = getattr(fx, name)
    tails = fn(a, y, reduction="none", return_grad=True)
    dense = fn(np.ascontiguousarray(a), np.ascontiguousarray(y), reduction="none",
               return_grad=True)
    for t, d in zip(tails, dense):
        np.testing.assert_array_equal(t, d)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", [
    ("binary_cross_entropy", {}), ("binary_cross_entropy", {"weight": "last"}),
    ("binary_cross_entropy_with_logits", {}),
    ("binary_cross_entropy_with_logits", {"weight": "last", "pos_weight": "last"}),
    ("kl_div", {}), ("kl_div", {"log_target": True})])
def test_mixed_layouts_compute_what_one_layout_does(dtype, name, kw):
    """Operands in different memory orders (a Fortran-order input, a C-order target, a
    strided view) have no unit-stride run in common: they go through the same vector loops
    in chunks copied to the stack, so every element gets the bits of the dense call (a
    scalar loop with libm rounded differently and took 23x as long)."""
    rng = np.random.default_rng(13)
    shape = (700, 9)
    a = rng.random(shape) if name == "binary_cross_entropy" else rng.standard_normal(shape) * 6
    y = rng.random(shape)
    if kw.get("log_target"):
        y = np.log(y)
    a, y = a.astype(dtype), y.astype(dtype)
    kw = {k: (rng.uniform(0.2, 2, shape[-1]) if v == "last" else v) for k, v in kw.items()}
    fn = getattr(fx, name)
    dense = fn(a, y, reduction="none", return_grad=True, **kw)
    for a2, y2 in ((np.asfortranarray(a), y), (a, np.asfortranarray(y)),
                   (np.repeat(a, 2, axis=1)[:, ::2], y)):
        mixed = fn(a2, y2, reduction="none", return_grad=True, **kw)
        for m, d in zip(mixed, dense):
            np.testing.assert_array_equal(m, d)
        np.testing.assert_allclose(fn(a2, y2, reduction="sum", **kw),
                                   fn(a, y, reduction="sum", **kw), rtol=1e-12)
