"""The CuPy backend on a GPU: the same functions on cupy arrays, against the CPU backend
(itself tested against PyTorch) and, where torch has CUDA, against torch on the device.

Skipped where CuPy or a CUDA device is missing (CI has neither); the CUDA sources are still
compiled and their row bodies run on the CPU there (test_cuda_sources.py).
"""
import numpy as np
import pytest

import fastxent as fx

cp = pytest.importorskip("cupy")
try:
    HAVE_DEVICE = cp.cuda.runtime.getDeviceCount() > 0
except Exception:                                     # no driver
    HAVE_DEVICE = False
pytestmark = pytest.mark.skipif(not HAVE_DEVICE, reason="no CUDA device")

from fastxent import _gpu  # noqa: E402
import cuda_host_lib  # noqa: E402

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
          "bfloat16": ml_dtypes.bfloat16}


def _close(got, want, dtype):
    cuda_host_lib.assert_close(cp.asnumpy(got), want, dtype)


SHAPES = [((7, 10), 1), ((4, 1000), 1), ((3, 5000), 1), ((2, 50257), 1),
          ((3, 4, 5, 2), 1), ((2, 3, 300), -1)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"weight": True}, {"label_smoothing": 0.1},
                                     {"weight": True, "label_smoothing": 0.2},
                                     {"ignored": True}])
def test_cross_entropy_matches_the_cpu(dtype, shape, axis, reduction, options):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(DTYPES[dtype])
    C = shape[axis]
    t = rng.integers(0, C, x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1:])
    kw = {}
    if options.get("weight"):
        kw["weight"] = rng.uniform(0.5, 2, C)
    if "label_smoothing" in options:
        kw["label_smoothing"] = options["label_smoothing"]
    if options.get("ignored"):
        t.flat[::3] = -100
    want, want_grad = fx.cross_entropy(x, t, axis=axis, reduction=reduction,
                                       return_grad=True, **kw)
    xg = cp.asarray(x)
    loss, grad = fx.cross_entropy(xg, cp.asarray(t), axis=axis, reduction=reduction,
                                  return_grad=True,
                                  **{k: cp.asarray(v) if k == "weight" else v
                                     for k, v in kw.items()})
    assert isinstance(loss, cp.ndarray) and isinstance(grad, cp.ndarray)
    assert grad.dtype == x.dtype and loss.dtype == x.dtype
    _close(loss, want, dtype)
    _close(grad, want_grad, dtype)
    again = fx.cross_entropy(xg, cp.asarray(t), axis=axis, reduction=reduction,
                             return_grad=True, **kw)
    assert cp.array_equal(again[0], loss, equal_nan=True)
    assert cp.array_equal(again[1], grad, equal_nan=True)
    fx.check_errors()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_a_non_finite_weight_of_an_untargeted_class(dtype, shape, axis, eps):
    # finite without smoothing; with it, NaN in that class and in every ignored row (PyTorch)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 3).astype(DTYPES[dtype])
    C = shape[axis]
    t = rng.integers(0, C, x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1:])
    t[t == 1] = 0
    t.flat[::3] = -100
    w = rng.uniform(0.5, 2, C)
    w[1] = np.inf
    want = fx.cross_entropy(x, t, axis=axis, weight=w, label_smoothing=eps,
                            reduction="none", return_grad=True)
    got = fx.cross_entropy(cp.asarray(x), cp.asarray(t), axis=axis, weight=cp.asarray(w),
                           label_smoothing=eps, reduction="none", return_grad=True)
    if eps == 0:
        assert bool(cp.isfinite(got[1]).all())
    _close(got[1], want[1], dtype)
    _close(got[0], want[0], dtype)
    _gpu.check_errors()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_in_place_gradient_and_grad_out(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 32000)) * 3).astype(DTYPES[dtype])
    t = rng.integers(0, 32000, 64)
    want, want_grad = fx.cross_entropy(x, t, return_grad=True)
    work = cp.asarray(x)
    loss, grad = fx.cross_entropy(work, cp.asarray(t), return_grad=True, grad_out=work)
    assert grad is work
    _close(loss, want, dtype)
    _close(work, want_grad, dtype)
    buf = cp.full(x.shape, np.nan, x.dtype)           # poisoned: every element is written
    fx.cross_entropy(cp.asarray(x), cp.asarray(t), return_grad=True, grad_out=buf)
    _close(buf, want_grad, dtype)


@pytest.mark.parametrize("shape", [(64, 1000), (8, 50, 6)])
def test_fresh_outputs_keep_the_inputs_layout(shape):
    """Fortran-ordered logits get a Fortran-ordered gradient and softmax, as on the CPU
    (and the thread-per-row kernel's writes stay coalesced)."""
    rng = np.random.default_rng(4)
    x = np.asfortranarray((rng.standard_normal(shape) * 3).astype(np.float32))
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    y = rng.uniform(size=shape).astype(np.float32)
    cases = [(fx.cross_entropy, (x, t), {}), (fx.nll_loss, (x, t), {}),
             (fx.binary_cross_entropy_with_logits, (x, y), dict(reduction="none"))]
    for fn, args, kw in cases:
        want = fn(*args, return_grad=True, **kw)
        got = fn(*map(cp.asarray, args), return_grad=True, **kw)
        assert got[1].strides == want[1].strides and got[1].flags.f_contiguous
        _close(got[1], want[1], "float32")
    for fn in (fx.softmax, fx.log_softmax):
        got = fn(cp.asarray(x), axis=1)
        assert got.strides == fn(x, axis=1).strides
        _close(got, fn(x, axis=1), "float32")


def test_probability_targets_nll_and_transforms():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 777)).astype(np.float32)
    q = rng.uniform(size=x.shape).astype(np.float32)
    q /= q.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2, 777)
    for fn, args, kw in [
        (fx.cross_entropy, (x, q), dict(weight=w, label_smoothing=0.1)),
        (fx.nll_loss, (x, rng.integers(0, 777, 16)), dict(weight=w)),
    ]:
        want, want_grad = fn(*args, reduction="sum", return_grad=True, **kw)
        got, got_grad = fn(*map(cp.asarray, args), reduction="sum", return_grad=True,
                           **{k: cp.asarray(v) if k == "weight" else v for k, v in kw.items()})
        _close(got, want, "float32")
        _close(got_grad, want_grad, "float32")
    for fn in (fx.logsumexp, fx.softmax, fx.log_softmax):
        for axis in (0, 1, -1):
            _close(fn(cp.asarray(x), axis=axis), fn(x, axis=axis), "float32")
    _close(fx.logsumexp(cp.asarray(x), axis=None), fx.logsumexp(x, axis=None), "float32")
    x3 = x[:12].reshape(3, 4, -1)
    for fn in (fx.logsumexp, fx.softmax, fx.log_softmax):
        for axis in ((1, 2), (0, 2), ()):
            _close(fn(cp.asarray(x3), axis=axis), fn(x3, axis=axis), "float32")


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_elementwise_losses(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((33, 17)).astype(DTYPES[dtype])
    y = rng.uniform(size=x.shape).astype(DTYPES[dtype])
    p = rng.uniform(0.01, 0.99, x.shape).astype(DTYPES[dtype])
    w, pw = rng.uniform(0.5, 2, x.shape), rng.uniform(0.5, 3, 17)
    for fn, inp, kw in [(fx.binary_cross_entropy_with_logits, x, dict(weight=w, pos_weight=pw)),
                        (fx.binary_cross_entropy, p, dict(weight=w)),
                        (fx.kl_div, x, dict(reduction="batchmean")),
                        (fx.kl_div, x, dict(log_target=True, reduction="none"))]:
        kw.setdefault("reduction", "mean")
        want, want_grad = fn(inp, y, return_grad=True, **kw)
        got, got_grad = fn(cp.asarray(inp), cp.asarray(y), return_grad=True,
                           **{k: cp.asarray(v) if k in ("weight", "pos_weight") else v
                              for k, v in kw.items()})
        _close(got, want, dtype)
        _close(got_grad, want_grad, dtype)


def test_broadcast_and_infinite_targets():
    """kl_div's target broadcasts to the input; BCE with logits of an infinite target
    without pos_weight is infinite, as PyTorch's (pos_weight = 1 makes it NaN)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 7))
    q = rng.dirichlet(np.ones(7))
    for red in ("none", "sum"):
        _close(fx.kl_div(cp.asarray(x), cp.asarray(q), reduction=red, return_grad=True)[1],
               fx.kl_div(x, q, reduction=red, return_grad=True)[1], "float64")
    y = np.tile([np.inf, -np.inf, 0.5], (5, 1))
    for pw in (None, np.ones(3)):
        want = fx.binary_cross_entropy_with_logits(x[:, :3], y, pos_weight=pw,
                                                   reduction="none", return_grad=True)
        got = fx.binary_cross_entropy_with_logits(
            cp.asarray(x[:, :3]), cp.asarray(y), reduction="none", return_grad=True,
            pos_weight=None if pw is None else cp.asarray(pw))
        for g, w in zip(got, want):
            _close(g, w, "float64")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reductions_over_many_blocks(dtype):
    """Two-stage reductions over hundreds of blocks, each adding its part and the last one
    the partials: "mean"'s denominator (reduce.cu) and the row kernel's reduced loss on a
    segmentation batch of 2**21 targets (21 classes, weights, ignored pixels), and the
    element-wise kernel's own on 2**20 losses; the same bits on a repeat."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((32, 21, 256, 256)) * 3).astype(DTYPES[dtype])
    t = rng.integers(0, 21, (32, 256, 256))
    t[:, :40] = 255
    w = rng.uniform(0.5, 2, 21)
    for red in ("mean", "sum"):
        want, want_grad = fx.cross_entropy(x, t, weight=w, ignore_index=255, reduction=red,
                                           return_grad=True)
        calls = [fx.cross_entropy(cp.asarray(x), cp.asarray(t), weight=cp.asarray(w),
                                  ignore_index=255, reduction=red, return_grad=True)
                 for _ in range(2)]
        _close(calls[0][0], want, dtype)
        _close(calls[0][1], want_grad, dtype)
        assert cp.array_equal(calls[0][0], calls[1][0])
    y = rng.uniform(size=(1024, 1024)).astype(DTYPES[dtype])
    z = rng.standard_normal(y.shape).astype(DTYPES[dtype])
    for red in ("mean", "sum"):
        want = fx.binary_cross_entropy_with_logits(z, y, reduction=red)
        got = [fx.binary_cross_entropy_with_logits(cp.asarray(z), cp.asarray(y), reduction=red)
               for _ in range(2)]
        _close(got[0], want, dtype)
        assert cp.array_equal(got[0], got[1])
    fx.check_errors()


def test_value_errors_are_raised_after_the_call():
    x = cp.zeros((4, 3), cp.float32)
    loss = fx.cross_entropy(x, cp.asarray([0, 3, 1, 2]), reduction="none")
    assert bool(cp.isnan(loss[1])) and not bool(cp.isnan(loss[0]))
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        fx.check_errors()
    fx.binary_cross_entropy(cp.asarray([0.5, 1.5]), cp.asarray([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fx.check_errors()
    with pytest.raises(ValueError, match="reduction"):
        fx.cross_entropy(x, cp.asarray([0, 1, 1, 2]), reduction="avg")


def test_against_torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((256, 32000)) * 3).astype(np.float32)
    t = rng.integers(0, 32000, 256)
    xt = torch.tensor(x, device="cuda", requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(t, device="cuda"),
                                            label_smoothing=0.1)
    ref.backward()
    loss, grad = fx.cross_entropy(cp.asarray(x), cp.asarray(t), label_smoothing=0.1,
                                  return_grad=True)
    _close(loss, ref.item(), "float32")
    _close(grad, xt.grad.cpu().numpy(), "float32")


@pytest.mark.parametrize("chunks", [(16, 40), (16, 16)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_dask_cupy_chunks(chunks, reduction):
    """fastxent.dask on CuPy chunks with real CuPy: the class-chunked path's array
    expressions run through NumPy's dispatch to CuPy; results have CuPy blocks and the
    NumPy API's values; device errors raise in compute."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    import fastxent.dask as fxd
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 40)) * 3
    t = rng.integers(0, 40, 50)
    t[::7] = -100
    w = rng.uniform(0.5, 2, 40)
    q = rng.dirichlet(np.ones(40), 50)
    xd = da.from_array(cp.asarray(x), chunks=chunks)
    for target, kw in ((t, dict(weight=w, label_smoothing=0.1)), (q, {})):
        want = fx.cross_entropy(x, target, reduction=reduction, return_grad=True, **kw)
        got = dask.compute(*fxd.cross_entropy(xd, target, reduction=reduction,
                                              return_grad=True, **kw))
        for g, e in zip(got, want):
            assert isinstance(g, cp.ndarray)
            _close(g, e, "float64")
    want = fx.nll_loss(x, t, weight=w, reduction=reduction, return_grad=True)
    got = dask.compute(*fxd.nll_loss(xd, t, weight=w, reduction=reduction, return_grad=True))
    for g, e in zip(got, want):
        _close(g, e, "float64")
    for fn in ("softmax", "log_softmax", "logsumexp"):
        _close(getattr(fxd, fn)(xd).compute(), getattr(fx, fn)(x), "float64")
    y = rng.uniform(size=x.shape)
    want = fx.binary_cross_entropy_with_logits(x, y, pos_weight=w, reduction=reduction,
                                               return_grad=True)
    got = dask.compute(*fxd.binary_cross_entropy_with_logits(
        xd, y, pos_weight=w, reduction=reduction, return_grad=True))
    for g, e in zip(got, want):
        _close(g, e, "float64")
    bad = t.copy()
    bad[3] = 40
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        fxd.cross_entropy(xd, bad, reduction=reduction).compute()
    assert not _gpu._pending


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cluster_per_row_matches_the_cpu(k, dtype):
    """rows_cluster (sm_90; gpu_sweep.py's variant, not yet the backend's choice): K blocks
    per row, each caching its slice, combine their reductions over distributed shared
    memory. Losses and gradient against the CPU backend, with smoothing and weights, an
    ignored row, and the same bits on a repeat; the summed loss the kernel writes (each
    cluster's first block adds its rows) against the rows' own sum."""
    from fastxent import _cuda_sources as S
    from fastxent import _gpu_plan as P
    if int(cp.cuda.Device().compute_capability) < 90:
        pytest.skip("thread-block clusters need sm_90")
    rng = np.random.default_rng(7)
    N, C = 37, 128256
    x = (rng.standard_normal((N, C)) * 3).astype(DTYPES[dtype])
    t = rng.integers(0, C, N)
    t[5] = -100
    w = rng.uniform(0.5, 2, C)
    want, want_grad = fx.cross_entropy(x, t, weight=w, label_smoothing=0.1,
                                       reduction="none", return_grad=True)
    config = (512 * k, 512, True)
    name = S.row_kernel("ce_index", dtype, "int64", config)
    fn = cp.RawModule(code=S.source("rows.cu"), options=S.OPTIONS,
                      name_expressions=[name]).get_function(name)
    smem = P.row_shared_bytes(C, config, x.itemsize)
    fn.max_dynamic_shared_size_bytes = smem
    xg, tg = cp.asarray(x), cp.asarray(t)
    outs = []
    for _ in range(2):
        g = cp.full(x.shape, np.nan, x.dtype) if dtype == "float32" else cp.empty_like(xg)
        rows, err = cp.full(N, np.nan), cp.zeros(1, cp.int32)
        n_sm = cp.cuda.Device().attributes["MultiProcessorCount"]
        grid = P.row_grid(N, config, n_sm)
        total = cp.full((), np.nan)
        args = P.row_args(xg.reshape(N, C, 1), t2=tg.reshape(N, 1), w=cp.asarray(w),
                          eps=0.1, gscale2=cp.ones((N, 1)), rows_out=rows,
                          g3=g.reshape(N, C, 1), err=err, counter=cp.zeros(1, cp.int32),
                          partial=cp.full(grid, np.nan), mode="sum", out=total)
        fn((grid,), (512,), args, shared_mem=smem)
        outs.append((rows, g))
        assert int(err[0]) == 0
        np.testing.assert_allclose(float(total), float(rows.sum()), rtol=1e-12)
    _close(outs[0][0], want, dtype)
    _close(outs[0][1], want_grad, dtype)
    assert cp.array_equal(outs[0][0], outs[1][0])
    assert cp.array_equal(outs[0][1].view(cp.uint16 if dtype == "bfloat16" else cp.uint32),
                          outs[1][1].view(cp.uint16 if dtype == "bfloat16" else cp.uint32))
