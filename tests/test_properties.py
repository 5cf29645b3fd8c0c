"""Properties that hold for any input (hypothesis), checked without the oracle."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastxent as fx

finite = st.floats(-30, 30, allow_nan=False, width=64)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 9))


@st.composite
def logits_and_targets(draw):
    n, c = draw(shapes)
    x = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    t = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return x, t


@settings(max_examples=150, deadline=None)
@given(logits_and_targets(), st.floats(-50, 50), st.floats(0, 1))
def test_cross_entropy_is_shift_invariant(case, shift, eps):
    x, t = case
    a = fx.cross_entropy(x, t, label_smoothing=eps, reduction="none")
    b = fx.cross_entropy(x + shift, t, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(a, b, atol=1e-9 * (1 + abs(shift)))


@settings(max_examples=150, deadline=None)
@given(logits_and_targets(), st.floats(0, 1),
       hnp.arrays(np.float64, 9, elements=st.floats(0.1, 3)))
def test_gradient_rows_sum_to_zero(case, eps, w):
    x, t = case
    _, g = fx.cross_entropy(x, t, weight=w[:x.shape[1]], label_smoothing=eps,
                            reduction="sum", return_grad=True)
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-12 * (1 + np.abs(g).max()))


@settings(max_examples=150, deadline=None)
@given(logits_and_targets(), st.floats(0, 1))
def test_one_hot_probabilities_equal_class_indices(case, eps):
    x, t = case
    onehot = np.eye(x.shape[1])[t]
    a, ga = fx.cross_entropy(x, t, label_smoothing=eps, reduction="sum", return_grad=True)
    b, gb = fx.cross_entropy(x, onehot, label_smoothing=eps, reduction="sum",
                             return_grad=True)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ga, gb, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(logits_and_targets())
def test_cross_entropy_is_nll_of_log_softmax_and_softmax_sums_to_one(case):
    x, t = case
    np.testing.assert_allclose(fx.cross_entropy(x, t, reduction="none"),
                               fx.nll_loss(fx.log_softmax(x), t, reduction="none"),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fx.softmax(x).sum(axis=-1), 1.0, rtol=1e-13)
    assert (fx.logsumexp(x) >= x.max(axis=-1)).all()


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 20), elements=finite),
       st.floats(0, 1))
def test_bce_with_logits_symmetry(x, y):
    a = fx.binary_cross_entropy_with_logits(x, np.full_like(x, y), reduction="none")
    b = fx.binary_cross_entropy_with_logits(-x, np.full_like(x, 1 - y), reduction="none")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # On probabilities the same loss agrees where 1 - sigmoid(x) keeps its digits.
    x = np.clip(x, -15, 15)
    p = fx.softmax(np.stack([np.zeros_like(x), x]), axis=0)[1]
    np.testing.assert_allclose(
        fx.binary_cross_entropy(p, np.full_like(x, y), reduction="none"),
        fx.binary_cross_entropy_with_logits(x, np.full_like(x, y), reduction="none"),
        rtol=1e-8, atol=1e-9)
