"""grad_out=: writing the gradient into a caller's buffer, including the input itself."""
import numpy as np
import pytest

import fastxent as fx

from layouts import LAYOUTS, with_layout

CALLS = {
    "cross_entropy": lambda x, rng: (fx.cross_entropy, rng.integers(0, x.shape[1], x.shape[0]),
                                     {"label_smoothing": 0.1}),
    "cross_entropy_weighted": lambda x, rng: (
        fx.cross_entropy, rng.integers(0, x.shape[1], x.shape[0]),
        {"label_smoothing": 0.1, "weight": rng.uniform(0.5, 2, x.shape[1])}),
    "cross_entropy_probs": lambda x, rng: (fx.cross_entropy, fx.softmax(
        rng.standard_normal(x.shape)).astype(x.dtype), {}),
    "nll_loss": lambda x, rng: (fx.nll_loss, rng.integers(0, x.shape[1], x.shape[0]), {}),
    "bce_logits": lambda x, rng: (fx.binary_cross_entropy_with_logits,
                                  rng.random(x.shape), {"pos_weight": np.array(2.0)}),
    "kl_div": lambda x, rng: (fx.kl_div, rng.random(x.shape), {}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("shape", [(37, 11), (35, 64), (33, 70)])   # CPU kernel paths: tiled
def test_grad_out_and_in_place(name, layout, dtype, shape):         # block, row, gathered block
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype(dtype)
    fn, target, kw = CALLS[name](x0, rng)
    ref_loss, ref_grad = fn(x0, target, return_grad=True, **kw)

    buf = with_layout(np.zeros_like(x0), layout)
    loss, grad = fn(x0, target, return_grad=True, grad_out=buf, **kw)
    assert grad is buf
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


    # Element-wise sums follow memory order, so compare in place with the same layout.
    x = with_layout(x0, layout)
    ref_loss, ref_grad = fn(x, target, return_grad=True, **kw)
    loss, grad = fn(x, target, return_grad=True, grad_out=x, **kw)   # in place
    assert grad is x
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(x, ref_grad)


def test_bce_in_place():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, (9, 4))
    y = rng.random((9, 4))
    ref = fx.binary_cross_entropy(p, y, return_grad=True)
    got = fx.binary_cross_entropy(p, y, return_grad=True, grad_out=p)
    np.testing.assert_array_equal(got[1], ref[1])


def test_grad_out_errors():
    x = np.zeros((4, 3))
    t = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="grad_out must have the input's shape"):
        fx.cross_entropy(x, t, return_grad=True, grad_out=np.zeros((3, 4)))
    with pytest.raises(TypeError, match="grad_out must have the input's dtype float64"):
        fx.cross_entropy(x, t, return_grad=True, grad_out=np.zeros((4, 3), np.float32))
    ro = np.zeros((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out must be writeable"):
        fx.cross_entropy(x, t, return_grad=True, grad_out=ro)
    with pytest.raises(TypeError, match="grad_out must be a NumPy array"):
        fx.cross_entropy(x, t, return_grad=True, grad_out=[[0.0] * 3] * 4)
    with pytest.raises(ValueError, match="grad_out is only used with return_grad=True"):
        fx.cross_entropy(x, t, grad_out=np.zeros((4, 3)))
    big = np.zeros((5, 3))
    with pytest.raises(ValueError, match="partial overlap"):
        fx.cross_entropy(big[:4], t, return_grad=True, grad_out=big[1:])
    q = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="must not share memory with target"):
        fx.cross_entropy(x, q, return_grad=True, grad_out=q)
    w = np.ones((4, 3))
    with pytest.raises(ValueError, match="must not share memory with weight"):
        fx.binary_cross_entropy_with_logits(x, q, weight=w, return_grad=True, grad_out=w)


@pytest.mark.parametrize("shape", [(37, 11), (33, 70)])
def test_grad_out_in_another_layout_than_the_input(shape):
    # Fortran-ordered logits with a C-ordered gradient buffer: the block kernel reads classes
    # as whole vectors but cannot keep the exponentials in the gradient.
    rng = np.random.default_rng(2)
    x = np.asfortranarray(rng.standard_normal(shape).astype(np.float32))
    t = rng.integers(0, shape[1], shape[0])
    ref_loss, ref_grad = fx.cross_entropy(x, t, return_grad=True, label_smoothing=0.1)
    buf = np.zeros(shape, np.float32)
    loss, grad = fx.cross_entropy(x, t, return_grad=True, label_smoothing=0.1, grad_out=buf)
    assert grad is buf
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 17, 40])
def test_rows_with_gaps_between_them(dtype, n):
    # Logits and gradient as column slices of wider arrays: each row's classes are adjacent
    # but the rows are not, so the block kernel's tile may read the gap (it lies inside the
    # array) but must never write it. Every C the tile takes, and the row kernel's just above.
    rng = np.random.default_rng(3)
    for c in range(1, 67):
        wide = rng.standard_normal((n, c + 5)).astype(dtype)
        x = wide[:, 2:2 + c]
        t = rng.integers(0, c, n)
        ref_loss, ref_grad = fx.cross_entropy(x.copy(), t, return_grad=True, reduction="sum")
        out = np.full((n, c + 3), 7.0, dtype)
        loss, grad = fx.cross_entropy(x, t, return_grad=True, reduction="sum",
                                      grad_out=out[:, 1:1 + c])
        np.testing.assert_array_equal(loss, ref_loss)
        np.testing.assert_array_equal(grad, ref_grad)
        np.testing.assert_array_equal(out[:, [0, c + 1, c + 2]], 7.0)

        before = wide.copy()
        loss, grad = fx.cross_entropy(x, t, return_grad=True, reduction="sum", grad_out=x)
        np.testing.assert_array_equal(loss, ref_loss)
        np.testing.assert_array_equal(x, ref_grad)
        np.testing.assert_array_equal(wide[:, [0, 1, c + 2, c + 3, c + 4]],
                                      before[:, [0, 1, c + 2, c + 3, c + 4]])
