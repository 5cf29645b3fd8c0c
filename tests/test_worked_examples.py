"""The worked examples this project started from, and PyTorch's verified golden values
(shared/reference/semantics.md, section 2 and the (2, 3, 2) fixture)."""
import numpy as np
import pytest

import fastxent as fx

SEED3_X = np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]])
SEED3_T = np.array([0, 2])


def test_seed1_probability_vectors():
    p = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]])
    t = np.array([0, 0])
    none = fx.nll_loss(np.log(p), t, reduction="none")
    np.testing.assert_allclose(none, [0.6931471805599453, 0.2231435513142097], rtol=1e-15)
    assert round(float(none[0]), 4) == 0.6931 and round(float(none[1]), 4) == 0.2231
    np.testing.assert_allclose(fx.cross_entropy(np.log(p), t), 0.45814536593707755,
                               rtol=1e-15)
    onehot = np.eye(3)[t]
    np.testing.assert_allclose(fx.cross_entropy(np.log(p), onehot, reduction="none"), none,
                               rtol=1e-15)
    _, grad = fx.cross_entropy(np.log(p), t, reduction="sum", return_grad=True)
    np.testing.assert_allclose(grad, [[-0.5, 0.4, 0.1], [-0.2, 0.1, 0.1]], atol=1e-15)


def test_seed2_bce_with_logits():
    x, y = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    loss, grad = fx.binary_cross_entropy_with_logits(x, y, return_grad=True)
    np.testing.assert_allclose(loss, 0.3047555609137673, rtol=1e-15)
    assert round(float(loss), 4) == 0.3048
    np.testing.assert_allclose(grad, [-0.0397343, 0.0896471, -0.1258469], atol=1e-7)
    loss, grad = fx.binary_cross_entropy_with_logits(x, y, pos_weight=np.array(3.0),
                                                     return_grad=True)
    np.testing.assert_allclose(loss, 0.7054255577291535, rtol=1e-15)
    assert round(float(loss), 4) == 0.7054
    np.testing.assert_allclose(grad, [-0.1192029, 0.0896471, -0.3775407], atol=1e-7)
    np.testing.assert_allclose(fx.binary_cross_entropy(1 / (1 + np.exp(-x)), y),
                               0.3047555609137674, rtol=1e-14)


@pytest.mark.parametrize("kw,none,mean", [
    ({}, [0.0951404, 2.4573414], 1.2762409008253541),
    ({"weight": np.array([1, 2, 0.5])}, [0.0951404, 1.2286707], 0.8825407254951491),
    ({"label_smoothing": 0.1}, [0.3318070, 2.3673414], 1.3495742341586876),
    ({"weight": np.array([1, 2, 0.5]), "label_smoothing": 0.1}, [0.4500594, 1.2291601],
     1.1194796819629116),
    ({"ignore_index": 2}, [0.0951404, 0.0], 0.09514037483473912),
])
def test_seed3_logits(kw, none, mean):
    np.testing.assert_allclose(fx.cross_entropy(SEED3_X, SEED3_T, reduction="none", **kw),
                               none, atol=1e-7)
    np.testing.assert_allclose(fx.cross_entropy(SEED3_X, SEED3_T, **kw), mean, rtol=1e-14)


def test_seed3_float32_and_gradient():
    loss = fx.cross_entropy(SEED3_X.astype(np.float32), SEED3_T)
    assert loss.dtype == np.float32
    assert round(float(loss), 4) == 1.2762
    np.testing.assert_allclose(loss, 1.2762408256530762, rtol=1e-7)
    _, grad = fx.cross_entropy(SEED3_X, SEED3_T, return_grad=True)
    np.testing.assert_allclose(grad, [[-0.0453774, 0.0041349, 0.0412424],
                                      [0.0706167, 0.3865521, -0.4571688]], atol=1e-7)


def test_idx_and_prob_targets_share_none_but_not_mean():
    w, eps = np.array([1, 2, 0.5]), 0.3
    idx = fx.cross_entropy(SEED3_X, SEED3_T, weight=w, label_smoothing=eps, reduction="none")
    prob = fx.cross_entropy(SEED3_X, np.eye(3)[SEED3_T], weight=w, label_smoothing=eps,
                            reduction="none")
    np.testing.assert_allclose(idx, [1.1598974, 1.2301390], atol=1e-7)
    np.testing.assert_allclose(prob, idx, rtol=1e-14)
    np.testing.assert_allclose(fx.cross_entropy(SEED3_X, SEED3_T, weight=w,
                                                label_smoothing=eps), 1.5933575949, rtol=1e-9)
    np.testing.assert_allclose(fx.cross_entropy(SEED3_X, np.eye(3)[SEED3_T], weight=w,
                                                label_smoothing=eps), 1.1950181962, rtol=1e-9)


GOLDEN_X = np.array([[[1.0, -0.5], [0.2, 2.0], [-1.3, 0.7]],
                     [[0.0, 3.0], [1.5, -2.0], [0.4, 0.4]]])
GOLDEN_T = np.array([[0, 2], [1, -100]])
GOLDEN_W = np.array([1.0, 2.0, 0.5])


@pytest.mark.parametrize("kw,none,mean,total", [
    ({}, [[0.4379889651, 1.6035186037], [0.4421192251, 0]], 0.827875598, 2.483626794),
    ({"weight": GOLDEN_W}, [[0.4379889651, 0.8017593019], [0.8842384503, 0]], 0.6068533478,
     2.1239867173),
    ({"label_smoothing": 0.2}, [[0.6446556318, 1.5968519371], [0.6154525585, 0]],
     0.9523200425, 2.8569601274),
    ({"weight": GOLDEN_W, "label_smoothing": 0.2},
     [[0.6359219306, 0.922228449], [0.9472185794, 0]], 0.7158197026, 2.5053689591),
])
def test_golden_2x3x2(kw, none, mean, total):
    got = fx.cross_entropy(GOLDEN_X, GOLDEN_T, reduction="none", **kw)
    np.testing.assert_allclose(got, none, atol=1e-9)
    np.testing.assert_allclose(fx.cross_entropy(GOLDEN_X, GOLDEN_T, **kw), mean, atol=1e-9)
    np.testing.assert_allclose(fx.cross_entropy(GOLDEN_X, GOLDEN_T, reduction="sum", **kw),
                               total, atol=1e-9)


def test_golden_gradients():
    _, g = fx.cross_entropy(GOLDEN_X, GOLDEN_T, weight=GOLDEN_W, label_smoothing=0.2,
                            return_grad=True)
    np.testing.assert_allclose(g, [
        [[-0.0570921903, -0.0080825431], [0.0475139974, 0.0954867329],
         [0.0095781929, -0.0874041897]],
        [[0.0560665259, 0.0], [-0.1585998529, 0.0], [0.102533327, 0.0]]], atol=1e-10)
    _, g = fx.cross_entropy(GOLDEN_X, GOLDEN_T, return_grad=True)
    np.testing.assert_allclose(g, [
        [[-0.1182223653, 0.020198824], [0.0966555884, 0.2460720518],
         [0.0215667769, -0.2662708758]],
        [[0.0477999104, 0], [-0.1191089973, 0], [0.0713090869, 0]]], atol=1e-10)


def test_bce_fixtures():
    P = np.array([[0.9, 0.2, 0.6], [0.3, 0.7, 0.5]])
    Y = np.array([[1, 0, 1], [0, 1, 0.5]])
    got = fx.binary_cross_entropy(P, Y, weight=np.array([1, 2, 3]), reduction="none")
    np.testing.assert_allclose(got, [[0.1053605157, 0.4462871026, 1.5324768713],
                                     [0.3566749439, 0.7133498879, 2.0794415417]], atol=1e-9)
    np.testing.assert_allclose(fx.binary_cross_entropy(P, Y, weight=np.array([1, 2, 3])),
                               0.8722651438467085, rtol=1e-14)
    Z = np.array([[2, -1, 0.5], [0.3, 0, -4]])
    Y = np.array([[1, 0, 1], [0, 1, 0.25]])
    kw = dict(weight=np.array([[1], [2]]), pos_weight=np.array([1, 2, 3]))
    got = fx.binary_cross_entropy_with_logits(Z, Y, reduction="none", **kw)
    np.testing.assert_allclose(got, [[0.126928011, 0.3132616875, 1.4222309525],
                                     [1.7087104889, 2.7725887222, 6.0544497838]], atol=1e-9)
    _, g = fx.binary_cross_entropy_with_logits(Z, Y, return_grad=True, **kw)
    np.testing.assert_allclose(g, [[-0.0198671537, 0.0448235702, -0.1887703344],
                                   [0.1914808389, -0.3333333333, -0.241006895]], atol=1e-9)
