"""fastxent.dask against the NumPy API on the same data, chunk layouts and options."""
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastxent as fx  # noqa: E402
import fastxent.dask as fxd  # noqa: E402
from fastxent import _threads  # noqa: E402

from cases import BAD_CALLS, assert_refused_as_numpy  # noqa: E402
from cases import DASK_CLASS_LAYOUTS as CLASS_LAYOUTS  # noqa: E402

RNG = np.random.default_rng(20261122)
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-6, atol=1e-7)}


@pytest.fixture(params=[False, True], ids=["classic", "query-planning"])
def planning(request):
    """Run under both of Dask's array backends (query planning is the future default)."""
    with dask.config.set({"array.query-planning": request.param}):
        yield request.param


def assert_same(expected, got, dtype=np.float64):
    expected, got = np.asarray(expected), np.asarray(got)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, equal_nan=True, **TOL[dtype])


def compute(result):
    return dask.compute(*result) if isinstance(result, tuple) else (result.compute(),)


def check(fn, x, chunks, *args, dtype=np.float64, **opts):
    """fastxent.dask's `fn` on `x` in `chunks` gives the NumPy API's loss (and gradient)."""
    got = compute(getattr(fxd, fn)(da.from_array(x, chunks=chunks), *args, **opts))
    expected = getattr(fx, fn)(x, *args, **opts)
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,), got):
        assert_same(e, g, dtype)




def class_data(shape, axis, dtype, kind):
    x = RNG.normal(scale=3, size=shape).astype(dtype)
    ax = (0 if len(shape) == 1 else 1) if axis is None else axis % len(shape)
    C = shape[ax]
    if kind == "probs":
        return x, fx.softmax(RNG.normal(size=shape), axis=ax).astype(dtype), ax
    t = RNG.integers(0, C, size=shape[:ax] + shape[ax + 1:])
    if t.ndim:
        t.flat[::4] = -100
    return x, t, ax


@pytest.mark.parametrize("shape,chunks,axis", CLASS_LAYOUTS)
@pytest.mark.parametrize("fn,kind,eps", [
    ("cross_entropy", "index", 0.0), ("cross_entropy", "index", 0.15),
    ("cross_entropy", "probs", 0.0), ("cross_entropy", "probs", 0.15),
    ("nll_loss", "index", 0.0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_class_losses_match_numpy(planning, shape, chunks, axis, fn, kind, eps, reduction,
                                  weighted, dtype):
    x, t, ax = class_data(shape, axis, dtype, kind)
    opts = dict(reduction=reduction, axis=axis, return_grad=True,
                weight=RNG.random(shape[ax]) + 0.2 if weighted else None)
    if fn == "cross_entropy":
        opts["label_smoothing"] = eps
    if reduction == "none" and t.ndim and kind == "index":
        opts["grad_output"] = RNG.normal(size=t.shape)
    check(fn, x, chunks, t, dtype=dtype, **opts)


@pytest.mark.parametrize("chunks", [(3, 8), (6, 4), (2, 3)])
@pytest.mark.parametrize("kind", ["index", "ignored", "probs"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_non_finite_logits(chunks, kind, reduction, eps):
    # Half a row masked with -inf, a whole row -inf, +inf, NaN and a huge logit.
    x = RNG.normal(size=(6, 8))
    x[0, :4], x[1], x[2, 5], x[3, 2], x[4, 6] = -np.inf, -np.inf, np.inf, np.nan, 1e300
    t = {"index": np.array([5, 1, 5, 0, 6, 2]),
         "ignored": np.array([5, -100, -100, -100, 6, 2]),
         "probs": fx.softmax(RNG.normal(size=x.shape))}[kind]
    check("cross_entropy", x, chunks, t, reduction=reduction, label_smoothing=eps,
          return_grad=True)


def test_mean_divides_by_the_global_weight_total():
    # A mean of per-chunk means would weigh the chunks equally; the exact mean does not.
    x = RNG.normal(size=(40, 6))
    t = np.r_[np.zeros(10, int), RNG.integers(0, 6, 30)]
    t[12:30] = -100
    w = np.array([5.0, 1, 1, 1, 1, 1])
    X = da.from_array(x, chunks=(10, 3))
    loss = fxd.cross_entropy(X, t, weight=w).compute()
    assert_same(fx.cross_entropy(x, t, weight=w), loss)
    chunk_means = [fx.cross_entropy(x[i:i + 10], t[i:i + 10], weight=w) for i in range(0, 40, 10)]
    assert abs(float(loss) - np.nanmean(chunk_means)) > 1e-3


def test_all_targets_ignored_gives_nan_mean_and_zero_gradient():
    x = RNG.normal(size=(8, 5))
    t = np.full(8, -100)
    loss, grad = compute(fxd.cross_entropy(da.from_array(x, chunks=(3, 2)), t,
                                           return_grad=True))
    assert np.isnan(loss) and not grad.any()


def test_empty_batch():
    x = np.zeros((0, 4))
    for chunks in [(1, 4), (1, 2)]:
        loss, grad = compute(fxd.cross_entropy(da.from_array(x, chunks=chunks),
                                               np.zeros(0, int), reduction="sum",
                                               return_grad=True))
        assert loss == 0 and grad.shape == (0, 4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_low_precision_inputs(dtype):
    x = RNG.normal(size=(30, 12)).astype(dtype)
    t = RNG.integers(0, 12, 30)
    for chunks in [(7, 12), (7, 5)]:
        loss, grad = compute(fxd.cross_entropy(da.from_array(x, chunks=chunks), t,
                                               return_grad=True))
        e_loss, e_grad = fx.cross_entropy(x, t, return_grad=True)
        assert loss.dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(loss.astype(float), e_loss.astype(float), rtol=2e-3)
        np.testing.assert_allclose(grad.astype(float), e_grad.astype(float), atol=2e-3)


# --- element-wise losses --------------------------------------------------------------

@pytest.mark.parametrize("chunks", [(5, 7), (23, 3), (6, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_losses_match_numpy(planning, chunks, reduction, weighted, dtype):
    x = RNG.normal(size=(23, 7)).astype(dtype)
    y = (RNG.random((23, 7)) > 0.5).astype(dtype)
    p = (1 / (1 + np.exp(-x))).astype(dtype)
    w = RNG.random(7) if weighted else None
    pw = RNG.random(7) * 3
    go = RNG.normal(size=x.shape) if reduction == "none" else 2.5
    for fn, inp, extra in [("binary_cross_entropy_with_logits", x, dict(pos_weight=pw)),
                           ("binary_cross_entropy", p, {})]:
        check(fn, inp, chunks, y, dtype=dtype, weight=w, reduction=reduction,
              return_grad=True, grad_output=go, **extra)


@pytest.mark.parametrize("chunks", [(5, 7), (6, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_numpy(chunks, reduction, log_target):
    logq = fx.log_softmax(RNG.normal(size=(23, 7)))
    t = fx.softmax(RNG.normal(size=(23, 7)))
    t = np.log(t) if log_target else t
    check("kl_div", logq, chunks, t, reduction=reduction, log_target=log_target,
          return_grad=True)


def test_dask_weights_and_targets_are_rechunked_to_the_input():
    x = RNG.normal(size=(20, 6))
    y = (RNG.random((20, 6)) > 0.5).astype(float)
    w = RNG.random((20, 1))
    X = da.from_array(x, chunks=(7, 6))
    got = fxd.binary_cross_entropy_with_logits(X, da.from_array(y, chunks=(3, 2)),
                                               weight=da.from_array(w, chunks=(9, 1)),
                                               reduction="none", return_grad=True)
    assert got[1].chunks == X.chunks
    for e, g in zip(fx.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none",
                                                        return_grad=True), compute(got)):
        assert_same(e, g)


# --- transforms -----------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [0, 1, -1, None])
@pytest.mark.parametrize("chunks", [(10, 11), (37, 4), (6, 5)])
def test_transforms_match_numpy(planning, fn, axis, chunks):
    x = RNG.normal(scale=4, size=(37, 11))
    x[3, :] = -np.inf
    x[5, 2] = np.inf
    check(fn, x, chunks, axis=axis)


@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_keepdims_and_many_chunks(keepdims):
    x = RNG.normal(size=(5, 3000)).astype(np.float32)
    X = da.from_array(x, chunks=(2, 7))       # 429 chunks: a tree of merges
    for axis in [1, None]:
        assert_same(fx.logsumexp(x, axis=axis, keepdims=keepdims),
                    fxd.logsumexp(X, axis=axis, keepdims=keepdims).compute(), np.float32)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [(1, 2), (2, 0), (0, 1, 2), (), (1,)])
@pytest.mark.parametrize("chunks", [(6, 8, 10), (2, 3, 4), (6, 3, 10), (1, 8, 10)])
def test_transforms_over_a_tuple_of_axes(planning, fn, axis, chunks):
    x = RNG.normal(scale=4, size=(6, 8, 10))
    x[1, 2, :] = -np.inf
    x[4, 5, 6] = np.inf
    check(fn, x, chunks, axis=axis)
    if fn == "logsumexp":
        check(fn, x, chunks, axis=axis, keepdims=True)


# --- hypothesis: any chunking gives the in-memory answer ---------------------------------

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), c=st.integers(1, 12), rc=st.integers(1, 30),
       cc=st.integers(1, 12), eps=st.sampled_from([0.0, 0.3]),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**32 - 1))
def test_any_chunking_matches_numpy(n, c, rc, cc, eps, reduction, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=5, size=(n, c))
    t = rng.integers(-1, c, n)
    w = rng.random(c) + 0.1
    check("cross_entropy", x, (rc, cc), t, weight=w, ignore_index=-1, label_smoothing=eps,
          reduction=reduction, return_grad=True)


# --- the task graph ---------------------------------------------------------------------

class Recorder:
    """Records each task's key and result size through Dask's scheduler callbacks."""

    def __init__(self):
        self.keys, self.sizes = [], []

    def __enter__(self):
        from dask.callbacks import Callback
        from dask.sizeof import sizeof

        def posttask(key, result, dsk, state, worker_id):
            self.keys.append(key[0] if isinstance(key, tuple) else key)
            self.sizes.append(sizeof(result))
        self._cb = Callback(posttask=posttask)
        self._cb.__enter__()
        return self

    def __exit__(self, *exc):
        self._cb.__exit__(*exc)

    def count(self, prefix):
        return sum(str(k).startswith(prefix) for k in self.keys)


@pytest.mark.parametrize("chunks", [(100, 300), (100, 60)])
def test_one_task_per_block_and_no_gather(planning, chunks):
    x = RNG.normal(size=(400, 300))
    t = RNG.integers(0, 300, 400)
    X = da.from_array(x, chunks=chunks)
    block_bytes = np.prod(chunks) * 8
    with Recorder() as rec:
        # persist, not compute: the blocks stay apart, so every recorded result is a task's.
        loss, grad = dask.persist(*fxd.cross_entropy(X, t, label_smoothing=0.1,
                                                    return_grad=True), scheduler="threads")
    e_loss, e_grad = fx.cross_entropy(x, t, label_smoothing=0.1, return_grad=True)
    assert_same(e_loss, loss.compute())
    assert_same(e_grad, grad.compute())
    n_blocks = X.npartitions
    if X.numblocks[1] == 1:
        # The loss and the gradient come from one kernel call per block.
        assert rec.count("loss_block") == n_blocks
    else:
        assert rec.count("ce_stats") == n_blocks and rec.count("ce_grad") == n_blocks
    # No task holds more than a block of gradient and a little: nothing is gathered.
    assert max(rec.sizes) <= 1.2 * block_bytes


@pytest.mark.parametrize("want_grad", [False, True])
def test_kernel_runs_once_per_block(planning, monkeypatch, want_grad):
    from fastxent import functional
    calls = []
    original = functional._run_class

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(functional, "_run_class", spy)
    X = da.from_array(RNG.normal(size=(60, 10)), chunks=(20, 10))
    dask.compute(fxd.cross_entropy(X, RNG.integers(0, 10, 60), return_grad=want_grad),
                 scheduler="threads")
    assert len(calls) == 3


# --- threads ----------------------------------------------------------------------------

@pytest.mark.skipif(not fx.openmp_enabled(), reason="needs the OpenMP build")
@pytest.mark.parametrize("n_threads,expected", [(1, 1), (2, 2), (None, 2)])
def test_tasks_run_n_threads_openmp_threads(monkeypatch, n_threads, expected):
    seen = []
    original = _threads.get_num_threads

    def spy():
        seen.append(original())
        return seen[-1]
    monkeypatch.setattr(_threads, "get_num_threads", spy)
    fx.set_num_threads(2)
    try:
        X = da.from_array(RNG.normal(size=(4000, 40)), chunks=(1000, 40))   # 40000 per block
        fxd.cross_entropy(X, RNG.integers(0, 40, 4000), return_grad=True,
                          n_threads=n_threads)[1].compute(scheduler="threads")
    finally:
        fx.set_num_threads(None)
    assert seen and set(seen) == {expected}


def test_thread_limit_is_per_thread():
    inside, outside = [], []
    ready, done = threading.Event(), threading.Event()

    def limited_thread():
        with _threads.limited(1):
            inside.append(fx.get_num_threads())
            ready.set()
            done.wait(5)
    fx.set_num_threads(3)
    try:
        worker = threading.Thread(target=limited_thread)
        worker.start()
        ready.wait(5)
        outside.append(fx.get_num_threads())
        done.set()
        worker.join()
    finally:
        fx.set_num_threads(None)
    assert inside == [1] and outside == [3]


# --- errors -----------------------------------------------------------------------------

X0 = da.from_array(np.zeros((6, 4)), chunks=(3, 2))
T0 = np.zeros(6, int)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: fxd.cross_entropy(X0, T0, reduction="avg"), ValueError, "reduction"),
    (lambda: fxd.cross_entropy(X0, T0, label_smoothing=2.0), ValueError, "label_smoothing"),
    (lambda: fxd.cross_entropy(X0, T0, weight=np.ones(3)), ValueError, "weight"),
    (lambda: fxd.cross_entropy(X0, np.zeros(5, int)), ValueError, "target must have shape"),
    (lambda: fxd.cross_entropy(X0, np.zeros(6, bool)), TypeError, "target"),
    (lambda: fxd.cross_entropy(X0.astype(int), T0), TypeError, "input"),
    (lambda: fxd.cross_entropy(X0, T0, axis=2), ValueError, "axis"),
    (lambda: fxd.cross_entropy(X0, T0, return_grad=True, grad_out=np.zeros((6, 4))),
     ValueError, "grad_out"),
    (lambda: fxd.cross_entropy(X0, T0, grad_output=2.0), ValueError, "grad_output"),
    (lambda: fxd.cross_entropy(X0, T0, return_grad=True, grad_output=np.ones(2)),
     ValueError, "grad_output must be a scalar for reduction='mean'"),
    (lambda: fxd.cross_entropy(X0, T0, reduction="none", return_grad=True,
                               grad_output=np.ones(5)), ValueError, "grad_output"),
    (lambda: fxd.cross_entropy(X0, T0, n_threads=0), ValueError, "n_threads"),
    (lambda: fxd.nll_loss(X0, X0), TypeError, "target"),
    (lambda: fxd.binary_cross_entropy(X0, np.zeros((6, 3))), ValueError, "target"),
    (lambda: fxd.binary_cross_entropy_with_logits(X0, X0, pos_weight=np.ones(3)),
     ValueError, "pos_weight"),
    (lambda: fxd.kl_div(X0, X0, reduction="batch"), ValueError, "reduction"),
    (lambda: fxd.softmax(da.zeros((), chunks=())), ValueError, "dimension"),
    (lambda: fxd.logsumexp(X0, keepdims=1), TypeError, "keepdims"),
    (lambda: fxd.cross_entropy(X0[X0[:, 0] > 0], T0), ValueError, "chunk sizes"),
])
def test_errors_raise_at_the_call(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("name,x,t,options",
                         [c for c in BAD_CALLS if "grad_out" not in c[3]])  # refused here
def test_bad_calls_raise_the_numpy_apis_error(name, x, t, options):
    """The same exception type and message as the NumPy API, at the call."""
    def call(name, args, options):
        lazy = da.from_array(args[0], chunks=1) if args[0].ndim else args[0]
        getattr(fxd, name)(lazy, *args[1:], **options)
    assert_refused_as_numpy(name, x, t, options, call)


class CupyLike(np.ndarray):
    """Host memory under a CuPy array's type name, which is what the check reads."""


CupyLike.__module__ = "cupy._core.core"


def _on_device(a):
    return np.asarray(a).view(CupyLike)


@pytest.mark.parametrize("call,name", [
    (lambda: fxd.cross_entropy(X0, _on_device(T0)), "target is a CuPy array"),
    (lambda: fxd.cross_entropy(X0, da.from_array(T0, meta=_on_device(np.empty(0)))),
     "target has CuPy chunks"),
    (lambda: fxd.cross_entropy(X0, T0, weight=_on_device(np.ones(4))),
     "weight is a CuPy array"),
    (lambda: fxd.cross_entropy(X0, T0, weight=da.from_array(
        np.ones(4), meta=_on_device(np.empty(0)))), "weight has CuPy chunks"),
    (lambda: fxd.binary_cross_entropy_with_logits(X0, X0, pos_weight=_on_device(np.ones(4))),
     "pos_weight is a CuPy array"),
    (lambda: fxd.cross_entropy(X0, T0, return_grad=True, grad_output=_on_device(2.0)),
     "grad_output is a CuPy array"),
])
def test_cupy_data_beside_host_input_is_refused_at_the_call(call, name):
    """The blocks run where the input is: CuPy data beside NumPy logits gets a TypeError
    naming the argument when the call is made, not a failure inside a task. (CuPy input
    runs on the device: test_dask_cupy_chunks.)"""
    with pytest.raises(TypeError, match=name + ", but the input's chunks are NumPy arrays"):
        call()


@pytest.mark.parametrize("chunks", [(3, 4), (3, 2)])
def test_out_of_range_targets_raise_index_error_when_computed(chunks):
    lazy = fxd.cross_entropy(da.from_array(np.zeros((6, 4)), chunks=chunks),
                             np.array([0, 1, 4, 0, 0, 0]))
    with pytest.raises(IndexError, match="target must hold class indices in \\[0, 4\\)"):
        lazy.compute()


def test_bce_values_outside_unit_interval_raise_when_computed():
    lazy = fxd.binary_cross_entropy(da.from_array(np.full(4, 1.5), chunks=2), np.zeros(4))
    with pytest.raises(ValueError, match="input must hold values in"):
        lazy.compute()


def test_inputs_are_not_modified():
    x = RNG.normal(size=(12, 5))
    t = RNG.integers(0, 5, 12)
    x0, t0 = x.copy(), t.copy()
    dask.compute(*fxd.cross_entropy(da.from_array(x, chunks=(4, 2)), t, return_grad=True))
    dask.compute(*fxd.cross_entropy(da.from_array(x, chunks=(4, 5)), t, return_grad=True))
    assert (x == x0).all() and (t == t0).all()


def test_import_fastxent_does_not_import_dask():
    code = "import sys, fastxent; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# --- a real cluster: process workers on loopback ----------------------------------------

@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  memory_limit="1GiB") as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.mark.parametrize("chunks", [(25, 40), (25, 7)])
def test_local_cluster_with_process_workers(cluster_client, chunks):
    x = RNG.normal(size=(100, 40))
    t = RNG.integers(0, 40, 100)
    t[::7] = -100
    w = RNG.random(40)
    check("cross_entropy", x, chunks, t, weight=w, label_smoothing=0.05, return_grad=True)
    check("log_softmax", x, chunks)
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        fxd.nll_loss(da.from_array(x, chunks=chunks), np.full(100, 40)).compute()


def test_out_of_core_example_runs(tmp_path):
    import pathlib
    import re
    script = pathlib.Path(__file__).parents[1] / "examples" / "dask_out_of_core.py"
    out = subprocess.run([sys.executable, str(script), "--gb", "0.001", "--classes", "50",
                          "--row-chunk", "300", "--class-chunks", "3", "--compare",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    difference = float(re.search(r"\|loss difference\| (\S+)", out).group(1))
    grad_difference = float(re.search(r"max \|grad difference\| \(first rows\) (\S+)",
                                      out).group(1))
    assert difference <= 1e-6 and grad_difference <= 1e-6, out
    assert (tmp_path / "grad.npy").exists()
