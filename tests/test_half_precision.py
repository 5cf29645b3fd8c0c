"""float16 and bfloat16 inputs: computed in float32, returned in the input's dtype, and as
close to PyTorch's float64 answer as the 16-bit output allows."""
import tracemalloc

import numpy as np
import pytest

import fastxent as fx
from fastxent import _half

import oracle
from cases import BF16
from layouts import LAYOUTS, with_layout


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


def _calls(x, t, y, grad_output):
    """Every function of logits `x` (the argument of each call), with class indices `t` and
    16-bit probabilities `y` of x's shape."""
    ce = dict(label_smoothing=0.1, weight=np.linspace(0.5, 2, x.shape[1]))
    return {
        "cross_entropy": lambda x: fx.cross_entropy(x, t, return_grad=True, **ce),
        "cross_entropy_upstream": lambda x: fx.cross_entropy(
            x, t, reduction="none", return_grad=True, grad_output=grad_output),
        "cross_entropy_probs": lambda x: fx.cross_entropy(x, y.astype(x.dtype),
                                                          return_grad=True, **ce),
        "nll_loss": lambda x: fx.nll_loss(x, t, reduction="sum", return_grad=True),
        "bce_logits": lambda x: fx.binary_cross_entropy_with_logits(
            x, y.astype(x.dtype), pos_weight=np.float32(2.0), return_grad=True),
        "bce": lambda x: fx.binary_cross_entropy(
            y.astype(x.dtype), y[::-1].astype(x.dtype), reduction="none", return_grad=True),
        "kl_div": lambda x: fx.kl_div(x, y.astype(x.dtype), return_grad=True),
        "softmax": lambda x: fx.softmax(x, axis=1),
        "log_softmax": lambda x: fx.log_softmax(x, axis=0),
        "logsumexp": lambda x: fx.logsumexp(x, axis=1),
    }


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(37, 10), (9, 300), (6, 5, 4), (40, 500), (3, 70, 80)])
@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16])
@pytest.mark.parametrize("name", list(_calls(np.zeros((1, 1)), None, None, None)))
def test_16_bit_results_are_the_float32_results_rounded(name, dtype, shape, layout):
    """A 16-bit call runs the float32 kernels on its own float32 copy of the input (writing
    the gradient or transform over that copy): bit for bit the float32 call's results on the
    same values, rounded to the input's dtype, and the caller's input is left as it was."""
    rng = np.random.default_rng(4)
    x = with_layout((rng.standard_normal(shape) * 4).astype(dtype), layout)
    x.flat[5] = -np.inf                     # a class that gets no probability
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    y = with_layout(fx.softmax(rng.standard_normal(shape), axis=1).astype(dtype), layout)
    go = rng.standard_normal(t.shape)
    go.flat[1] = np.inf                     # PyTorch's two-step row (_infinite_scale)
    call = _calls(x, t, y, go)[name]
    before = x.copy()
    with np.errstate(invalid="ignore"):
        got = call(x)
        want = call(x.astype(np.float32))
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
    for g, w in zip(*(r if isinstance(r, tuple) else (r,) for r in (got, want))):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g).view(np.uint16),
                                      np.asarray(w.astype(dtype)).view(np.uint16))


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16])
def test_16_bit_calls_hold_one_float32_copy(dtype):
    """Memory: the float32 copy of the input (2 bytes for each of its bytes) and the 16-bit
    result; the kernels write over the copy rather than into a second float32 array."""
    x = np.random.default_rng(5).standard_normal((512, 1000)).astype(dtype)
    t = np.zeros(512, np.int64)
    budget = {"fused": 3.1, "grad_out": 2.1, "softmax": 3.1}
    calls = {"fused": lambda: fx.cross_entropy(x, t, return_grad=True),
             "grad_out": lambda: fx.cross_entropy(x, t, return_grad=True,
                                                  grad_out=np.empty_like(x)),
             "softmax": lambda: fx.softmax(x)}
    for name, call in calls.items():
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        extra = 1 if name == "grad_out" else 0      # the caller's own buffer
        assert peak <= (budget[name] + extra) * x.nbytes, (name, peak / x.nbytes)


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16])
def test_conversions_are_numpys_casts(dtype):
    """``_half`` (the 16-bit conversions of large arrays) against NumPy's and ml_dtypes'
    casts: every 16-bit value widened; narrowed, a spread of every kind of float32 (a
    1/4099 sample of all bit patterns) and each float32 at and beside every midpoint between
    neighbouring 16-bit values, where round-to-nearest-even decides. Before a release, the
    same comparison over all 2^32 patterns (docs/testing.md)."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    np.testing.assert_array_equal(_half.widen(every, np.float32).view(np.uint32),
                                  every.astype(np.float32).view(np.uint32))
    step = 16 if dtype == BF16 else 13                   # bits below the 16-bit mantissa
    lo = every.astype(np.float32).view(np.uint32)
    middle = lo + np.uint32(1 << (step - 1))
    near = np.concatenate([middle - 1, middle, middle + 1, lo])
    sample = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)
    f = np.concatenate([near, sample]).view(np.float32)
    got = np.empty(f.shape, dtype)
    _half.narrow_into(got, f)
    with np.errstate(all="ignore"):
        want = f.astype(dtype)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
