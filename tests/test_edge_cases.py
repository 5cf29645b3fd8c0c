"""Edge cases of PyTorch's semantics (ignored targets, empty batches, infinities, NaN,
huge logits), each checked against the oracle."""
import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, class_target, upstream, with_non_finite_rows
from layouts import LAYOUTS, with_layout

X = np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]])


def _both(x, t, dtype=np.float64, **kw):
    ref = oracle.cross_entropy(np.asarray(x, np.float64), t, **kw)
    got = fx.cross_entropy(np.asarray(x, dtype), t, return_grad=True, **kw)
    assert_close(got[0], ref[0], dtype)
    assert_close(got[1], ref[1], dtype)
    return got


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2},
                                {"weight": np.array([1, 2, 0.5])},
                                {"weight": np.array([1, 2, 0.5]), "label_smoothing": 0.2}])
def test_every_target_ignored(kw):
    t = np.array([-100, -100])
    loss, grad = _both(X, t, **kw)
    assert np.isnan(loss)
    np.testing.assert_array_equal(grad, 0.0)
    assert fx.cross_entropy(X, t, reduction="sum", **kw) == 0
    np.testing.assert_array_equal(fx.cross_entropy(X, t, reduction="none", **kw), [0, 0])
    loss, grad = fx.nll_loss(X, t, return_grad=True)
    assert np.isnan(loss) and not grad.any()


def test_empty_batch():
    x, t = np.zeros((0, 4)), np.zeros(0, np.int64)
    loss, grad = fx.cross_entropy(x, t, return_grad=True)
    assert np.isnan(loss) and grad.shape == (0, 4)
    assert fx.cross_entropy(x, t, reduction="sum") == 0
    assert fx.cross_entropy(x, t, reduction="none").shape == (0,)
    assert np.isnan(fx.binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0)))
    assert np.isnan(fx.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean"))


EMPTY_CLASS_SHAPES = [(0, 4), (3, 4, 0), (0, 4, 2), (2, 4, 0, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"weight": np.array([1, 2, 0.5, 3])},
                                {"weight": np.array([1, 2, 0.5, 3]), "label_smoothing": 0.1},
                                {"ignore_index": 1}])
@pytest.mark.parametrize("shape", EMPTY_CLASS_SHAPES)
@pytest.mark.parametrize("targets", ["index", "probabilities"])
def test_empty_batches_of_every_class_layout(targets, shape, kw, reduction, dtype):
    x = np.zeros(shape, dtype)
    if targets == "index":
        t = np.zeros(shape[:1] + shape[2:], np.int64)
    else:
        t = np.zeros(shape, dtype)
        kw = {k: v for k, v in kw.items() if k != "ignore_index"}
    for name in ("cross_entropy", "nll_loss") if targets == "index" else ("cross_entropy",):
        options = {k: v for k, v in kw.items()
                   if name == "cross_entropy" or k != "label_smoothing"}
        ref = getattr(oracle, name)(x, t, reduction=reduction, **options)
        got = getattr(fx, name)(x, t, reduction=reduction, return_grad=True, **options)
        assert_close(got[0], ref[0], dtype)
        assert_close(got[1], ref[1], dtype)
        assert got[1].dtype == dtype


@pytest.mark.filterwarnings("ignore::UserWarning")    # torch's warning about kl_div's "mean"
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 3)])
def test_empty_batches_of_the_elementwise_losses(shape, reduction):
    x = np.zeros(shape)
    w = np.ones(shape[-1:])
    cases = [("binary_cross_entropy", {"weight": w}),
             ("binary_cross_entropy_with_logits", {"weight": w, "pos_weight": w}),
             ("kl_div", {}), ("kl_div", {"log_target": True})]
    for name, options in cases:
        if reduction == "batchmean" and name != "kl_div":
            continue
        ref = getattr(oracle, name)(x, x, reduction=reduction, **options)
        got = getattr(fx, name)(x, x, reduction=reduction, return_grad=True, **options)
        assert_close(got[0], ref[0], np.float64)
        assert_close(got[1], ref[1], np.float64)


def test_zero_weight_of_every_present_class_is_nan_like_torch():
    w = np.array([0.0, 1.0, 1.0])
    for kw in ({}, {"label_smoothing": 0.1}):
        loss, grad = _both(X, np.array([0, 0]), weight=w, **kw)
        assert np.isnan(loss) and np.isnan(grad).all()
    ref = oracle.nll_loss(X, np.array([0, 0]), weight=w)
    got = fx.nll_loss(X, np.array([0, 0]), weight=w, return_grad=True)
    assert_close(got[1], ref[1], np.float64)


def test_ignore_index_inside_and_outside_the_classes():
    _both(X, np.array([0, 1]), ignore_index=1)
    _both(X, np.array([0, 3]), ignore_index=3)
    _both(X, np.array([0, 3]), ignore_index=3, label_smoothing=0.3,
          weight=np.array([1, 2, 0.5]))
    _both(X, np.array([0, 2]), ignore_index=0, weight=np.array([1, 2, 0.5]))


def test_negative_weight_and_label_smoothing_one():
    _both(X, np.array([0, 2]), weight=np.array([-1.0, 1, 1]), reduction="none")
    loss, _ = _both(X, np.array([0, 2]), label_smoothing=1.0, reduction="none")
    np.testing.assert_allclose(loss, [2.4618070, 1.5573414], atol=1e-7)


@pytest.mark.parametrize("case", ["non-target", "target", "non-target+ls", "all-ignored",
                                  "nan-ignored", "all-not-ignored", "plus-inf-target"])
def test_infinite_and_nan_logits_match_torch(case):
    x, t, kw = X.copy(), np.array([0, 2]), {}
    if case == "non-target":
        x[0, 1] = -np.inf
    elif case == "target":
        x[0, 0] = -np.inf
    elif case == "non-target+ls":
        x[0, 1], kw = -np.inf, {"label_smoothing": 0.1}
    elif case == "all-ignored":
        x[1], t = -np.inf, np.array([0, -100])
    elif case == "nan-ignored":
        x[1, 1], t = np.nan, np.array([0, -100])
    elif case == "all-not-ignored":
        x[1] = -np.inf
    elif case == "plus-inf-target":
        x[0, 0] = np.inf
    for reduction in ("none", "mean", "sum"):
        _both(x, t, reduction=reduction, **kw)


def test_probability_target_zero_at_minus_inf_is_nan_like_torch():
    x = X.copy()
    x[0, 1] = -np.inf
    q = np.array([[0.7, 0.0, 0.3], [0.2, 0.3, 0.5]])
    loss, grad = _both(x, q, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(grad).all()


def test_unnormalised_and_negative_probability_targets():
    _both(X, np.array([[2.0, 0, 0], [0, 0, 0]]), reduction="none")
    _both(X, np.array([[1.5, -0.5, 0], [0.2, 0.3, 0.5]]), reduction="none")


def test_huge_logits_are_stable():
    loss = fx.cross_entropy(np.array([[1e4, 0, -1e4]], np.float32), np.array([2]))
    assert loss == np.float32(20000.0)
    loss16 = fx.cross_entropy(np.array([[60000, 0, -60000]], np.float16), np.array([1]))
    assert loss16.dtype == np.float16 and loss16 == np.float16(60000.0)
    big = np.full((1, 50257), 0.0, np.float32)
    np.testing.assert_allclose(fx.cross_entropy(big, np.array([7])), np.log(50257),
                               rtol=1e-7)


def test_single_class_is_zero_loss():
    loss, grad = fx.cross_entropy(np.array([[2.0], [-3.0]]), np.array([0, 0]),
                                  return_grad=True)
    assert loss == 0 and not grad.any()


def test_unbatched_input_takes_scalar_and_length_one_targets():
    a = fx.cross_entropy(X[0], np.array(0), reduction="none")
    b = fx.cross_entropy(X[0], np.array([0]), reduction="none")
    assert a.shape == b.shape == ()
    np.testing.assert_allclose(a, 0.0951404, atol=1e-7)


def test_nll_on_raw_logits_is_not_checked():
    np.testing.assert_allclose(fx.nll_loss(X, np.array([0, 2]), reduction="none"),
                               [-3.2, 0.1])


def test_kl_div_nan_cases_match_torch():
    x = np.log(np.array([0.2, 0.5, 0.3]))
    for t, lt in ((np.array([-0.1, 0.5, 0.6]), False), (np.array([-np.inf, 0.0, -1.0]), True),
                  (np.array([0.0, 0.5, 0.5]), False)):
        ref = oracle.kl_div(x, t, reduction="none", log_target=lt)
        got = fx.kl_div(x, t, reduction="none", log_target=lt, return_grad=True)
        assert_close(got[0], ref[0], np.float64)
        assert_close(got[1], ref[1], np.float64)


# Batches of rows with every kind of non-finite row, some of them ignored, through each
# cross-entropy kernel path: class indices a lane per row up to 64 classes (tiled, direct,
# gathered, the (N, C, d) layout) and a row at a time beyond, probability targets a row at a
# time; with a partial last group in each.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(40, 10), (37, 65), (33, 200), (3, 12, 18)])
@pytest.mark.parametrize("options", ["plain", "smoothed+weighted"])
@pytest.mark.parametrize("probs", [False, True])
def test_batches_with_non_finite_rows(shape, layout, dtype, options, probs):
    rng = np.random.default_rng(4)
    C = shape[1]
    x = with_layout(with_non_finite_rows(rng.standard_normal(shape) * 5, 1).astype(dtype),
                    layout)
    if probs:
        t = class_target(rng, shape, 1, probs=True).astype(dtype)
    else:
        t = class_target(rng, shape, 1, ignore_index=-100)
        flat = t.reshape(-1)          # rows in the order with_non_finite_rows numbers them
        flat[[1, 4, 6, 9]] = rng.integers(0, C, 4)
        flat[[11, 12]] = -100         # an ignored NaN row, an ignored finite one
    kw = {}
    if options != "plain":
        kw = {"label_smoothing": 0.2, "weight": rng.uniform(0.2, 2.0, C)}
    go = upstream(rng, "none", x.shape[:1] + x.shape[2:])
    ref = oracle.cross_entropy(np.asarray(x, np.float64), t, reduction="none", grad_output=go,
                               **kw)
    got = fx.cross_entropy(x, t, reduction="none", return_grad=True, grad_output=go, **kw)
    assert_close(got[0], ref[0], dtype)
    assert_close(got[1], ref[1], dtype)
    np.testing.assert_array_equal(fx.cross_entropy(x, t, reduction="none", **kw), got[0])


# A class weight enters a row only as its target's weight, or through label smoothing; so an
# infinite or NaN weight of a class no row targets leaves the loss and gradient finite without
# smoothing (as in PyTorch), where 0 * inf in a smoothing term would spread NaN.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(40, 10), (37, 65), (33, 200), (3, 12, 18), (5, 3000)])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_a_non_finite_weight_of_a_class_no_row_targets(shape, layout, dtype, bad, eps):
    rng = np.random.default_rng(5)
    C = shape[1]
    x = with_layout((rng.standard_normal(shape) * 3).astype(dtype), layout)
    t = class_target(rng, shape, 1, ignore_index=-100)
    t[t == 2] = 3
    w = rng.uniform(0.5, 2.0, C)
    w[2] = bad
    for reduction in ("none", "mean", "sum"):
        go = upstream(rng, reduction, x.shape[:1] + x.shape[2:])
        ref = oracle.cross_entropy(np.asarray(x, np.float64), t, weight=w, label_smoothing=eps,
                                   reduction=reduction, grad_output=go)
        got = fx.cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction,
                               return_grad=True, grad_output=go)
        assert_close(got[0], ref[0], dtype)
        assert_close(got[1], ref[1], dtype)
        if eps == 0:
            assert np.isfinite(got[1]).all()
