"""An infinite upstream gradient (``grad_output`` of ±inf) gives PyTorch's gradient: its NaNs
and infinities in the same places.

PyTorch's backward runs the loss's gradient and the softmax's as two steps, ``g`` with
respect to the log-probabilities and then ``g - p * sum(g)``, and with an infinite ``g`` the
second step makes ``inf - inf``: NaN at the target class, a whole NaN row with label
smoothing or probability targets. The fused kernels form ``scale * (p - y)`` instead; rows
whose scale is infinite are given PyTorch's two steps.
"""
import numpy as np
import pytest

import fastxent as fx
import oracle
from cases import assert_close
from layouts import with_layout

INF = np.inf


def _upstream(rng, reduction, rows, sign):
    if reduction != "none":
        return sign * INF
    go = rng.uniform(0.5, 2.0, rows)
    go[::2] = sign * INF                    # some rows infinite, some finite
    if rows > 3:
        go[3] = np.nan
    return go


def _problem(rng, C, dtype, probs, ignore, rows=7):
    x = (rng.standard_normal((rows, C)) * 3).astype(dtype)
    x[1, C // 2] = -np.inf                  # a masked class: p = 0 there
    if probs:
        return x, fx.softmax(rng.standard_normal((rows, C)))
    t = rng.integers(0, C, rows)
    t[1] = C // 2                           # the masked class as a target: loss +inf
    if ignore:
        t[2::3] = -100
    return x, t


WEIGHTS = {
    "none": lambda rng, C: None,
    "positive": lambda rng, C: rng.uniform(0.5, 2.0, C),
    "some zero": lambda rng, C: np.where(np.arange(C) % 3 == 0, 0.0, 1.5),
    "signed": lambda rng, C: rng.uniform(-2.0, 2.0, C),
}


@pytest.mark.parametrize("C", [3, 40, 70, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["indices", "ignored", "probabilities"])
@pytest.mark.parametrize("weights", sorted(WEIGHTS))
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cross_entropy(C, dtype, target, weights, label_smoothing, reduction):
    rng = np.random.default_rng(C + len(weights))
    x, t = _problem(rng, C, dtype, target == "probabilities", target == "ignored")
    kw = {"weight": WEIGHTS[weights](rng, C), "label_smoothing": label_smoothing,
          "reduction": reduction}
    for sign in (1, -1):
        go = _upstream(rng, reduction, len(x), sign)
        loss, grad = fx.cross_entropy(x, t, return_grad=True, grad_output=go, **kw)
        want_loss, want_grad = oracle.cross_entropy(x, t, grad_output=go, **kw)
        assert_close(loss, want_loss, dtype)
        assert_close(grad, want_grad, dtype)


@pytest.mark.parametrize("layout", ["F", "strided", "permuted", "reversed"])
@pytest.mark.parametrize("C", [5, 100])
@pytest.mark.parametrize("in_place", [False, True])
def test_layouts_and_in_place(layout, C, in_place):
    """The logits are read before the kernel writes an in-place gradient over them."""
    rng = np.random.default_rng(C)
    x, t = _problem(rng, C, np.float64, False, True, rows=9)
    x3 = np.moveaxis(x.reshape(3, 3, C), 2, 1)            # (3, C, 3): class axis 1
    t3 = t.reshape(3, 3)
    go = _upstream(rng, "none", 9, 1).reshape(3, 3)
    kw = {"label_smoothing": 0.1, "reduction": "none", "weight": rng.uniform(0.5, 2, C)}
    want_loss, want_grad = oracle.cross_entropy(x3, t3, grad_output=go, **kw)
    given = with_layout(x3, layout)
    out = given if in_place else None
    loss, grad = fx.cross_entropy(given, t3, return_grad=True, grad_output=go,
                                  grad_out=out, **kw)
    assert (grad is given) == in_place
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


@pytest.mark.parametrize("axis", [0, -1])
def test_class_axis_anywhere(axis):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 4))
    t = rng.integers(0, x.shape[axis], np.delete(x.shape, axis % 3))
    go = np.where(rng.random(t.shape) < 0.5, INF, 1.0)
    loss, grad = fx.cross_entropy(x, t, axis=axis, reduction="none", return_grad=True,
                                  grad_output=go, label_smoothing=0.2)
    want_loss, want_grad = oracle.cross_entropy(x, t, axis=axis, reduction="none",
                                                grad_output=go, label_smoothing=0.2)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


def test_finite_rows_are_the_kernels_bits():
    """Rows of a finite scale are untouched by the two-step path."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 50)).astype(np.float32)
    t = rng.integers(0, 50, 8)
    go = rng.uniform(0.5, 2, 8)
    finite = fx.cross_entropy(x, t, reduction="none", return_grad=True, grad_output=go)[1]
    go[[1, 5]] = INF
    grad = fx.cross_entropy(x, t, reduction="none", return_grad=True, grad_output=go)[1]
    keep = np.ones(8, bool)
    keep[[1, 5]] = False
    np.testing.assert_array_equal(grad[keep], finite[keep])
    assert np.isnan(grad[1, t[1]]) and np.isinf(np.delete(grad[1], t[1])).all()


def test_dask_blocks_of_whole_rows():
    da = pytest.importorskip("dask.array")
    import fastxent.dask as fxd
    rng = np.random.default_rng(5)
    x, t = _problem(rng, 12, np.float64, False, True, rows=10)
    go = _upstream(rng, "none", 10, -1)
    kw = {"label_smoothing": 0.0, "reduction": "none"}
    loss, grad = fxd.cross_entropy(da.from_array(x, chunks=(4, 12)), t, return_grad=True,
                                   grad_output=go, **kw)
    want_loss, want_grad = oracle.cross_entropy(x, t, grad_output=go, **kw)
    assert_close(loss.compute(), want_loss, np.float64)
    assert_close(grad.compute(), want_grad, np.float64)


@pytest.mark.parametrize("in_place", [False, True])
def test_rows_in_groups(monkeypatch, in_place):
    """Many rows are recomputed a group at a time (small groups here), in place too."""
    from fastxent import _infinite_scale
    monkeypatch.setattr(_infinite_scale, "_GROUP", 64)      # 6 rows of 10 classes a group
    rng = np.random.default_rng(6)
    x, t = _problem(rng, 10, np.float32, False, True, rows=50)
    kw = {"label_smoothing": 0.0, "reduction": "sum"}
    want_loss, want_grad = oracle.cross_entropy(x, t, grad_output=INF, **kw)
    given = x.copy()
    loss, grad = fx.cross_entropy(given, t, return_grad=True, grad_output=INF,
                                  grad_out=given if in_place else None, **kw)
    assert_close(loss, want_loss, np.float32)
    assert_close(grad, want_grad, np.float32)


@pytest.mark.parametrize("target", ["indices", "probabilities"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dask_blocks_that_split_the_classes(target, label_smoothing, reduction):
    da = pytest.importorskip("dask.array")
    import fastxent.dask as fxd
    rng = np.random.default_rng(7)
    x, t = _problem(rng, 12, np.float64, target == "probabilities", True, rows=10)
    go = _upstream(rng, reduction, 10, 1)
    kw = {"label_smoothing": label_smoothing, "reduction": reduction,
          "weight": rng.uniform(0.5, 2, 12)}
    given = da.from_array(x, chunks=(4, 5))
    tt = t if target == "indices" else da.from_array(t, chunks=(4, 5))
    loss, grad = fxd.cross_entropy(given, tt, return_grad=True, grad_output=go, **kw)
    want_loss, want_grad = oracle.cross_entropy(x, t, grad_output=go, **kw)
    assert_close(loss.compute(), want_loss, np.float64)
    assert_close(grad.compute(), want_grad, np.float64)
