"""float16 and bfloat16 inputs: computed in float32, returned in the input's dtype, and as
close to PyTorch's float64 answer as the 16-bit output allows."""
import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import BF16


@pytest.mark.parametrize("dtype,rtol", [(np.dtype(np.float16), 1e-3), (BF16, 8e-3)])
def test_half_precision_cross_entropy(dtype, rtol):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 50)) * 3).astype(dtype)
    t = rng.integers(0, 50, 64)
    loss, grad = fx.cross_entropy(x, t, label_smoothing=0.1, reduction="none",
                                  return_grad=True)
    assert loss.dtype == dtype and grad.dtype == dtype
    ref_loss, ref_grad = oracle.cross_entropy(x.astype(np.float64), t, label_smoothing=0.1,
                                              reduction="none")
    np.testing.assert_allclose(loss.astype(np.float64), ref_loss, rtol=rtol)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=rtol,
                               atol=rtol * np.abs(ref_grad).max())
    # the in-place gradient and a grad_out buffer work for 16-bit arrays too
    buf = np.empty_like(x)
    assert fx.cross_entropy(x, t, return_grad=True, grad_out=buf)[1] is buf


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16])
def test_half_precision_everywhere(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5)).astype(dtype)
    y = rng.random((8, 5)).astype(dtype)
    assert fx.softmax(x).dtype == dtype
    assert fx.logsumexp(x).dtype == dtype
    assert fx.binary_cross_entropy_with_logits(x, y).dtype == dtype
    assert fx.kl_div(fx.log_softmax(x), y, return_grad=True)[1].dtype == dtype
    np.testing.assert_allclose(fx.log_softmax(x).astype(np.float64),
                               oracle.log_softmax(x.astype(np.float64)),
                               rtol=1e-2, atol=1e-2)
