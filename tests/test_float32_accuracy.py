"""In float32, fastxent is never less accurate than PyTorch in float32.

Both are compared with the float64 answer on the same float32 inputs; the error measures
are the maximum relative error of the per-sample loss and the maximum gradient error
relative to max|grad| (the measure of shared/reference/peers.md)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastxent as fx


def _torch(x, t, dtype, **kw):
    leaf = torch.from_numpy(x.astype(dtype)).requires_grad_(True)
    loss = F.cross_entropy(leaf, torch.from_numpy(t), reduction="none", **kw)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy().astype(np.float64), leaf.grad.numpy().astype(np.float64)


@pytest.mark.parametrize("shape,scale", [((256, 8000), 4.0), ((4, 128256), 4.0),
                                         ((4096, 10), 10.0), ((64, 1000), 30.0)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_not_less_accurate_than_torch_float32(shape, scale, eps):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    ref_l, ref_g = _torch(x, t, np.float64, label_smoothing=eps)
    torch_l, torch_g = _torch(x, t, np.float32, label_smoothing=eps)
    ours_l, ours_g = fx.cross_entropy(x, t, reduction="none", label_smoothing=eps,
                                      return_grad=True)

    def loss_err(v):
        return np.max(np.abs(v - ref_l) / np.maximum(np.abs(ref_l), 1e-30))

    def grad_err(g):
        return np.max(np.abs(g - ref_g)) / np.max(np.abs(ref_g))
    assert loss_err(ours_l) <= loss_err(torch_l)
    assert grad_err(ours_g) <= grad_err(torch_g)
