"""The most common calls, taken past the Python layer (_xent.common_index for cross_entropy
and nll_loss, _binary.common_logits for binary_cross_entropy_with_logits).

A shortcut must return exactly what the general way returns (the same public call with the
shortcuts switched off), and must decline -- return None, never raise -- every call it does
not take, so that the general way validates it.
"""
import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent as fx
from fastxent._cpu import _binary, _xent
from fastxent._threads import limited, threads_for

from cases import assert_same, swapped, with_non_finite_rows

FUNCS = {"cross_entropy": fx.cross_entropy, "nll_loss": fx.nll_loss,
         "bce_logits": fx.binary_cross_entropy_with_logits}
SHORTCUTS = [(_xent, "common_index"), (_binary, "common_logits")]


@contextlib.contextmanager
def general_way():
    """The public functions with every shortcut declining."""
    with contextlib.ExitStack() as stack:
        for module, name in SHORTCUTS:
            stack.enter_context(mock.patch.object(module, name, lambda *args: None))
        yield


@contextlib.contextmanager
def shortcut_taken():
    """Assert that a shortcut took every public call inside the block (and at least one)."""
    taken = []
    with contextlib.ExitStack() as stack:
        for module, name in SHORTCUTS:
            real = getattr(module, name)

            def spy(*args, real=real):
                out = real(*args)
                taken.append(out is not None)
                return out
            stack.enter_context(mock.patch.object(module, name, spy))
        yield
    assert taken and all(taken), taken


def _compare(name, x, t, **kw):
    """The public call through its shortcut against the general way (fresh buffers)."""
    fn = FUNCS[name]
    kw_general = dict(kw)
    if kw.get("grad_out") is not None:
        kw_general["grad_out"] = np.empty_like(kw["grad_out"])
    with shortcut_taken():
        got = fn(x, t, **kw)
    with general_way():
        ref = fn(x, t, **kw_general)
    if kw.get("return_grad"):
        assert_same(got[0], ref[0])
        assert_same(got[1], ref[1])
    else:
        assert_same(got, ref)
    return got


def _problem(name, shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    if name == "bce_logits":
        return x, rng.random(shape).astype(dtype)
    if name == "nll_loss":
        x = fx.log_softmax(x, axis=-1)
    return x, rng.integers(0, shape[-1], shape[0])


def _declined(name, x, t, **kw):
    if name == "bce_logits":
        out = _binary.common_logits(x, t, kw.get("reduction", "mean"),
                                    kw.get("return_grad", False), kw.get("grad_out"),
                                    threads_for)
    else:
        out = _xent.common_index(x, t, kw.get("ignore_index", -100),
                                 kw.get("reduction", "mean"), kw.get("label_smoothing", 0.0),
                                 kw.get("return_grad", False), kw.get("grad_out"),
                                 threads_for, name == "nll_loss")
    return out is None


SHAPES = [(1, 1), (1, 10), (2, 2), (15, 3), (16, 10), (17, 16), (33, 17), (64, 64),
          (1000, 10), (5000, 10), (40000, 1)]


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_gradient_match_the_general_way(name, dtype, shape, reduction):
    x, t = _problem(name, shape, dtype)
    _compare(name, x, t, reduction=reduction, return_grad=True)
    _compare(name, x, t, reduction=reduction)


@pytest.mark.parametrize("name, shape", [
    ("nll_loss", (3, 65)), ("nll_loss", (40, 1000)), ("bce_logits", (3, 65)),
    ("bce_logits", (40, 1000)), ("bce_logits", (2, 3, 4)), ("bce_logits", (7,)),
    ("bce_logits", (5000,)), ("bce_logits", ())])
def test_shapes_only_some_take(name, shape):
    x, t = _problem(name, shape or (1,), np.float32)
    x, t = x.reshape(shape), t.reshape(shape) if name == "bce_logits" else t
    for reduction in ("mean", "none"):
        _compare(name, x, t, reduction=reduction, return_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.1, 1.0, 1, 0])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_label_smoothing(dtype, eps, reduction):
    x, t = _problem("cross_entropy", (50, 7), dtype, seed=1)
    _compare("cross_entropy", x, t, reduction=reduction, return_grad=True,
             label_smoothing=eps)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_inputs(name, dtype):
    x, t = _problem(name, (20, 10), dtype, seed=2)
    x = with_non_finite_rows(x, 1)
    for reduction in ("none", "sum"):
        _compare(name, x, t, reduction=reduction, return_grad=True)


@pytest.mark.parametrize("name", FUNCS)
def test_a_float32_total_past_the_range_becomes_inf_quietly(name):
    x = np.zeros((4, 3), np.float32)
    x[:, 1] = 3e38 if name == "cross_entropy" else -3e38     # each loss about 3e38
    t = np.ones((4, 3), np.float32) if name == "bce_logits" else np.full(4, 1 - (
        name == "cross_entropy"))
    with np.errstate(all="raise"):
        loss = _compare(name, x, t, reduction="sum")
    assert loss.dtype == np.float32 and loss.shape == () and np.isposinf(loss)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_out_fresh_and_in_place(name, dtype):
    x, t = _problem(name, (100, 12), dtype, seed=3)
    x_before = x.copy()
    buf = np.full_like(x, np.nan)
    with shortcut_taken():
        loss, grad = FUNCS[name](x, t, return_grad=True, grad_out=buf)
    assert grad is buf
    with general_way():
        loss_ref, grad_ref = FUNCS[name](x, t, return_grad=True)
    assert_same(loss, loss_ref)
    assert_same(grad, grad_ref)
    assert_same(x, x_before)
    with shortcut_taken():
        loss, grad = FUNCS[name](x, t, return_grad=True, grad_out=x)
    assert grad is x
    assert_same(loss, loss_ref)
    assert_same(x, grad_ref)


@pytest.mark.parametrize("name", FUNCS)
def test_inputs_untouched_and_results_fresh(name):
    x, t = _problem(name, (30, 10), np.float32, seed=4)
    x_before, t_before = x.copy(), t.copy()
    with shortcut_taken():
        loss, grad = FUNCS[name](x, t, reduction="none", return_grad=True)
    assert_same(x, x_before)
    assert_same(t, t_before)
    for out in (loss, grad):
        assert not np.shares_memory(out, x) and not np.shares_memory(out, t)
        assert out.flags.c_contiguous and out.flags.writeable and out.base is None


@pytest.mark.parametrize("name", FUNCS)
def test_thread_count_does_not_change_the_bits(name):
    x, t = _problem(name, (20000, 10), np.float32, seed=5)
    with shortcut_taken():
        with limited(1):
            one = FUNCS[name](x, t, return_grad=True)
        with limited(2):
            two = FUNCS[name](x, t, return_grad=True)
    assert_same(one[0], two[0])
    assert_same(one[1], two[1])


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("name", FUNCS)
def test_declines_other_logits(name):
    x, t = _problem(name, (16, 10), np.float32)
    assert not _declined(name, x, t)
    for bad in (x.view(_Sub), x.astype(np.float16), swapped(x), np.asfortranarray(x),
                x[:, ::2], x.tolist(), np.zeros((0, 10), np.float32)):
        u = t if name != "bce_logits" else np.zeros(np.shape(bad), np.float32)
        u = u[:len(bad)] if name != "bce_logits" else u
        assert _declined(name, bad, u)
    if name != "bce_logits":
        assert _declined(name, x.reshape(16, 10, 1), t.reshape(16, 1))
        assert _declined(name, x[0], t[:1])
        assert _declined(name, np.zeros((16, 0), np.float32), t)
    if name == "cross_entropy":
        assert _declined(name, np.zeros((16, 65), np.float32), t)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_declines_other_class_targets(name):
    x, t = _problem(name, (16, 10), np.float64)
    for bad in (t.astype(np.int32), t.astype(np.uint64), np.repeat(t, 2)[::2], t[:15],
                t.reshape(16, 1), t.astype(np.float64), t.tolist(), t.view(_Sub)):
        assert _declined(name, x, bad)
    for bad in (-1, 10, -100):
        u = t.copy()
        u[3] = bad
        assert _declined(name, x, u)
    u = t.copy()
    u[5] = 4
    assert _declined(name, x, u, ignore_index=4)
    # an ignore_index no target can equal does not stop it
    assert not _declined(name, x, t, ignore_index=10)
    assert not _declined(name, x, t, ignore_index=2**70)


def test_declines_other_binary_targets():
    x, y = _problem("bce_logits", (16, 10), np.float32)
    for bad in (y.astype(np.float64), y.astype(np.int64), y.astype(bool), y[0], y[:, :1],
                np.asfortranarray(y), y.T.copy().T, y.view(_Sub), y.tolist(),
                swapped(y), y.astype(np.float16)):
        assert _declined("bce_logits", x, bad)


@pytest.mark.parametrize("name", FUNCS)
def test_declines_other_options(name):
    x, t = _problem(name, (16, 10), np.float32)
    options = [dict(reduction="avg"), dict(reduction=None), dict(reduction=np.str_("mean")),
               dict(reduction=["mean"]), dict(return_grad=np.bool_(True)),
               dict(return_grad=1), dict(return_grad=None)]
    if name == "cross_entropy":
        options += [dict(ignore_index=True), dict(ignore_index=1.0),
                    dict(ignore_index=np.int64(-100)), dict(label_smoothing=-0.1),
                    dict(label_smoothing=1.5), dict(label_smoothing=float("nan")),
                    dict(label_smoothing=2), dict(label_smoothing=10**400),
                    dict(label_smoothing=np.float64(0.1)), dict(label_smoothing=True),
                    dict(label_smoothing="0")]
    for kw in options:
        assert _declined(name, x, t, **kw), kw


@pytest.mark.parametrize("name", FUNCS)
def test_declines_other_grad_out(name):
    x, t = _problem(name, (16, 10), np.float32)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    wide = np.empty((16, 20), np.float32)
    for kw in (dict(grad_out=np.empty_like(x)),              # without return_grad
               dict(return_grad=True, grad_out=ro),
               dict(return_grad=True, grad_out=np.empty_like(x, dtype=np.float64)),
               dict(return_grad=True, grad_out=np.empty((10, 16), np.float32).T),
               dict(return_grad=True, grad_out=wide[:, :10]),
               dict(return_grad=True, grad_out=np.empty((16, 11), np.float32)),
               dict(return_grad=True, grad_out=np.empty_like(x).view(_Sub)),
               dict(return_grad=True, grad_out=x.tolist())):
        assert _declined(name, x, t, **kw), kw


@pytest.mark.parametrize("name", FUNCS)
def test_declines_a_grad_out_overlapping_the_inputs(name):
    x0, t0 = _problem(name, (16, 10), np.float32)
    base = np.zeros(16 * 10 + 5, np.float32)
    x = base[:160].reshape(16, 10)
    x[:] = x0
    assert _declined(name, x, t0, return_grad=True, grad_out=base[5:].reshape(16, 10))
    # targets and gradient in one buffer: overlapping, then side by side
    tbytes = t0.nbytes
    raw = np.zeros(tbytes + 640, np.uint8)
    t = raw[:tbytes].view(t0.dtype).reshape(t0.shape)
    t[...] = t0
    g = raw[tbytes - 64:tbytes - 64 + 640].view(np.float32).reshape(16, 10)
    assert _declined(name, x, t, return_grad=True, grad_out=g)
    clear = raw[tbytes:].view(np.float32).reshape(16, 10)
    assert not _declined(name, x, t, return_grad=True, grad_out=clear)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("call, error", [
    (dict(reduction="avg"), ValueError),
    (dict(return_grad=1), TypeError),
    (dict(grad_out=np.empty((16, 10), np.float32)), ValueError),
])
def test_public_call_still_raises_for_what_it_declines(name, call, error):
    x, t = _problem(name, (16, 10), np.float32)
    with pytest.raises(error, match=next(iter(call))):
        FUNCS[name](x, t, **call)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_public_call_raises_for_a_bad_target(name):
    x, t = _problem(name, (16, 10), np.float32)
    t[2] = 10
    with pytest.raises(IndexError, match="target"):
        FUNCS[name](x, t)


def test_public_call_raises_for_bad_smoothing():
    x, t = _problem("cross_entropy", (16, 10), np.float32)
    with pytest.raises(ValueError, match="label_smoothing"):
        fx.cross_entropy(x, t, label_smoothing=1.5)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(FUNCS)), N=st.integers(1, 80), C=st.integers(1, 64),
       dtype=st.sampled_from(["f4", "f8"]), reduction=st.sampled_from(["none", "mean", "sum"]),
       eps=st.sampled_from([0.0, 0.05, 0.5]), want=st.booleans(), seed=st.integers(0, 99))
def test_matches_the_general_way_everywhere(name, N, C, dtype, reduction, eps, want, seed):
    x, t = _problem(name, (N, C), dtype, seed=seed, scale=10.0)
    kw = dict(reduction=reduction, return_grad=want)
    if name == "cross_entropy":
        kw["label_smoothing"] = eps
    _compare(name, x, t, **kw)
