"""Rows that lie back to back (a C-ordered (N, C) array, C <= 64) run through fx_packed_index
(class-index targets), fx_packed_prob (probability targets laid out alike) and
fx_packed_transform (logsumexp, softmax, log_softmax), one call per thread; the same rows as a view whose rows do not lie back to back run through the block
kernels' groups. Both must give every row the same results, bit for bit, whatever the row count
(blocks of 16 and pairs of them, with tails), the options, the gradient's scale per row, or an
output written over the logits."""
import numpy as np
import pytest

import fastxent as fx
from fastxent._cpu import _softmax

OPTIONS = {
    "plain": {},
    "smoothing_weight": {"label_smoothing": 0.15, "weight": "random"},
    "weight": {"weight": "random"},
    "tiny_weight": {"weight": "tiny"},
}


def _problem(n, C, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, C)) * 5).astype(dtype)
    t = rng.integers(0, C, n)
    if n > 3:
        t[[1, n - 2]] = -100
        x[2, 0] = np.nan
        x[3] = -np.inf
    if n > 5:
        x[5, C // 2] = np.inf
        x[4, -1] = 1e30
    return rng, x, t


def _strided(x):
    # The same values, each row followed by three unused elements: rows not back to back.
    wide = np.zeros((x.shape[0], x.shape[1] + 3), x.dtype)
    wide[:, :x.shape[1]] = x
    return wide[:, :x.shape[1]]


def _kwargs(name, C, t, rng):
    kw = dict(OPTIONS[name])
    if kw.get("weight") == "random":
        kw["weight"] = rng.random(C) + 0.5
    elif kw.get("weight") == "tiny":
        # a row whose gradient scale is too small for the float lanes' split
        kw["weight"] = np.where(np.arange(C) == max(t[0], 0), 1e-35, 1.0)
    return kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 2, 7, 10, 16, 17, 64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 32, 33, 70])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_packed_rows_match_the_group_route(n, C, dtype, option):
    rng, x, t = _problem(n, C, dtype, seed=n * 100 + C)
    kw = _kwargs(option, C, t, rng)
    for reduction in ("mean", "none"):
        loss, grad = fx.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
        sloss, sgrad = fx.cross_entropy(_strided(x), t, reduction=reduction, return_grad=True,
                                        **kw)
        np.testing.assert_array_equal(loss, sloss)
        np.testing.assert_array_equal(grad, sgrad)
        np.testing.assert_array_equal(fx.cross_entropy(x, t, reduction=reduction, **kw), sloss)


def _targets(rng, n, C, dtype):
    # Probability targets, one row of zeros (a row that adds nothing).
    q = rng.random((n, C)).astype(dtype)
    q /= q.sum(axis=1, keepdims=True)
    if n > 7:
        q[7] = 0
    return q


def _either_targets(kind, n, C, dtype, seed):
    # Logits with class indices (fx_packed_index) or probability targets (fx_packed_prob).
    rng, x, t = _problem(n, C, dtype, seed)
    return rng, x, (t if kind == "index" else _targets(rng, n, C, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 10, 16, 40])
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_packed_rows_with_a_gradient_scale_per_row_and_in_place(kind, C, dtype):
    rng, x, t = _either_targets(kind, 53, C, dtype, seed=C)
    go = rng.standard_normal(53)
    loss, grad = fx.cross_entropy(x, t, reduction="none", grad_output=go, return_grad=True)
    sloss, sgrad = fx.cross_entropy(_strided(x), t, reduction="none", grad_output=go,
                                    return_grad=True)
    np.testing.assert_array_equal(loss, sloss)
    np.testing.assert_array_equal(grad, sgrad)
    # the gradient written over the logits, scaled by a broadcast grad_output
    mean_loss, mean_grad = fx.cross_entropy(x, t, return_grad=True)
    y = x.copy()
    in_loss, in_grad = fx.cross_entropy(y, t, return_grad=True, grad_out=y)
    assert in_grad is y
    np.testing.assert_array_equal(in_loss, mean_loss)
    np.testing.assert_array_equal(y, mean_grad)


@pytest.mark.parametrize("kind", ["index", "probability"])
def test_packed_rows_split_across_threads_as_one(kind):
    _, x, t = _either_targets(kind, 1001, 10, np.float32, seed=3)
    results = []
    for threads in (1, 2):
        fx.set_num_threads(threads)
        try:
            results.append(fx.cross_entropy(x, t, reduction="none", return_grad=True))
        finally:
            fx.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 2, 7, 10, 16, 17, 64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 70])
@pytest.mark.parametrize("option", ["plain", "smoothing_weight"])
def test_packed_probability_rows_match_the_group_route(n, C, dtype, option):
    rng, x, t = _problem(n, C, dtype, seed=n * 100 + C + 7)
    q = _targets(rng, n, C, dtype)
    kw = _kwargs(option, C, t, rng)
    for reduction in ("mean", "none"):
        loss, grad = fx.cross_entropy(x, q, reduction=reduction, return_grad=True, **kw)
        # the logits with gaps between rows, then the targets: either sends the rows through
        # the groups
        for sx, sq in ((_strided(x), q), (x, _strided(q))):
            sloss, sgrad = fx.cross_entropy(sx, sq, reduction=reduction, return_grad=True,
                                            **kw)
            np.testing.assert_array_equal(loss, sloss)
            np.testing.assert_array_equal(grad, sgrad)
        np.testing.assert_array_equal(fx.cross_entropy(x, q, reduction=reduction, **kw), sloss)


TRANSFORMS = ("logsumexp", "softmax", "log_softmax")


@pytest.mark.parametrize("C", range(1, 17))
def test_every_class_count_up_to_16_matches_the_group_route(C):
    # The AVX-512 float build compiles the packed cross entropy and logsumexp apart for each
    # class count up to 16; each of those functions (and the probability targets' packed
    # rows) against the group route, with a pair of blocks and a tail.
    rng, x, t = _problem(35, C, np.float32, seed=1000 + C)
    for option in ("plain", "smoothing_weight"):
        kw = _kwargs(option, C, t, rng)
        loss, grad = fx.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
        sloss, sgrad = fx.cross_entropy(_strided(x), t, reduction="none", return_grad=True,
                                        **kw)
        np.testing.assert_array_equal(loss, sloss)
        np.testing.assert_array_equal(grad, sgrad)
        np.testing.assert_array_equal(fx.cross_entropy(x, t, reduction="none", **kw), sloss)
        q = _targets(rng, 35, C, np.float32)
        loss, grad = fx.cross_entropy(x, q, reduction="none", return_grad=True, **kw)
        sloss, sgrad = fx.cross_entropy(_strided(x), q, reduction="none", return_grad=True,
                                        **kw)
        np.testing.assert_array_equal(loss, sloss)
        np.testing.assert_array_equal(grad, sgrad)
    for name in TRANSFORMS:
        f = getattr(fx, name)
        np.testing.assert_array_equal(f(x, axis=1), f(_strided(x), axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 2, 7, 10, 16, 17, 64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 32, 33, 70])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_packed_transform_matches_the_group_route(n, C, dtype, name):
    _, x, _ = _problem(n, C, dtype, seed=n * 100 + C)
    if n > 6:
        x[6] = -np.inf
        x[6, 0] = np.nan    # a row of -inf holding a NaN: logsumexp settles it to NaN
    f = getattr(fx, name)
    np.testing.assert_array_equal(f(x, axis=1), f(_strided(x), axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 10, 16, 40])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_packed_transform_written_over_its_input(C, dtype, name):
    # The kernel's contract allows the output to be the input's buffer (the Python layer
    # allocates a fresh one); every block is read whole before it is written.
    _, x, _ = _problem(53, C, dtype, seed=C)
    expected = getattr(fx, name)(x, axis=1)
    y = x.copy()
    y3 = y.reshape(53, C, 1)
    getattr(_softmax, name)(y3, y3, 2)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_packed_transform_split_across_threads_as_one(name):
    _, x, _ = _problem(1001, 10, np.float32, seed=4)
    results = []
    for threads in (1, 2):
        fx.set_num_threads(threads)
        try:
            results.append(getattr(fx, name)(x, axis=1))
        finally:
            fx.set_num_threads(None)
    np.testing.assert_array_equal(*results)
