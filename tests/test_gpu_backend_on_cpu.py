"""The CuPy backend's Python side (fastxent._gpu), run end to end without a GPU.

A stand-in for CuPy serves NumPy arrays of a ``cupy``-named ndarray subclass, and its
"kernels" are the CUDA sources' own row and element bodies compiled by g++
(cuda_host_lib), called with the launcher's argument tuples. So everything but the device
itself runs: dispatch from the public functions, validation, target conversion, the mean's
denominator on the "device", gradient scales, grad_out and in-place gradients, reductions,
and the deferred value errors. The real device runs test_gpu.py.
"""
import re
import threading

import numpy as np
import pytest

import fastxent as fx
from fastxent import _cuda_sources as S
from fastxent import _gpu

import cuda_host_lib
from cases import BAD_CALLS, assert_refused_as_numpy, swapped
from cupy_stand_in import Device, Event, HostKernel, for_benchmarks, ndarray

pytestmark = pytest.mark.main_run_only

ml_dtypes = pytest.importorskip("ml_dtypes")


DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
          "bfloat16": ml_dtypes.bfloat16}
_close = cuda_host_lib.assert_close


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape,axis", [((7, 10), 1), ((4, 100), 1), ((3, 3000), 1),
                                        ((3, 4, 5, 2), 1), ((2, 3, 40), -1), ((9,), None)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", ["plain", "weight", "weight+smoothing", "ignored",
                                     "all ignored", "int8", "uint64", "probs"])
def test_cross_entropy(gpu, dtype, shape, axis, reduction, options):
    rng = np.random.default_rng(len(options) + len(shape))
    x = (rng.standard_normal(shape) * 3).astype(DTYPES[dtype])
    ax = (1 if len(shape) > 1 else 0) if axis is None else axis % len(shape)
    C = shape[ax]
    t = rng.integers(0, C, shape[:ax] + shape[ax + 1:])
    kw = {}
    if "weight" in options:
        kw["weight"] = rng.uniform(0.5, 2, C)
    if "smoothing" in options:
        kw["label_smoothing"] = 0.1
    if options == "ignored":
        t.flat[::3] = -100
    if options == "all ignored":
        t[...] = -100
    if options == "int8":
        t = t.astype(np.int8) if C < 128 else t.astype(np.int16)
    if options == "uint64":
        t = t.astype(np.uint64)
    if options == "probs":
        t = rng.uniform(size=shape).astype(DTYPES[dtype])
    go = rng.uniform(0.5, 1.5, t.shape if options != "probs" else shape[:ax] + shape[ax + 1:]) \
        if reduction == "none" else 0.7
    if reduction != "none" and options in ("plain", "all ignored", "probs"):
        go = None           # the default: "mean" scales by a number where it can
    want, want_grad = fx.cross_entropy(x, t, axis=axis, reduction=reduction, return_grad=True,
                                       grad_output=go, **kw)
    loss, grad = fx.cross_entropy(gpu.dev(x), gpu.dev(t), axis=axis, reduction=reduction,
                                  return_grad=True,
                                  grad_output=None if go is None else gpu.dev(np.asarray(go)),
                                  **{k: gpu.dev(v) if k == "weight" else v
                                     for k, v in kw.items()})
    assert type(grad) is ndarray and grad.dtype == x.dtype and loss.dtype == x.dtype
    # a reduced call is two launches: "mean"'s denominator, and the rows, which also write
    # the reduced loss
    want_kernels = (["mean_scale"] if reduction == "mean" and options != "probs" else []) + \
        ["rows"]
    assert _launched(gpu) == want_kernels
    _close(loss, want, dtype)
    _close(grad, want_grad, dtype)
    _gpu.check_errors()


def _launched(gpu):
    """The kernels the backend launched, in order, each once: "rows", "elementwise" or the
    reduce.cu kernel's name ("mean_scale")."""
    assert all(k.launches == 1 for k in gpu.kernels)
    return [k.kind if k.kind != "reduce" else k.name[4:k.name.index("<")]
            for k in gpu.kernels]


def test_layouts_choose_every_lane_mapping(gpu):
    rng = np.random.default_rng(5)
    for shape, config in [((8, 10), S.THREAD_PER_ROW), ((8, 300), S.WARP_PER_ROW),
                          ((2, 5000), S.BLOCK_PER_ROW_CACHED),
                          ((2, 50000), S.BLOCK_PER_ROW)]:
        x = rng.standard_normal(shape)
        t = rng.integers(0, shape[1], shape[0])
        want = fx.cross_entropy(x, t, return_grad=True)
        got = fx.cross_entropy(gpu.dev(x), gpu.dev(t), return_grad=True)
        name = [k.name for k in gpu.kernels if k.kind == "rows"][-1]
        assert name == S.row_kernel("ce_index", "float64", "int64", config)
        _close(got[0], want[0], "float64")
        _close(got[1], want[1], "float64")


LAYOUTS = {
    "fortran": lambda a: np.asfortranarray(a),
    "class-last view": lambda a: np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)),
                                             -1, 1),
    "axes reversed": lambda a: np.ascontiguousarray(a.T).T,
    "every other row": lambda a: np.repeat(a, 2, axis=0)[::2],
    "C order": lambda a: a,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("ndim", [2, 3])
def test_fresh_outputs_keep_the_cpu_paths_layout(gpu, layout, ndim):
    """A fresh gradient, softmax or log_softmax is laid out as the CPU path lays it out
    (the input's memory order where its class view merges): the same strides."""
    rng = np.random.default_rng(9)
    shape = (5, 40, 3) if ndim == 3 else (6, 40)
    x = LAYOUTS[layout](rng.standard_normal(shape).astype(np.float32))
    t = rng.integers(0, 40, shape[:1] + shape[2:])
    for fn in (fx.cross_entropy, fx.nll_loss):
        want = fn(x, t, axis=1, return_grad=True)
        got = fn(gpu.dev(x), gpu.dev(t), axis=1, return_grad=True)
        assert got[1].strides == want[1].strides, (fn.__name__, x.strides)
        _close(got[1], want[1], "float32")
    q = rng.uniform(size=shape).astype(np.float32)
    want = fx.cross_entropy(x, q, axis=1, return_grad=True)
    got = fx.cross_entropy(gpu.dev(x), gpu.dev(q), axis=1, return_grad=True)
    assert got[1].strides == want[1].strides
    for fn in (fx.softmax, fx.log_softmax):
        want, got = fn(x, axis=1), fn(gpu.dev(x), axis=1)
        assert got.strides == want.strides, (fn.__name__, x.strides)
        _close(got, want, "float32")
    if layout == "fortran":
        assert got.flags.f_contiguous and not got.flags.c_contiguous
    # the element-wise losses: the loss of "none" and the gradient, with operands of
    # other layouts and broadcast ones
    y = rng.uniform(size=shape).astype(np.float32)
    pw = rng.uniform(0.5, 2, shape[-1])
    for fn, inp, kw in ((fx.binary_cross_entropy_with_logits, x, dict(pos_weight=pw)),
                        (fx.binary_cross_entropy, 1 / (1 + np.exp(-x)), dict(weight=y[:1])),
                        (fx.kl_div, x, dict(log_target=True))):
        want = fn(inp, y, reduction="none", return_grad=True, **kw)
        got = fn(gpu.dev(inp), gpu.dev(y), reduction="none", return_grad=True,
                 **{k: gpu.dev(v) for k, v in kw.items()})
        for g, w in zip(got, want):
            assert g.strides == w.strides, (fn.__name__, inp.strides)
            _close(g, w, "float32")


@pytest.mark.parametrize("in_place", [False, True])
def test_elementwise_grad_out_of_another_layout(gpu, in_place):
    """A grad_out laid out unlike the input is filled through a temporary; the input itself
    as grad_out (Fortran-ordered) is written in place."""
    rng = np.random.default_rng(10)
    x = np.asfortranarray(rng.standard_normal((6, 5, 4)).astype(np.float32))
    y = rng.uniform(size=x.shape).astype(np.float32)
    want = fx.binary_cross_entropy_with_logits(x, y, reduction="sum", return_grad=True)
    xd = gpu.dev(x.copy(order="A"))
    buf = xd if in_place else gpu.dev(np.full(x.shape, np.nan, np.float32))  # C order
    loss, grad = fx.binary_cross_entropy_with_logits(xd, gpu.dev(y), reduction="sum",
                                                     return_grad=True, grad_out=buf)
    assert grad is buf and buf.flags.c_contiguous is not in_place
    _close(loss, want[0], "float32")
    _close(buf, want[1], "float32")


def test_grad_out_whose_strides_are_not_whole_elements(gpu):
    """The kernels count strides in elements: a grad_out 6 bytes apart per float32 goes
    through a temporary (as the input would), and every element lands where it belongs."""
    x = np.linspace(-2, 2, 5).astype(np.float32)
    y = np.full(5, 0.25, np.float32)
    want = fx.binary_cross_entropy_with_logits(x, y, reduction="sum", return_grad=True)
    buf = np.zeros(64, np.uint8)
    g = np.lib.stride_tricks.as_strided(buf[:4].view(np.float32), shape=(5,), strides=(6,))
    out = gpu.dev(g)
    loss, grad = fx.binary_cross_entropy_with_logits(gpu.dev(x), gpu.dev(y), reduction="sum",
                                                     return_grad=True, grad_out=out)
    assert grad is out
    _close(loss, want[0], "float32")
    _close(np.array(g), want[1], "float32")


@pytest.mark.parametrize("in_place", [False, True])
def test_grad_out(gpu, in_place):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 300)).astype(np.float32)
    t = rng.integers(0, 300, 6)
    want = fx.cross_entropy(x, t, return_grad=True, label_smoothing=0.1)
    xd = gpu.dev(x.copy())
    buf = xd if in_place else gpu.dev(np.full(x.shape, np.nan, np.float32))
    loss, grad = fx.cross_entropy(xd, gpu.dev(t), return_grad=True, grad_out=buf,
                                  label_smoothing=0.1)
    assert grad is buf
    _close(loss, want[0], "float32")
    _close(buf, want[1], "float32")
    with pytest.raises(ValueError, match="grad_out"):
        fx.cross_entropy(xd, gpu.dev(t), return_grad=True, grad_out=xd[:, ::-1])
    with pytest.raises(TypeError, match="grad_out"):
        fx.cross_entropy(xd, gpu.dev(t), return_grad=True, grad_out=np.empty_like(x))


_GO_CALLS = {
    "cross_entropy": lambda d, x, t, q, y, **kw: fx.cross_entropy(d(x), d(t), **kw),
    "cross_entropy, weights": lambda d, x, t, q, y, **kw: fx.cross_entropy(
        d(x), d(t), weight=d(np.linspace(0.5, 2, 30)), **kw),
    "cross_entropy, probabilities": lambda d, x, t, q, y, **kw: fx.cross_entropy(
        d(x), d(q), **kw),
    "nll_loss": lambda d, x, t, q, y, **kw: fx.nll_loss(d(x), d(t), **kw),
    "binary_cross_entropy": lambda d, x, t, q, y, **kw: fx.binary_cross_entropy(
        d(y), d(q), **kw),
    "binary_cross_entropy_with_logits": lambda d, x, t, q, y, **kw:
        fx.binary_cross_entropy_with_logits(d(x), d(q), pos_weight=d(np.full(30, 2.0)), **kw),
    "kl_div": lambda d, x, t, q, y, **kw: fx.kl_div(d(x), d(q), **kw),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(_GO_CALLS))
def test_a_grad_output_number_is_the_device_scalar_it_stands_for(gpu, name, reduction):
    """A grad_output of the caller's given as a number (Python, NumPy scalar or 0-d host
    array) rides with the kernel's arguments; it must give bit for bit what the same value
    as a device scalar gives, and the CPU path's result."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((9, 30)).astype(np.float32)
    t = rng.integers(0, 30, 9)
    t[::4] = -100
    q = rng.uniform(size=(9, 30)).astype(np.float32)
    y = rng.uniform(0.05, 0.95, (9, 30)).astype(np.float32)
    call = _GO_CALLS[name]
    kw = dict(reduction=reduction, return_grad=True)
    for value in (0.3, -7, 1e30):
        want = call(lambda a: a, x, t, q, y, grad_output=np.float64(value), **kw)
        device = call(gpu.dev, x, t, q, y, grad_output=gpu.dev(np.array(value, np.float64)),
                      **kw)
        _close(device[0], want[0], "float32")
        _close(device[1], want[1], "float32")
        for number in (value, np.float64(value), np.array(value)):
            got = call(gpu.dev, x, t, q, y, grad_output=number, **kw)
            assert np.array_equal(got[0], device[0], equal_nan=True), (value, type(number))
            assert np.array_equal(got[1], device[1], equal_nan=True), (value, type(number))
    # A scale past float32's range is rounded to inf on the device (PyTorch's float32
    # grad_output is), where the CPU path keeps float64 and may give a finite value; NaN
    # must stay where the CPU path has it. Probability targets' gradient, k e_c - scale q_c,
    # is inf - inf there, on the device only (docs/gpu.md).
    for value in ([1e40, 1e300, np.inf, -np.inf] if name != "cross_entropy, probabilities"
                  else [np.inf]):
        want = call(lambda a: a, x, t, q, y, grad_output=value, **kw)
        got = gpu.cp.asnumpy(call(gpu.dev, x, t, q, y, grad_output=value, **kw)[1])
        assert np.array_equal(np.isnan(got), np.isnan(want[1])), value
        assert np.all(np.isinf(got)[np.isinf(want[1])]), value
    got = call(gpu.dev, x, t, q, y, grad_output=np.float32(0.3), **kw)
    want = call(lambda a: a, x, t, q, y, grad_output=np.float32(0.3), **kw)
    _close(got[1], want[1], "float32")
    for bad, error in ((True, TypeError), (np.ones(2), ValueError)):
        with pytest.raises(error, match="grad_output"):
            call(gpu.dev, x, t, q, y, grad_output=bad, **kw)
    gpu.kernels.clear()
    with pytest.raises(TypeError, match="grad_output"):
        call(gpu.dev, x, t, q, y, grad_output=1j, **kw)
    assert not gpu.kernels                          # refused before any launch


@pytest.mark.parametrize("shape", [(0, 5), (2, 5, 0), (0, 70000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_class_losses_of_no_row(gpu, shape, reduction):
    """No row: the row kernel still runs (one block, for every lane mapping) to write a
    reduced loss, 0 for "sum" and NaN for "mean", as the CPU path gives."""
    x = np.zeros(shape, np.float32)
    t = np.zeros(shape[:1] + shape[2:], np.int64)
    for fn, target in ((fx.cross_entropy, t), (fx.cross_entropy, x), (fx.nll_loss, t)):
        want = fn(x, target, reduction=reduction, return_grad=True)
        got = fn(gpu.dev(x), gpu.dev(target), reduction=reduction, return_grad=True)
        assert got[0].shape == want[0].shape and got[1].shape == x.shape
        np.testing.assert_array_equal(gpu.cp.asnumpy(got[0]), want[0])
        assert got[0].dtype == want[0].dtype
    _gpu.check_errors()


def test_nll_and_transforms(gpu):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 7, 3)).astype(np.float32)
    t = rng.integers(0, 7, (5, 3))
    t[0, 0] = -100
    w = rng.uniform(0.5, 2, 7)
    for red in ("mean", "sum", "none"):
        want = fx.nll_loss(x, t, weight=w, reduction=red, return_grad=True)
        got = fx.nll_loss(gpu.dev(x), gpu.dev(t), weight=gpu.dev(w), reduction=red,
                          return_grad=True)
        _close(got[0], want[0], "float32")
        _close(got[1], want[1], "float32")
    for fn in (fx.softmax, fx.log_softmax, fx.logsumexp):
        for axis in (0, 1, 2, -1):
            _close(fn(gpu.dev(x), axis=axis), fn(x, axis=axis), "float32")
    _close(fx.logsumexp(gpu.dev(x), axis=None), fx.logsumexp(x, axis=None), "float32")
    _close(fx.logsumexp(gpu.dev(x), axis=1, keepdims=True),
           fx.logsumexp(x, axis=1, keepdims=True), "float32")
    assert fx.logsumexp(gpu.dev(x), axis=1, keepdims=True).shape == (5, 1, 3)
    for fn in (fx.softmax, fx.log_softmax, fx.logsumexp):
        for axis in ((0, 2), (2, 1), (0, 1, 2), (), (1,)):
            got = fn(gpu.dev(x), axis=axis)
            assert isinstance(got, gpu.cp.ndarray)
            _close(got, fn(x, axis=axis), "float32")
    _close(fx.logsumexp(gpu.dev(x), axis=(2, 0), keepdims=True),
           fx.logsumexp(x, axis=(0, 2), keepdims=True), "float32")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(6,), (4, 5), (2, 3, 4), (2, 2, 3, 2)])
def test_elementwise(gpu, dtype, shape):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(DTYPES[dtype])
    y = rng.uniform(size=shape).astype(DTYPES[dtype])
    p = rng.uniform(0.01, 0.99, shape).astype(DTYPES[dtype])
    w, pw = rng.uniform(0.5, 2, shape), rng.uniform(0.5, 3, shape[-1])
    cases = [(fx.binary_cross_entropy_with_logits, x, dict(weight=w, pos_weight=pw)),
             (fx.binary_cross_entropy_with_logits, x, {}),
             (fx.binary_cross_entropy, p, dict(weight=w)),
             (fx.kl_div, x, dict(reduction="batchmean")),
             (fx.kl_div, x, dict(log_target=True))]
    for fn, inp, kw in cases:
        for red in ("mean", "sum", "none"):
            kw2 = dict(kw)
            kw2.setdefault("reduction", red)
            want = fn(inp, y, return_grad=True, **kw2)
            got = fn(gpu.dev(inp), gpu.dev(y), return_grad=True,
                     **{k: gpu.dev(v) if k in ("weight", "pos_weight") else v
                        for k, v in kw2.items()})
            _close(got[0], want[0], dtype)
            _close(got[1], want[1], dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_operands_of_their_own_layout_take_the_indexed_kernel(gpu, dtype):
    """A per-class pos_weight or weight, or a per-sample weight, keeps a second axis of the
    element-wise views: the backend launches the INDEXED instantiation for those calls (its
    16-byte groups follow each element's position) and the one-axis one otherwise."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 12)).astype(DTYPES[dtype])
    y = rng.uniform(size=(50, 12)).astype(DTYPES[dtype])
    cases = [(dict(pos_weight=rng.uniform(0.5, 3, 12)), True),
             (dict(weight=rng.uniform(0.5, 2, 12)), True),
             (dict(weight=rng.uniform(0.5, 2, (50, 1))), True),
             (dict(weight=rng.uniform(0.5, 2, (50, 12)), pos_weight=np.array(2.0)), False),
             ({}, False)]
    for kw, indexed in cases:
        for red in ("mean", "none"):
            want = fx.binary_cross_entropy_with_logits(x, y, reduction=red, return_grad=True,
                                                       **kw)
            got = fx.binary_cross_entropy_with_logits(
                gpu.dev(x), gpu.dev(y), reduction=red, return_grad=True,
                **{k: gpu.dev(v) for k, v in kw.items()})
            assert gpu.kernels[-1].name.endswith(f"{'true' if indexed else 'false'}>"), \
                (kw.keys(), gpu.kernels[-1].name)
            _close(got[0], want[0], dtype)
            _close(got[1], want[1], dtype)


def test_value_errors_are_deferred_to_the_next_call(gpu):
    x = gpu.dev(np.zeros((4, 3), np.float32))
    loss = fx.cross_entropy(x, gpu.dev(np.array([0, 3, 1, 2])), reduction="none")
    assert np.isnan(loss[1]) and not np.isnan(loss[0])
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        fx.softmax(x)                        # the next call on the device raises
    fx.cross_entropy(x, gpu.dev(np.array([0, 1, 1, 2])))
    fx.check_errors()                        # nothing pending
    fx.binary_cross_entropy(gpu.dev(np.array([0.5, 1.5])), gpu.dev(np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fx.check_errors()                    # the public name waits and raises
    fx.check_errors()                        # raised once, then cleared
    for bad in (dict(reduction="avg"), dict(label_smoothing=-0.1), dict(axis=3)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fx.cross_entropy(x, gpu.dev(np.array([0, 1, 1, 2])), **bad)
    with pytest.raises(ValueError, match="class probabilities"):
        fx.cross_entropy(x, gpu.dev(np.full((4, 2), 0.5)))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        fx.softmax(gpu.dev(np.zeros(3, np.int32)))


def test_a_thread_checking_errors_takes_no_other_threads_error(gpu, monkeypatch):
    """Thread A waits on its call's error while thread B makes a bad call and checks: each
    raises its own error, once. Before the pending list was taken out under a lock, B's
    next call raised A's error (so A's was raised twice) and B's own was never raised."""
    waiting, go_on = threading.Event(), threading.Event()

    class HeldEvent(Event):                 # the copy has landed; a wait blocks the thread
        def synchronize(self):
            waiting.set()
            assert go_on.wait(10)

    made = []

    def event(**kw):
        made.append(HeldEvent() if not made else Event())
        return made[-1]

    monkeypatch.setattr(gpu.cp.cuda, "Event", event)
    x = gpu.dev(np.zeros((2, 3), np.float32))
    raised = []

    def a():
        fx.cross_entropy(x, gpu.dev(np.array([0, 3])))
        try:
            fx.check_errors()
        except IndexError as e:
            raised.append(e)

    thread = threading.Thread(target=a)
    thread.start()
    try:
        assert waiting.wait(10)
        fx.binary_cross_entropy(gpu.dev(np.array([1.5])), gpu.dev(np.array([1.0])))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            fx.check_errors()
    finally:
        go_on.set()
        thread.join()
    assert len(made) == 2 and len(raised) == 1 and "outside [0, 3)" in str(raised[0])
    fx.check_errors()                       # each raised once


@pytest.mark.parametrize("name,x,t,options", BAD_CALLS)
def test_bad_calls_raise_the_cpu_paths_error(gpu, name, x, t, options):
    """The same exception type and message on both backends: the GPU path checks with the
    CPU path's own validators (device arrays given as device arrays, numbers as numbers)."""
    def device(v):
        return gpu.dev(v) if isinstance(v, np.ndarray) else v

    def call(name, args, options):
        getattr(fx, name)(*map(device, args), **{k: device(v) for k, v in options.items()})
    assert_refused_as_numpy(name, x, t, options, call)


def test_import_fastxent_never_imports_cupy():
    import subprocess
    import sys
    code = ("import numpy as np, sys, fastxent as fx; "
            "fx.cross_entropy(np.zeros((2, 3)), np.array([0, 1])); "
            "assert not any(m.split('.')[0] in ('cupy', 'cupyx') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- benchmarks/gpu_sweep.py ------------------------------------------------------------

H100_SMEM = 227 * 1024          # shared memory per block an H100 or H200 allows


def test_sweep_times_the_backends_own_kernel_at_every_shape(gpu_sweep):
    """The sweep's reference is the backend's kernel: it must be among the variants at each
    shape, once, and come first."""
    for N, C in gpu_sweep.SHAPES:
        for dtype in gpu_sweep.DTYPES:
            itemsize = 2 if dtype == "bfloat16" else 4
            runs = [(k, c) for k in gpu_sweep.KNOBS
                    for c in gpu_sweep.runs_at(C, itemsize, k, H100_SMEM)]
            assert sum(gpu_sweep.is_backend_choice(C, itemsize, k, c) for k, c in runs) == 1
    assert gpu_sweep.KNOBS[0] == S.TUNING_DEFAULTS
    assert len({tuple(sorted(k.items())) for k in gpu_sweep.KNOBS}) == len(gpu_sweep.KNOBS)
    for dtype, knobs, options, names in gpu_sweep.modules():
        assert options == S.tuning_options(**knobs) and len(names) == len(set(names))
    # a row cache only where the device can hold it: at 128256 classes, a cluster's
    # slices of 4 or 8 blocks (float32), 2 or more (bfloat16)
    f32_big = gpu_sweep.runs_at(128256, 4, S.TUNING_DEFAULTS, H100_SMEM)
    assert f32_big and {c for c in f32_big if c[2]} == {
        (2048, 512, True), (4096, 512, True), (1024, 256, True), (2048, 256, True)}
    assert {c for c in gpu_sweep.runs_at(128256, 2, S.TUNING_DEFAULTS, H100_SMEM)
            if c[2] and c[0] > c[1]} == set(gpu_sweep.CLUSTER_CONFIGS)
    assert not any(c[0] > c[1] for c in gpu_sweep.runs_at(128256, 4, gpu_sweep.KNOBS[1],
                                                          H100_SMEM))
    assert any(c[2] for c in gpu_sweep.runs_at(32000, 4, S.TUNING_DEFAULTS, H100_SMEM))
    assert not any(c[0] == 32 for c in f32_big)


@pytest.mark.parametrize("C", [40, 3000])
def test_sweep_flags_a_variant_that_disagrees(gpu, gpu_sweep, cuda_host, monkeypatch, C):
    """sweep_shape end to end on the stand-in: every variant timed and compared with the
    backend's kernel; one that writes a wrong gradient value, and one that leaves an
    element unwritten, are reported as disagreeing. (The host build runs every variant
    with one lane, so the others agree exactly.)"""
    cp = for_benchmarks(gpu.cp)
    monkeypatch.setattr(gpu_sweep, "SAMPLE_ROWS", 4)
    N, dtype = 6, "float32"
    compiled = {}
    for d, knobs, _, names in gpu_sweep.modules():
        if d == dtype:
            configs = gpu_sweep.module_configs(knobs)
            compiled[d, tuple(sorted(knobs.items()))] = {
                c: HostKernel(cuda_host, "rows", "ce_index", d, n)
                for c, n in zip(configs, names)}
    for d, _, names in gpu_sweep.cluster_modules():
        if d == dtype:
            compiled[d, tuple(sorted(S.TUNING_DEFAULTS.items()))].update(
                {c: HostKernel(cuda_host, "rows", "ce_index", d, n)
                 for c, n in zip(gpu_sweep.CLUSTER_CONFIGS, names)})
    wrong_knobs = tuple(sorted(gpu_sweep.KNOBS[1].items()))
    wrong, hole = (32, 256, False), (256, 256, False)

    def spoil(kernel, how):
        def run(grid, block, args, shared_mem=0):
            kernel(grid, block, args, shared_mem)
            g = np.asarray(args[23]).reshape(N, C)      # row_args: the gradient
            if how == "wrong":
                g[N - 1, C // 2] += 0.01               # a sampled row (the last)
            else:
                g.view(np.uint32)[2, 1] = 0xFFFFFFFF   # an unsampled row: left unwritten
        return run
    compiled[dtype, wrong_knobs][wrong] = spoil(compiled[dtype, wrong_knobs][wrong], "wrong")
    compiled[dtype, wrong_knobs][hole] = spoil(compiled[dtype, wrong_knobs][hole], "hole")
    # a variant whose module did not compile, and one that cannot launch: skipped, the
    # second logged
    del compiled[dtype, tuple(sorted(gpu_sweep.KNOBS[2].items()))][512, 512, False]

    def refuse(grid, block, args, shared_mem=0):
        raise RuntimeError("too many resources requested for launch")
    compiled[dtype, tuple(sorted(gpu_sweep.KNOBS[3].items()))][256, 256, True] = refuse

    log = []
    results, call = gpu_sweep.sweep_shape(cp, compiled, N, C, dtype, 1000.0, H100_SMEM,
                                          log.append)
    runs = [(k, c) for k in gpu_sweep.KNOBS for c in gpu_sweep.runs_at(C, 4, k, H100_SMEM)]
    assert len(results) == len(runs) - 2 and len(log) == len(results) + 1
    assert sum("not launched: too many resources" in line for line in log) == 1
    assert results[0]["backend"] and sum(r["backend"] for r in results) == 1
    for r in results:
        knobs = tuple((k, r[k]) for k in sorted(S.TUNING_DEFAULTS))
        config = (r["lanes"], r["block"], r["cached"])
        spoiled = knobs == wrong_knobs and config in (wrong, hole)
        assert r["agrees"] is (not spoiled), r
        assert r["ms"] > 0 and r["pct_copy"] > 0
        if spoiled and config == hole:
            assert r["unwritten"] == 1 and r["grad_err"] <= 1e-6
        if spoiled and config == wrong:
            assert r["unwritten"] == 0 and r["grad_err"] > 1e-5
    if C <= gpu_sweep.WARP_MAX_C:
        assert any(r["lanes"] == 32 for r in results)
    assert {c for c in gpu_sweep.CLUSTER_CONFIGS} <= {
        (r["lanes"], r["block"], r["cached"]) for r in results if r["agrees"]}
    assert call["call_ms"] > 0 and call["torch_eager_ms"] > 0
    text = gpu_sweep.table(results, {(N, C, dtype): call})
    assert text.count("| NO |") == 2 and "(backend)" in text
    assert "with the fastest agreeing variant" in text
    assert "| cluster of 4 x 512 | True |" in text
    # a 256-thread cluster block is held to two blocks' registers per multiprocessor
    assert re.search(r"\| cluster of 2 x 256 \| True \| 4 \| 2 \|", text)


@pytest.mark.parametrize("spoil", [None, "softmax", "binary_cross_entropy"])
def test_gpu_check_times_every_other_kernel(gpu, gpu_sweep, monkeypatch, spoil):
    """gpu_check.other_kernels end to end on the stand-in (torch on the CPU): every kernel
    besides cross_entropy is timed against torch and checked against torch in float64 on
    the same inputs; a kernel whose value or gradient is off is reported as failing."""
    import sys
    gpu_check = sys.modules["gpu_check"]          # imported by gpu_sweep
    torch = pytest.importorskip("torch")
    cp = for_benchmarks(gpu.cp)
    if spoil is not None:
        real = getattr(fx, spoil)

        def spoiled(*args, **kwargs):
            out = real(*args, **kwargs)
            wrong = out[1] if isinstance(out, tuple) else out    # the gradient, or the value
            wrong.reshape(-1)[3] += 0.01 * float(abs(wrong).max())
            return out
        monkeypatch.setattr(fx, spoil, spoiled)
    log = []
    rows, failures = gpu_check.other_kernels(
        cp, fx, torch, 1000.0, log.append, deadline=float("inf"), dtypes=("float32",),
        class_shape=(6, 40), element_shape=(5, 8))
    ops = ("nll_loss", "logsumexp", "softmax", "log_softmax",
           "binary_cross_entropy_with_logits",
           "binary_cross_entropy_with_logits, pos_weight per class", "binary_cross_entropy",
           "kl_div")
    assert [r["op"] for r in rows] == list(ops) and len(log) == len(ops)
    for r in rows:
        assert r["fastxent ms"] > 0 and r["torch eager ms"] > 0 and r["pct_copy"] > 0
        assert r["ok"] is (r["op"] != spoil), r
    assert [r["op"] for r in failures] == ([] if spoil is None else [spoil])
    table = gpu_check.other_table(rows)
    assert table.count("\n") == len(ops) + 1 and table.count("FAIL") == len(failures)


@pytest.mark.parametrize("script", ["gpu_check.py", "gpu_profile.py", "gpu_sweep.py",
                                    "gpu_ncu.py"])
def test_gpu_scripts_compile(script):
    import pathlib
    import py_compile
    py_compile.compile(str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks" /
                           script), doraise=True)


def test_the_stand_in_refuses_host_arrays_as_cupy_does(gpu):
    """What keeps the stand-in honest: a host array mixed into a device operation raises,
    a reduction gives a 0-d device array, and NumPy's functions keep device arrays."""
    a = gpu.dev(np.arange(3.0))
    with pytest.raises(TypeError, match="host array"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="host array"):
        np.where(a > 1, np.zeros(3), a)
    assert type(a + np.float64(1)) is ndarray and type(a.sum()) is ndarray
    assert type(np.moveaxis(gpu.cp.ones((2, 3)), 0, 1)) is ndarray
    with pytest.raises(TypeError, match="order"):
        np.subtract(a, a, order="C")


def test_loss_classes_run_on_the_device(gpu):
    """The torch.nn-style classes hand CuPy arrays to the CuPy backend, with host options
    (class weights, pos_weight) moved there: device results, the host's values."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    y = rng.uniform(size=(6, 5))
    w = rng.uniform(0.5, 2, 5)
    cases = [(fx.CrossEntropyLoss(weight=w, label_smoothing=0.1), x, t),
             (fx.NLLLoss(weight=w, reduction="sum"), fx.log_softmax(x), t),
             (fx.BCELoss(reduction="none"), 1 / (1 + np.exp(-x)), y),
             (fx.BCEWithLogitsLoss(pos_weight=w), x, y),
             (fx.KLDivLoss(reduction="batchmean"), fx.log_softmax(x), y)]
    for loss_fn, inp, target in cases:
        want = loss_fn.loss_and_grad(inp, target, grad_output=1.5 if loss_fn.reduction
                                     != "none" else np.full(inp.shape, 1.5))
        got = loss_fn.loss_and_grad(gpu.dev(inp), gpu.dev(target),
                                    grad_output=1.5 if loss_fn.reduction != "none"
                                    else gpu.dev(np.full(inp.shape, 1.5)))
        for g, e in zip((loss_fn(gpu.dev(inp), gpu.dev(target)),) + got,
                        (want[0],) + want):
            assert type(g) is ndarray, type(loss_fn).__name__
            _close(g, e, "float64", type(loss_fn).__name__)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss",
                                  "binary_cross_entropy_with_logits"])
def test_host_arrays_in_the_other_byte_order(gpu, name):
    """Host targets, weights and upstream gradients stored big-endian (FITS, HDF5) reach
    the device as their values: CuPy alone would copy their bytes as they lie."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 5))
    w = rng.uniform(0.5, 2, 5)
    t = rng.integers(0, 5, 6) if name != "binary_cross_entropy_with_logits" \
        else rng.uniform(size=(6, 5))
    go = rng.uniform(0.5, 1.5, 6 if name != "binary_cross_entropy_with_logits" else (6, 5))
    options = {"weight": w, "reduction": "none"}
    if name == "binary_cross_entropy_with_logits":
        options["pos_weight"] = w[::-1].copy()
    want = getattr(fx, name)(x, t, **options, return_grad=True, grad_output=go)
    for swap in ("target", "grad_output", *options):
        if swap == "reduction":
            continue
        given = {k: swapped(v) if k == swap else v
                 for k, v in {**options, "target": t, "grad_output": go}.items()}
        got = getattr(fx, name)(gpu.dev(x), given.pop("target"), **given, return_grad=True)
        for g, e in zip(got, want):
            assert type(g) is ndarray
            _close(g, e, "float64", swap)


@pytest.mark.parametrize("target", ["indices", "probabilities"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("C", [6, 300])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_an_infinite_upstream_gradient_as_the_cpu_path(gpu, target, label_smoothing, C,
                                                      reduction):
    """PyTorch's NaNs and infinities (docs/nonfinite.md), which the CPU path gives: NaN at
    the target, and across the row with smoothing or probability targets."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((8, C)) * 3
    x[1, 2] = -np.inf
    t = rng.integers(0, C, 8) if target == "indices" else fx.softmax(rng.standard_normal((8, C)))
    if target == "indices":
        t[::3] = -100
    go = np.where(np.arange(8) % 2 == 0, np.inf, -1.5) if reduction == "none" else -np.inf
    kw = {"weight": rng.uniform(0.5, 2, C), "label_smoothing": label_smoothing,
          "reduction": reduction}
    want = fx.cross_entropy(x, t, return_grad=True, grad_output=go, **kw)
    got = fx.cross_entropy(gpu.dev(x), gpu.dev(t), return_grad=True,
                           grad_output=go if reduction != "none" else gpu.dev(go),
                           **{k: gpu.dev(v) if k == "weight" else v for k, v in kw.items()})
    for g, e in zip(got, want):
        _close(g, e, "float64")
    assert np.isnan(want[1]).any() and np.isinf(want[1]).any() == (label_smoothing == 0 and
                                                                    target == "indices")


def test_the_stand_in_copies_swapped_bytes_as_cupy_does(gpu):
    a = swapped(np.arange(3.0))
    assert not np.array_equal(gpu.cp.asarray(a).view(np.ndarray), np.arange(3.0))


@pytest.mark.parametrize("pos_weight", [None, 1.0, 2.0])
def test_bce_logits_of_infinite_targets_as_torch(gpu, pos_weight):
    """Without pos_weight the device leaves its terms out, as PyTorch does: an infinite
    target gives an infinite loss and gradient, where pos_weight = 1 makes 0 * inf a NaN."""
    import oracle
    x = np.array([0.3772, -2.0, 0.0, 5.0])
    y = np.array([np.inf, -np.inf, np.inf, 0.5])
    pw = None if pos_weight is None else np.full(4, pos_weight)
    want = oracle.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    for dtype in ("float64", "float32"):
        got = fx.binary_cross_entropy_with_logits(
            gpu.dev(x.astype(dtype)), gpu.dev(y.astype(dtype)),
            pos_weight=None if pw is None else gpu.dev(pw), reduction="none",
            return_grad=True)
        _close(got[0], want[0], dtype)
        _close(got[1], want[1], dtype)


WORK_PER_CALL = {
    # the flag and tickets' memset, "mean"'s denominator, the rows (which write the reduced
    # loss), the error flag's copy to pinned memory
    "cross_entropy mean": ["zeros", "kernel mean_scale", "kernel rows", "copy to host"],
    "cross_entropy mean, weights": ["zeros", "kernel mean_scale", "kernel rows",
                                    "copy to host"],
    "cross_entropy sum": ["zeros", "kernel rows", "copy to host"],
    "cross_entropy none": ["zeros", "kernel rows", "copy to host", "astype"],
    # "mean" over a count the host knows scales the default grad_output by a number
    "cross_entropy probabilities mean": ["zeros", "kernel rows"],
    "cross_entropy probabilities none": ["kernel rows", "astype"],
    "nll_loss mean": ["zeros", "kernel mean_scale", "kernel rows", "copy to host"],
    # the element-wise kernel's last block writes the reduced loss
    "binary_cross_entropy mean": ["zeros", "kernel elementwise", "copy to host"],
    "binary_cross_entropy_with_logits mean": ["zeros", "kernel elementwise"],
    # a grad_output of the caller's is divided on the device
    "binary_cross_entropy_with_logits mean, grad_output": [
        "fused fastxent_mean", "zeros", "kernel elementwise"],
    "binary_cross_entropy_with_logits none": ["kernel elementwise"],
    # a number of the caller's rides with the kernel's arguments, as the default does
    "cross_entropy mean, number grad_output": ["zeros", "kernel mean_scale", "kernel rows",
                                               "copy to host"],
    "cross_entropy sum, number grad_output": ["zeros", "kernel rows", "copy to host"],
    "binary_cross_entropy_with_logits mean, number grad_output": ["zeros",
                                                                  "kernel elementwise"],
    "binary_cross_entropy_with_logits none, number grad_output": ["kernel elementwise"],
    "softmax": ["kernel rows"],
}


@pytest.mark.parametrize("call", list(WORK_PER_CALL))
def test_device_work_per_call(gpu, call):
    """What one float32 call with a gradient asks of the device: each launch, memset or
    copy costs CuPy's host tens of microseconds, which sets the time of a call below about
    4096 x 32000 (docs/gpu.md). A reduced class-index "mean" is two launches: its
    denominator (reduce.cu) and the rows, which write the reduced loss; and
    binary_cross_entropy's range check is in its kernel."""
    import cupy_stand_in
    rng = np.random.default_rng(0)
    x = gpu.dev(rng.standard_normal((64, 100)).astype(np.float32))
    t = gpu.dev(rng.integers(0, 100, 64))
    p = gpu.dev(rng.uniform(size=(64, 100)).astype(np.float32))
    calls = {
        "cross_entropy mean": lambda: fx.cross_entropy(x, t, return_grad=True),
        "cross_entropy mean, weights": lambda: fx.cross_entropy(
            x, t, weight=gpu.dev(rng.uniform(0.5, 2, 100)), return_grad=True),
        "cross_entropy sum": lambda: fx.cross_entropy(x, t, reduction="sum",
                                                      return_grad=True),
        "cross_entropy none": lambda: fx.cross_entropy(x, t, reduction="none",
                                                       return_grad=True),
        "cross_entropy probabilities mean": lambda: fx.cross_entropy(x, p, return_grad=True),
        "cross_entropy probabilities none": lambda: fx.cross_entropy(
            x, p, reduction="none", return_grad=True, grad_output=gpu.dev(np.ones(64))),
        "nll_loss mean": lambda: fx.nll_loss(x, t, return_grad=True),
        "binary_cross_entropy mean": lambda: fx.binary_cross_entropy(p, p, return_grad=True),
        "binary_cross_entropy_with_logits mean": lambda: fx.binary_cross_entropy_with_logits(
            x, p, return_grad=True),
        "binary_cross_entropy_with_logits mean, grad_output":
            lambda: fx.binary_cross_entropy_with_logits(x, p, return_grad=True,
                                                        grad_output=gpu.dev(np.array(2.0))),
        "binary_cross_entropy_with_logits none": lambda: fx.binary_cross_entropy_with_logits(
            x, p, reduction="none", return_grad=True, grad_output=gpu.dev(np.ones((64, 100)))),
        "cross_entropy mean, number grad_output": lambda: fx.cross_entropy(
            x, t, return_grad=True, grad_output=0.3),
        "cross_entropy sum, number grad_output": lambda: fx.cross_entropy(
            x, t, reduction="sum", return_grad=True, grad_output=np.float32(0.3)),
        "binary_cross_entropy_with_logits mean, number grad_output":
            lambda: fx.binary_cross_entropy_with_logits(x, p, return_grad=True,
                                                        grad_output=np.array(2.0)),
        "binary_cross_entropy_with_logits none, number grad_output":
            lambda: fx.binary_cross_entropy_with_logits(x, p, reduction="none",
                                                        return_grad=True, grad_output=-1.5),
        "softmax": lambda: fx.softmax(x),
    }
    calls[call]()                       # the first call also makes the cached 1.0
    cupy_stand_in.WORK.clear()
    calls[call]()
    assert cupy_stand_in.WORK == WORK_PER_CALL[call]
    _gpu.check_errors()


def test_the_cached_one_is_waited_for_once_a_device(gpu):
    """The default grad_output, a 1.0 made once per device, is waited for when it is made:
    a call on another stream would read it without waiting for the stream that fills it."""
    import cupy_stand_in
    x = np.zeros((4, 3), np.float32)
    t = np.array([0, 1, 2, 0])
    _gpu._one.cache_clear()
    for device, made in ((0, True), (0, False), (1, True)):
        with Device(device):
            x_d, t_d = gpu.dev(x), gpu.dev(t)
            cupy_stand_in.WORK.clear()
            fx.cross_entropy(x_d, t_d, return_grad=True)
            assert (cupy_stand_in.WORK[:2] == ["full", "synchronize"]) == made
            assert cupy_stand_in.WORK.count("synchronize") == made, cupy_stand_in.WORK
    _gpu._one.cache_clear()


# --- several devices ----------------------------------------------------------------------

_ON_DEVICE_CALLS = {
    "cross_entropy": lambda d, x, t, y: fx.cross_entropy(d(x), d(t), weight=d(np.ones(5)),
                                                         return_grad=True),
    "cross_entropy probabilities": lambda d, x, t, y: fx.cross_entropy(d(x), d(y),
                                                                       return_grad=True),
    "nll_loss": lambda d, x, t, y: fx.nll_loss(d(x), d(t), return_grad=True),
    "binary_cross_entropy": lambda d, x, t, y: fx.binary_cross_entropy(d(y), d(y),
                                                                       return_grad=True),
    "binary_cross_entropy_with_logits": lambda d, x, t, y: fx.binary_cross_entropy_with_logits(
        d(x), d(y), pos_weight=d(np.full(5, 2.0)), return_grad=True),
    "kl_div": lambda d, x, t, y: fx.kl_div(d(x), d(y), return_grad=True),
    "softmax": lambda d, x, t, y: fx.softmax(d(x)),
    "log_softmax": lambda d, x, t, y: fx.log_softmax(d(x), axis=0),
    "logsumexp": lambda d, x, t, y: fx.logsumexp(d(x), keepdims=True),
}


def _operands():
    rng = np.random.default_rng(11)
    return (rng.standard_normal((4, 5)).astype(np.float32), rng.integers(0, 5, 4),
            rng.uniform(0.1, 0.9, (4, 5)).astype(np.float32))


@pytest.mark.parametrize("name", list(_ON_DEVICE_CALLS))
def test_a_call_runs_on_its_inputs_device(gpu, name):
    """Arrays made under ``with cp.cuda.Device(1)`` and a call made outside it: the kernels
    run on device 1 (the stand-in asserts that every launch's arrays are on the current
    device: another device's memory would fault there), and so do the results; the current
    device is left as it was."""
    call, (x, t, y) = _ON_DEVICE_CALLS[name], _operands()
    want = call(lambda a: a, x, t, y)
    with gpu.cp.cuda.Device(1):
        operands = [gpu.dev(a) for a in (x, t, y, np.ones(5), np.full(5, 2.0))]
    table = {id(a): d for a, d in zip((x, t, y), operands)}

    def on_1(a):
        return table.get(id(a)) if id(a) in table else _device_1(gpu, a)
    got = call(on_1, x, t, y)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        assert g.device.id == 1
        _close(g, w, "float32")
    assert gpu.cp.cuda.Device().id == 0
    _gpu.check_errors()


def _device_1(gpu, a):
    with gpu.cp.cuda.Device(1):
        return gpu.dev(a)


@pytest.mark.parametrize("argument", ["target", "weight", "grad_output", "grad_out"])
def test_an_argument_on_another_device_is_refused(gpu, argument):
    x, t, _ = _operands()
    kwargs = dict(target=gpu.dev(t), weight=gpu.dev(np.ones(5)), grad_output=gpu.dev(
        np.array(1.0)), grad_out=gpu.dev(np.empty_like(x)))
    kwargs[argument] = _device_1(gpu, np.asarray(kwargs[argument]))
    target = kwargs.pop("target")
    with pytest.raises(ValueError, match=f"^{argument} must be on the input's device "
                                         f"\\(GPU 0\\); got an array on GPU 1$"):
        fx.cross_entropy(gpu.dev(x), target, return_grad=True, **kwargs)
    assert not gpu.kernels
