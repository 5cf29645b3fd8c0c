"""Inputs of more than 2**31 elements, as zero-stride views: 64-bit indices, no dense copy.

Every row (or element) of such a view is the same few numbers, so the exact answer is the
answer for one row, computed in float64. tracemalloc (which NumPy reports to) bounds what
a call allocates: O(rows) is allowed, O(elements) would be 12 GB.
"""
import tracemalloc

import numpy as np
import pytest

import fastxent as fx

C = 1000
N = 3 * 2**30 // C                   # 3.2e9 logits: past 2**31 and 2**32 / 2
ROW = np.random.default_rng(0).normal(size=C).astype(np.float32)
X = np.broadcast_to(ROW, (N, C))
T = np.broadcast_to(np.int64(7), (N,))
ROW64 = ROW[None].astype(np.float64)
BYTES_PER_ROW = 24                   # float64 row losses + int64 targets + slack


def run_bounded(call, bound):
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < bound, f"allocated {peak / 1e6:.0f} MB"
    return result


@pytest.mark.parametrize("name,call,expected", [
    ("cross_entropy mean", lambda: fx.cross_entropy(X, T),
     lambda: fx.cross_entropy(ROW64, np.array([7]))),
    ("cross_entropy smoothing", lambda: fx.cross_entropy(X, T, label_smoothing=0.1,
                                                         reduction="sum"),
     lambda: N * fx.cross_entropy(ROW64, np.array([7]), label_smoothing=0.1)),
    ("cross_entropy probabilities",
     lambda: fx.cross_entropy(X, np.broadcast_to(np.float32(1 / C), X.shape)),
     lambda: fx.cross_entropy(ROW64, np.full((1, C), 1 / C))),
    ("nll_loss sum", lambda: fx.nll_loss(X, T, reduction="sum"),
     lambda: -N * ROW64[0, 7]),
    ("logsumexp", lambda: fx.logsumexp(X, axis=1)[[0, N // 2, N - 1]],
     lambda: np.repeat(fx.logsumexp(ROW64, axis=1), 3)),
])
def test_class_axis_past_2_31(name, call, expected):
    got = run_bounded(call, BYTES_PER_ROW * N + 50e6)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected(), rtol=2e-6)


def test_per_row_losses_past_2_31():
    got = run_bounded(lambda: fx.cross_entropy(X, T, reduction="none"), 40 * N + 50e6)
    assert got.shape == (N,)
    expected = fx.cross_entropy(ROW64, np.array([7]), reduction="none")[0]
    np.testing.assert_allclose(got[[0, 1, N // 3, N - 1]], expected, rtol=1e-6)


@pytest.mark.parametrize("name,call,expected", [
    ("binary_cross_entropy_with_logits",
     lambda x: fx.binary_cross_entropy_with_logits(x, np.broadcast_to(np.float32(1), x.shape)),
     lambda r: fx.binary_cross_entropy_with_logits(r, np.ones_like(r))),
    ("kl_div", lambda x: fx.kl_div(x, np.broadcast_to(np.float32(0.5), x.shape)),
     lambda r: fx.kl_div(r, np.full_like(r, 0.5))),
])
def test_elementwise_past_2_31(name, call, expected):
    x = X[: 2**31 // C + 1]          # the smallest past 2**31, to keep CI time down
    got = run_bounded(lambda: call(x), 50e6)
    np.testing.assert_allclose(float(got), float(expected(ROW64)), rtol=2e-6)
