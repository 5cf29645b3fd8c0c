"""Arrays in the other byte order (FITS and HDF5 files are big-endian) give the native call's
result bit for bit: computed in the dtype's own precision, returned in native byte order as
NumPy's functions return them, and written into a gradient buffer of either order."""
import numpy as np
import pytest

import fastxent as fx
from cases import assert_same, swapped

rng = np.random.default_rng(7)
N, C = 37, 70       # over 64 classes: the row kernel; (N, 5) below takes the block kernel


def _class_calls(dtype, C):
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    t = rng.integers(0, C, N)
    t[::5] = 1
    q = fx.softmax(rng.standard_normal((N, C))).astype(dtype)
    w = rng.uniform(0.5, 2, C)
    return {
        "cross_entropy": (fx.cross_entropy, {"input": x, "target": t, "weight": w},
                          {"ignore_index": 1, "label_smoothing": 0.1}),
        "cross_entropy_probs": (fx.cross_entropy, {"input": x, "target": q, "weight": w}, {}),
        "nll_loss": (fx.nll_loss, {"input": x, "target": t, "weight": w}, {}),
    }


def _elementwise_calls(dtype):
    x = (rng.standard_normal((N, 6)) * 3).astype(dtype)
    p = rng.uniform(0.02, 0.98, (N, 6)).astype(dtype)
    y = rng.uniform(0, 1, (N, 6))
    w = rng.uniform(0.5, 2, 6)
    return {
        "binary_cross_entropy": (fx.binary_cross_entropy,
                                 {"input": p, "target": y, "weight": w}, {}),
        "binary_cross_entropy_with_logits": (
            fx.binary_cross_entropy_with_logits,
            {"input": x, "target": y, "weight": w, "pos_weight": w[::-1].copy()}, {}),
        "kl_div": (fx.kl_div, {"input": x, "target": y}, {"reduction": "batchmean"}),
    }


def _calls(dtype):
    return {**_class_calls(dtype, C), **{f"{k}_blocks": v for k, v in
                                         _class_calls(dtype, 5).items()},
            **_elementwise_calls(dtype)}


NAMES = sorted(_calls(np.float64))


def _run(fn, arrays, options, **extra):
    arrays = dict(arrays)
    return fn(arrays.pop("input"), arrays.pop("target"), **arrays, **options, **extra)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_swapped_arrays_give_the_native_result(name, dtype, reduction):
    fn, arrays, options = _calls(dtype)[name]
    options = {**options, "reduction": options.get("reduction", reduction)}
    expected = _run(fn, arrays, options, return_grad=True)
    for swap in arrays:
        given = {k: swapped(v) if k == swap else v for k, v in arrays.items()}
        kept = {k: v.copy() for k, v in given.items()}
        got = _run(fn, given, options, return_grad=True)
        for a, b in zip(got, expected):
            assert a.dtype.isnative
            assert_same(a, b)
        for k, v in given.items():          # the caller's arrays, their byte order kept
            assert v.dtype == kept[k].dtype
            assert_same(v, kept[k])


@pytest.mark.parametrize("name", NAMES)
def test_swapped_grad_output(name):
    fn, arrays, options = _calls(np.float64)[name]
    options = {**options, "reduction": "none"}
    loss = _run(fn, arrays, options)
    g = rng.uniform(-2, 2, loss.shape)
    expected = _run(fn, arrays, options, return_grad=True, grad_output=g)
    assert_same(_run(fn, arrays, options, return_grad=True, grad_output=swapped(g))[1],
                expected[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient_into_a_swapped_buffer(name, dtype, in_place):
    """A buffer in the other byte order receives the native gradient's values, in place
    (the input itself) too, and is what the call returns."""
    fn, arrays, options = _calls(dtype)[name]
    loss, grad = _run(fn, arrays, options, return_grad=True)
    given = {**arrays, "input": swapped(arrays["input"])}
    buffer = given["input"] if in_place else np.full_like(given["input"], np.nan)
    got_loss, got_grad = _run(fn, given, options, return_grad=True, grad_out=buffer)
    assert got_grad is buffer
    assert buffer.dtype == swapped(arrays["input"]).dtype
    assert_same(got_loss, loss)
    assert_same(buffer.astype(grad.dtype), grad)


def test_native_buffer_for_a_swapped_input():
    """The gradient buffer must have the input's dtype; byte order aside, it has."""
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    expected = fx.cross_entropy(x, t, return_grad=True)[1]
    buffer = np.empty_like(x)
    fx.cross_entropy(swapped(x), t, return_grad=True, grad_out=buffer)
    assert_same(buffer, expected)


def test_swapped_grad_out_for_a_native_input():
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    expected = fx.cross_entropy(x, t, return_grad=True)[1]
    buffer = swapped(np.zeros_like(x))
    assert fx.cross_entropy(x, t, return_grad=True, grad_out=buffer)[1] is buffer
    assert_same(buffer.astype(np.float64), expected)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("C", [5, C])
def test_swapped_transforms(name, dtype, C):
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    fn = getattr(fx, name)
    for axis in (0, -1):
        got = fn(swapped(x), axis=axis)
        assert got.dtype.isnative
        assert_same(got, fn(x, axis=axis))


@pytest.mark.parametrize("cls, args", [
    (fx.CrossEntropyLoss, lambda x: (x, np.arange(len(x)) % x.shape[1])),
    (fx.BCEWithLogitsLoss, lambda x: (x, (x > 0).astype(x.dtype))),
])
def test_loss_classes(cls, args):
    x = rng.standard_normal((9, 4))
    assert_same(cls().loss_and_grad(*args(swapped(x)))[1],
                cls().loss_and_grad(*args(x))[1])


def test_dask_blocks():
    da = pytest.importorskip("dask.array")
    import fastxent.dask as fxd
    x = rng.standard_normal((12, 80))
    t = rng.integers(0, 80, 12)
    loss, grad = fxd.cross_entropy(da.from_array(swapped(x), chunks=(5, 80)), t,
                                   return_grad=True)
    expected = fx.cross_entropy(x, t, return_grad=True)
    assert loss.dtype.isnative and grad.dtype.isnative
    assert_same(loss.compute(), expected[0])
    assert_same(grad.compute(), expected[1])
