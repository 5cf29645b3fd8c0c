"""fastxent.dask with CuPy chunks, run on the CuPy stand-in (cupy_stand_in, no GPU).

Every block runs the CuPy backend (its kernels are the CUDA sources' bodies built by g++),
the array expressions of the class-chunked path run through NumPy's dispatch on stand-in
arrays that refuse host operands as CuPy does, and the answers are the NumPy API's on the
same data. The results must be lazy arrays of CuPy chunks whose blocks are CuPy arrays.
"""
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastxent as fx
from fastxent import _gpu

import cuda_host_lib
from cases import BAD_CALLS, DASK_CLASS_LAYOUTS, assert_refused_as_numpy
from cupy_stand_in import ndarray

pytestmark = pytest.mark.main_run_only

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
fxd = pytest.importorskip("fastxent.dask")

RNG = np.random.default_rng(20261124)



def on_device(gpu, a, chunks):
    return da.from_array(gpu.dev(np.asarray(a)), chunks=chunks)


def computed(result):
    """The results computed together, after checking that each is a lazy array of CuPy
    chunks and that each computed block is a CuPy array."""
    results = result if isinstance(result, tuple) else (result,)
    for r in results:
        assert type(r._meta) is ndarray, type(r._meta)
    got = dask.compute(*results)
    for g in got:
        assert type(g) is ndarray, type(g)
    return got


def assert_matches(got, want, dtype):
    for g, w in zip(got, want if isinstance(want, tuple) else (want,)):
        assert g.shape == np.shape(w) and g.dtype == np.asarray(w).dtype
        cuda_host_lib.assert_close(g, w, dtype)


def class_case(shape, axis, dtype, kind, options):
    x = RNG.normal(scale=3, size=shape).astype(dtype)
    ax = (0 if len(shape) == 1 else 1) if axis is None else axis % len(shape)
    C = shape[ax]
    loss_shape = shape[:ax] + shape[ax + 1:]
    if kind == "probs":
        t = RNG.dirichlet(np.ones(C), size=loss_shape).astype(dtype)
        t = np.moveaxis(t, -1, ax) if t.ndim > 1 else t
    else:
        t = RNG.integers(0, C, loss_shape)
        if options == "weighted":
            t.flat[::4] = -100
    kw = {}
    if options == "weighted":
        kw = dict(weight=RNG.uniform(0.5, 2, C))
        if kind != "nll":
            kw["label_smoothing"] = 0.15
    return x, t, ax, kw


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 30), c=st.integers(1, 12), rc=st.integers(1, 30),
       cc=st.integers(1, 12), eps=st.sampled_from([0.0, 0.3]),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**32 - 1))
def test_any_chunking_matches_numpy(gpu, n, c, rc, cc, eps, reduction, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=5, size=(n, c))
    t = rng.integers(-1, c, n)
    w = rng.random(c) + 0.1
    kw = dict(weight=w, ignore_index=-1, label_smoothing=eps, reduction=reduction,
              return_grad=True)
    assert_matches(computed(fxd.cross_entropy(on_device(gpu, x, (rc, cc)), gpu.dev(t), **kw)),
                   fx.cross_entropy(x, t, **kw), "float64")


@pytest.mark.parametrize("shape,chunks,axis", DASK_CLASS_LAYOUTS)
@pytest.mark.parametrize("fn,kind", [("cross_entropy", "index"), ("cross_entropy", "probs"),
                                     ("nll_loss", "nll")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", ["plain", "weighted"])
def test_class_losses(gpu, shape, chunks, axis, fn, kind, reduction, options):
    """Loss and gradient of CuPy-chunked logits equal the NumPy API's, for every chunking
    of rows and classes; targets as a CuPy-chunked Dask array or as host data."""
    x, t, ax, kw = class_case(shape, axis, np.float64, kind, options)
    go = RNG.uniform(0.5, 1.5, x.shape[:ax] + x.shape[ax + 1:]) if reduction == "none" else 0.7
    want = getattr(fx, fn)(x, t, axis=axis, reduction=reduction, return_grad=True,
                           grad_output=go, **kw)
    t_chunks = chunks if kind == "probs" else chunks[:ax] + chunks[ax + 1:]
    target = on_device(gpu, t, t_chunks) if options == "plain" else t       # both ways
    got = computed(getattr(fxd, fn)(on_device(gpu, x, chunks), target, axis=axis,
                                    reduction=reduction, return_grad=True, grad_output=go,
                                    **kw))
    assert_matches(got, want, "float64")
    assert not _gpu._pending


@pytest.mark.parametrize("chunks", [(10, 11), (7, 3)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_float32_cross_entropy(gpu, chunks, reduction):
    x, t, _, kw = class_case((37, 11), None, np.float32, "index", "weighted")
    want = fx.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    got = computed(fxd.cross_entropy(on_device(gpu, x, chunks), t, reduction=reduction,
                                     return_grad=True, **kw))
    assert_matches(got, want, "float32")
    # a block's "sum" is its float64 total, not rounded to float32 before the blocks add up
    dev = gpu.dev(x)
    for piece in (_gpu.cross_entropy(dev, gpu.dev(t), ignore_index=-100, reduction="sum",
                                     axis=None, return_grad=False, grad_output=None,
                                     grad_out=None, partial=True, **kw),
                  _gpu.binary_cross_entropy_with_logits(dev, dev, reduction="sum",
                                                        partial=True)):
        assert type(piece) is ndarray and piece.dtype == np.float64


def test_device_weight_and_grad_output(gpu):
    """A CuPy weight and a CuPy 0-d grad_output are taken as the host ones."""
    x, t, _, kw = class_case((12, 6), None, np.float64, "index", "weighted")
    want = fx.cross_entropy(x, t, return_grad=True, grad_output=2.5, **kw)
    kw["weight"] = gpu.dev(kw["weight"])
    got = computed(fxd.cross_entropy(on_device(gpu, x, (5, 6)), t, return_grad=True,
                                     grad_output=gpu.dev(np.array(2.5)), **kw))
    assert_matches(got, want, "float64")


@pytest.mark.parametrize("chunks", [(5, 6), (5, 4)])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_an_infinite_upstream_gradient(gpu, chunks, kind, eps):
    """PyTorch's NaNs (docs/nonfinite.md), from whole rows on the device and from class
    chunks alike."""
    x, t, _, kw = class_case((12, 6), None, np.float64, kind, "weighted")
    kw.pop("label_smoothing")
    go = np.where(np.arange(12) % 3 == 0, np.inf, 0.5)
    want = fx.cross_entropy(x, t, return_grad=True, grad_output=go, reduction="none",
                            label_smoothing=eps, **kw)
    got = computed(fxd.cross_entropy(on_device(gpu, x, chunks),
                                     on_device(gpu, t, chunks if kind == "probs" else 5),
                                     return_grad=True, grad_output=go, reduction="none",
                                     label_smoothing=eps, **kw))
    assert_matches(got, want, "float64")
    assert np.isnan(want[1]).any()


@pytest.mark.parametrize("chunks", [(12, 6), (5, 6), (5, 4)])
def test_one_kernel_launch_per_block(gpu, chunks):
    """Loss and gradient computed together launch one row kernel per block of whole rows,
    and one statistics and one gradient pass per block when the classes are split."""
    x, t, _, _ = class_case((12, 6), None, np.float64, "index", "plain")
    lazy = fxd.cross_entropy(on_device(gpu, x, chunks), t, return_grad=True)
    computed(lazy)
    rows = [k for k in gpu.kernels if k.kind == "rows"]
    blocks = -(-12 // chunks[0]) * -(-6 // chunks[1])
    # the split path's kernels are log-sum-exps (ce_stats), one per block
    assert len(rows) == blocks
    assert {k.op for k in rows} == {"ce_index" if chunks[1] == 6 else "logsumexp"}


@pytest.mark.parametrize("shape,chunks", [((7, 5), (3, 4)), ((9,), (4,))])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn", ["binary_cross_entropy", "binary_cross_entropy_with_logits",
                                "kl_div"])
def test_elementwise_losses(gpu, shape, chunks, reduction, fn):
    x = RNG.normal(size=shape)
    y = RNG.uniform(size=shape)
    kw = {}
    if fn == "binary_cross_entropy":
        x = 1 / (1 + np.exp(-x))
        kw["weight"] = RNG.uniform(0.5, 2, shape[-1:])
    elif fn == "binary_cross_entropy_with_logits":
        kw = dict(weight=RNG.uniform(0.5, 2, shape), pos_weight=RNG.uniform(0.5, 2, shape[-1]))
    else:
        y = np.log(y)
        kw["log_target"] = True
        reduction = "batchmean" if reduction == "mean" else reduction
    go = RNG.uniform(0.5, 1.5, shape) if reduction == "none" else 1.3
    want = getattr(fx, fn)(x, y, reduction=reduction, return_grad=True, grad_output=go, **kw)
    if "weight" in kw:           # element-wise weights as CuPy-chunked Dask arrays
        kw["weight"] = on_device(gpu, kw["weight"], kw["weight"].shape)
    got = computed(getattr(fxd, fn)(on_device(gpu, x, chunks), y, reduction=reduction,
                                    return_grad=True, grad_output=go, **kw))
    assert_matches(got, want, "float64")
    assert not _gpu._pending


@pytest.mark.parametrize("shape,chunks,axis", [((8, 10), (3, 10), -1), ((8, 10), (3, 4), -1),
                                               ((8, 10), (3, 4), 0), ((6, 4, 5), (4, 2, 5), 1),
                                               ((8, 10), (3, 4), None)])
def test_transforms(gpu, shape, chunks, axis):
    x = RNG.normal(scale=4, size=shape)
    x.flat[3] = -np.inf
    lazy = on_device(gpu, x, chunks)
    for keepdims in (False, True):
        assert_matches(computed(fxd.logsumexp(lazy, axis=axis, keepdims=keepdims)),
                       fx.logsumexp(x, axis=axis, keepdims=keepdims), "float64")
    for fn in ("softmax", "log_softmax"):
        assert_matches(computed(getattr(fxd, fn)(lazy, axis=axis)),
                       getattr(fx, fn)(x, axis=axis), "float64")


def test_a_cupy_array_is_taken_as_one_chunk(gpu):
    x, t, _, _ = class_case((9, 4), None, np.float64, "index", "plain")
    got = computed(fxd.cross_entropy(gpu.dev(x), t, return_grad=True))
    assert_matches(got, fx.cross_entropy(x, t, return_grad=True), "float64")


def test_all_targets_ignored(gpu):
    """"mean" of no counted target: NaN and a zero gradient, as PyTorch gives."""
    x = RNG.normal(size=(6, 5))
    t = np.full(6, -100)
    for chunks in ((3, 5), (3, 2)):
        loss, grad = computed(fxd.cross_entropy(on_device(gpu, x, chunks), t,
                                                return_grad=True))
        assert np.isnan(float(loss)) and not np.asarray(grad).any()


@pytest.mark.parametrize("chunks", [(3, 4), (3, 2)])
def test_out_of_range_targets_raise_in_the_task(gpu, chunks):
    """The device's finding is raised by compute, as the NumPy kernels raise it, and is
    not left pending for an unrelated later call."""
    lazy = fxd.cross_entropy(on_device(gpu, np.zeros((6, 4)), chunks),
                             np.array([0, 1, 4, 0, 0, 0]), reduction="sum")
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        lazy.compute()
    assert not _gpu._pending


def test_bce_values_outside_the_unit_interval_raise_in_the_task(gpu):
    lazy = fxd.binary_cross_entropy(on_device(gpu, np.full(4, 1.5), 2), np.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lazy.compute()
    assert not _gpu._pending


@pytest.mark.parametrize("name,x,t,options",
                         [c for c in BAD_CALLS if "grad_out" not in c[3]])  # refused here
def test_bad_calls_raise_the_numpy_apis_error(gpu, name, x, t, options):
    """CuPy-chunked input and device arguments: the NumPy API's type and message, at the
    call."""
    def call(name, args, options):
        lazy = on_device(gpu, args[0], 1) if args[0].ndim else gpu.dev(args[0])
        device = {k: gpu.dev(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        getattr(fxd, name)(lazy, *(gpu.dev(a) for a in args[1:]), **device)
    assert_refused_as_numpy(name, x, t, options, call)


def test_errors_now_takes_only_its_own_threads_calls(gpu):
    """errors_now raises what the calls inside it found; a call outside it, or in another
    thread, keeps the deferred behaviour (raised by the next call or check_errors)."""
    x, bad, good = gpu.dev(np.zeros((2, 3))), gpu.dev(np.array([0, 5])), gpu.dev(np.array([0, 1]))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        with _gpu.errors_now():
            fx.cross_entropy(x, bad)
    assert not _gpu._pending
    with _gpu.errors_now():
        fx.cross_entropy(x, good)
        other = threading.Thread(target=fx.cross_entropy, args=(x, bad))
        other.start()
        other.join()
    assert len(_gpu._pending) == 1              # the other thread's, deferred as before
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        fx.check_errors()


@pytest.mark.parametrize("chunks", [(2, 5), (2, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batches(gpu, chunks, reduction):
    """No rows: the NumPy API's NaN or 0 and an empty gradient, all on the device (Dask
    rebuilds a rechunked empty array with NumPy chunks; the blocks still get CuPy ones)."""
    x, t, q = np.zeros((0, 5)), np.zeros(0, np.int64), np.zeros((0, 5))
    for target in (t, q):
        got = computed(fxd.cross_entropy(on_device(gpu, x, chunks), target,
                                         label_smoothing=0.1, reduction=reduction,
                                         return_grad=True))
        assert_matches(got, fx.cross_entropy(x, target, label_smoothing=0.1,
                                             reduction=reduction, return_grad=True),
                       "float64")
    got = computed(fxd.binary_cross_entropy_with_logits(on_device(gpu, x, chunks), x,
                                                        pos_weight=np.ones(5),
                                                        reduction=reduction,
                                                        return_grad=True))
    assert_matches(got, fx.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(5),
                                                           reduction=reduction,
                                                           return_grad=True), "float64")
    lazy = on_device(gpu, x, chunks)
    for fn in ("logsumexp", "softmax", "log_softmax"):
        assert_matches(computed(getattr(fxd, fn)(lazy)), getattr(fx, fn)(x), "float64")
