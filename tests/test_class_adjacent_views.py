"""(N, C, d1...dK) views whose classes are adjacent in memory -- PyTorch's
``logits.transpose(1, 2)`` of class-last (N, L, C) logits -- hold C-ordered rows. They run
through the kernels that C-ordered (N*L, C) rows take (fx_packed.inc up to 64 classes when
the rows lie back to back, fx_row.inc above) and give those rows' results bit for bit,
whatever the layout of the gradient, target, gradient scale or output beside them."""
import numpy as np
import pytest

import fastxent as fx
import oracle
from cases import assert_same

# (N, L, C): packed rows (C <= 64), C just past the packed rows' 64 classes, past the
# grouped rows' 256, and long rows
SHAPES = [(3, 37, 10), (2, 33, 64), (2, 7, 65), (3, 5, 300), (1, 3, 5000)]
DTYPES = [np.float32, np.float64]


def _problem(shape, dtype, seed=0):
    """Class-last logits with awkward values, their (N, C, L) view and class-index targets."""
    n, length, C = shape
    rng = np.random.default_rng(seed)
    rows = (rng.standard_normal(shape) * 4).astype(dtype)
    rows[0, 1, :] = -np.inf
    rows[0, 1, C // 3] = 2.0
    rows[-1, -1, 0] = np.inf
    rows[-1, 0, 1] = 1e30
    t = rng.integers(0, C, (n, length))
    t[0, 2] = -100
    return rng, rows, rows.transpose(0, 2, 1), t


def _grad_layouts(view):
    """grad_out arrays for a (N, C, L) view: its own layout, C order, the view itself."""
    return {"as_input": np.empty_like(view), "c_order": np.empty(view.shape, view.dtype)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("option", ["plain", "smoothing_weight"])
def test_class_index_view_matches_rows(shape, dtype, option):
    rng, rows, view, t = _problem(shape, dtype)
    kw = {}
    if option == "smoothing_weight":
        kw = {"label_smoothing": 0.15, "weight": rng.random(shape[2]) + 0.5}
    flat, tflat = rows.reshape(-1, shape[2]), t.reshape(-1)
    # a scale per row, C-ordered and Fortran-ordered (not one step apart in row order)
    go = rng.random(t.shape) + 0.5
    for red, gos in (("none", (go, np.asfortranarray(go))), ("mean", (None,)),
                     ("sum", (None, 2.5))):
        for g_o in gos:
            want_loss, want_grad = fx.cross_entropy(
                flat, tflat, reduction=red, return_grad=True,
                grad_output=np.reshape(g_o, -1) if red == "none" else g_o, **kw)
            loss, grad = fx.cross_entropy(view, t, reduction=red, return_grad=True,
                                          grad_output=g_o, **kw)
            assert_same(loss, want_loss.reshape(t.shape) if red == "none" else want_loss)
            assert_same(grad.transpose(0, 2, 1).reshape(flat.shape), want_grad)
            assert_same(fx.cross_entropy(view, t, reduction=red, **kw), loss)
            for name, out in _grad_layouts(view).items():
                got = fx.cross_entropy(view, t, reduction=red, return_grad=True, grad_out=out,
                                       grad_output=g_o, **kw)
                assert got[1] is out, name
                assert_same(out, grad)
    # The gradient written over the logits, read before anything is written.
    over = rows.copy().transpose(0, 2, 1)
    loss, grad = fx.cross_entropy(view, t, return_grad=True, **kw)
    got = fx.cross_entropy(over, t, return_grad=True, grad_out=over, **kw)
    assert_same(got[0], loss)
    assert_same(over, grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_probability_view_matches_rows(shape, dtype):
    rng, rows, view, _ = _problem(shape, dtype, seed=1)
    q = rng.random(shape).astype(dtype)
    q /= q.sum(-1, keepdims=True)
    flat, qflat = rows.reshape(-1, shape[2]), q.reshape(-1, shape[2])
    want_loss, want_grad = fx.cross_entropy(flat, qflat, reduction="none", return_grad=True,
                                            label_smoothing=0.1)
    # targets laid out as the logits, and C-ordered (N, C, L) targets
    for qv in (q.transpose(0, 2, 1), np.ascontiguousarray(q.transpose(0, 2, 1))):
        for name, out in _grad_layouts(view).items():
            loss, grad = fx.cross_entropy(view, qv, reduction="none", return_grad=True,
                                          label_smoothing=0.1, grad_out=out)
            assert_same(loss, want_loss.reshape(shape[:2]))
            assert_same(grad.transpose(0, 2, 1).reshape(flat.shape), want_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_transforms_of_view_match_rows(shape, dtype):
    _, rows, view, _ = _problem(shape, dtype, seed=2)
    flat = rows.reshape(-1, shape[2])
    for fn in (fx.softmax, fx.log_softmax):
        want = fn(flat, axis=1).reshape(shape).transpose(0, 2, 1)
        got = fn(view, axis=1)
        assert_same(got, want)
        assert got.strides == np.empty_like(view).strides
    assert_same(fx.logsumexp(view, axis=1), fx.logsumexp(flat, axis=1).reshape(shape[:2]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_view_matches_pytorch(dtype):
    """The transposed class-last logits of a language model, as PyTorch takes them."""
    _, rows, view, t = _problem((2, 16, 1000), dtype, seed=3)
    rows[0, 1, :] = 0.5       # finite rows for the oracle's gradient
    rows[-1, -1, 0] = 30.0
    rows[-1, 0, 1] = 60.0
    kw = {"label_smoothing": 0.1}
    want_loss, want_grad = oracle.cross_entropy(view, t, **kw)
    loss, grad = fx.cross_entropy(view, t, return_grad=True, **kw)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * np.abs(want_grad).max())


@pytest.mark.parametrize("layout", ["F", "class_adjacent", "strided", "reversed"])
@pytest.mark.parametrize("fn", [fx.cross_entropy, fx.nll_loss])
def test_fresh_gradient_keeps_the_input_layout(layout, fn):
    """A fresh gradient is laid out as the input, as NumPy's element-wise results (and
    this library's softmax and binary losses) are."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6, 9, 70)).astype(np.float32)
    x = {"F": np.asfortranarray(base[:, :, 0]),
         "class_adjacent": base.transpose(0, 2, 1),
         "strided": base[:, ::2, ::3],
         "reversed": base[::-1, :, ::-1]}[layout]
    t = rng.integers(0, x.shape[1], (x.shape[0],) + x.shape[2:])
    loss, grad = fn(x, t, return_grad=True)
    assert grad.strides == np.empty_like(x).strides
    want_loss, want_grad = fn(np.ascontiguousarray(x), t, return_grad=True)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
