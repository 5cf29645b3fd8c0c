"""Every gradient against float64 finite differences (4th-order central differences).

The checked quantity is sum(grad_output * loss), whose gradient is what return_grad gives.
"""
import numpy as np
import pytest

import fastxent as fx

H = 1e-4


def _numeric_grad(f, x):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        v = flat[k]
        vals = []
        for step in (2 * H, H, -H, -2 * H):
            flat[k] = v + step
            vals.append(f(x))
        flat[k] = v
        gflat[k] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * H)
    return g


rng = np.random.default_rng(42)
CASES = {
    "ce_index": (fx.cross_entropy, (2, 5, 3), lambda s: rng.integers(0, 5, (2, 3)),
                 {"weight": rng.uniform(0.5, 2, 5), "label_smoothing": 0.2,
                  "ignore_index": 4}),
    "ce_probs": (fx.cross_entropy, (4, 6), lambda s: fx.softmax(rng.standard_normal(s)),
                 {"weight": rng.uniform(0.5, 2, 6), "label_smoothing": 0.3}),
    "ce_axis": (fx.cross_entropy, (3, 2, 4), lambda s: rng.integers(0, 4, (3, 2)),
                {"axis": -1}),
    "nll": (fx.nll_loss, (5, 4), lambda s: rng.integers(0, 4, 5),
            {"weight": rng.uniform(0.5, 2, 4)}),
    "bce": (fx.binary_cross_entropy, (3, 4), lambda s: rng.random(s),
            {"weight": rng.uniform(0.5, 2, 4)}),
    "bce_logits": (fx.binary_cross_entropy_with_logits, (3, 4), lambda s: rng.random(s),
                   {"weight": rng.uniform(0.5, 2, 4), "pos_weight": rng.uniform(0.5, 3, 4)}),
    "kl": (fx.kl_div, (3, 4), lambda s: rng.random(s), {}),
    "kl_log": (fx.kl_div, (3, 4), lambda s: np.log(rng.random(s)), {"log_target": True}),
}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, reduction):
    fn, shape, make_target, kw = CASES[name]
    x = rng.standard_normal(shape)
    if name == "bce":
        x = rng.uniform(0.1, 0.9, shape)
    target = make_target(shape)
    loss = fn(x, target, reduction=reduction, **kw)
    go = rng.standard_normal(loss.shape) if reduction == "none" else np.float64(1.7)

    def total(z):
        return float(np.sum(go * fn(z, target, reduction=reduction, **kw)))
    _, grad = fn(x, target, reduction=reduction, return_grad=True, grad_output=go, **kw)
    np.testing.assert_allclose(grad, _numeric_grad(total, x.copy()), rtol=1e-6, atol=1e-8)
