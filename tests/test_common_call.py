"""cross_entropy's most common call, taken past the Python layer (_xent.common_index).

The shortcut must return exactly what the general way returns (reached here with
``axis=1``, the default class axis of a 2-D input, which the shortcut leaves alone), and
must decline -- return None, never raise -- every call it does not take, so that the general
way validates it.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent as fx
from fastxent._cpu import _xent
from fastxent._threads import limited, threads_for

from cases import assert_same, with_non_finite_rows


def _shortcut(x, t, *, ignore_index=-100, reduction="mean", label_smoothing=0.0,
              return_grad=False, grad_out=None):
    return _xent.common_index(x, t, ignore_index, reduction, label_smoothing, return_grad,
                              grad_out, threads_for)


def _both(x, t, **kw):
    """The shortcut's result (which must exist) and the general way's, fresh buffers each."""
    kw_general = dict(kw)
    if kw.get("grad_out") is not None:
        kw_general["grad_out"] = np.empty_like(kw["grad_out"])
    got = _shortcut(x, t, **kw)
    assert got is not None
    return got, fx.cross_entropy(x, t, axis=1, **kw_general)


def _problem(N, C, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((N, C))).astype(dtype)
    return x, rng.integers(0, C, N)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C", [(1, 1), (1, 10), (2, 2), (15, 3), (16, 10), (17, 16),
                                  (33, 17), (64, 64), (1000, 10), (5000, 10), (40000, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_gradient_match_the_general_way(dtype, N, C, reduction):
    x, t = _problem(N, C, dtype)
    (loss, grad), (loss_ref, grad_ref) = _both(x, t, reduction=reduction, return_grad=True)
    assert_same(loss, loss_ref)
    assert_same(grad, grad_ref)
    assert_same(_shortcut(x, t, reduction=reduction),
                fx.cross_entropy(x, t, axis=1, reduction=reduction))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.1, 1.0, 1, 0])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_label_smoothing(dtype, eps, reduction):
    x, t = _problem(50, 7, dtype, seed=1)
    (loss, grad), (loss_ref, grad_ref) = _both(x, t, reduction=reduction, return_grad=True,
                                               label_smoothing=eps)
    assert_same(loss, loss_ref)
    assert_same(grad, grad_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_logits(dtype):
    x, t = _problem(20, 10, dtype, seed=2)
    x = with_non_finite_rows(x, 1)
    for reduction in ("none", "sum"):
        (loss, grad), (loss_ref, grad_ref) = _both(x, t, reduction=reduction,
                                                   return_grad=True)
        assert_same(loss, loss_ref)
        assert_same(grad, grad_ref)


def test_a_float32_total_past_the_range_becomes_inf_quietly():
    x = np.zeros((4, 3), np.float32)
    x[:, 1] = 3e38                    # each row's loss about 3e38, their sum past float32
    t = np.zeros(4, np.int64)
    with np.errstate(all="raise"):
        loss = _shortcut(x, t, reduction="sum")
    assert loss.dtype == np.float32 and loss.shape == () and np.isposinf(loss)
    assert_same(loss, fx.cross_entropy(x, t, axis=1, reduction="sum"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_out_fresh_and_in_place(dtype):
    x, t = _problem(100, 12, dtype, seed=3)
    x_before = x.copy()
    buf = np.full_like(x, np.nan)
    loss, grad = _shortcut(x, t, return_grad=True, grad_out=buf)
    assert grad is buf
    loss_ref, grad_ref = fx.cross_entropy(x, t, axis=1, return_grad=True)
    assert_same(loss, loss_ref)
    assert_same(grad, grad_ref)
    assert_same(x, x_before)
    loss, grad = _shortcut(x, t, return_grad=True, grad_out=x)
    assert grad is x
    assert_same(loss, loss_ref)
    assert_same(x, grad_ref)


def test_inputs_untouched_and_results_fresh():
    x, t = _problem(30, 10, np.float32, seed=4)
    x_before, t_before = x.copy(), t.copy()
    loss, grad = _shortcut(x, t, reduction="none", return_grad=True)
    assert_same(x, x_before)
    assert_same(t, t_before)
    assert not np.shares_memory(grad, x) and not np.shares_memory(loss, x)
    assert grad.flags.c_contiguous and grad.flags.writeable and loss.flags.writeable


def test_thread_count_does_not_change_the_bits():
    x, t = _problem(20000, 10, np.float32, seed=5)
    with limited(1):
        one = _shortcut(x, t, return_grad=True)
    with limited(2):
        two = _shortcut(x, t, return_grad=True)
    assert_same(one[0], two[0])
    assert_same(one[1], two[1])


def _declined(x, t, **kw):
    return _shortcut(x, t, **kw) is None


class _Sub(np.ndarray):
    pass


def test_declines_other_logits():
    x, t = _problem(16, 10, np.float32)
    assert _declined(x.view(_Sub), t)
    assert _declined(x.astype(np.float16), t)
    assert _declined(x.astype(">f4"), t)
    assert _declined(np.asfortranarray(x), t)
    assert _declined(x[:, ::2], t)
    assert _declined(x.reshape(16, 10, 1), t.reshape(16, 1))
    assert _declined(x[0], t[:1])
    assert _declined(x.tolist(), t)
    assert _declined(np.zeros((0, 10), np.float32), t[:0])
    assert _declined(np.zeros((16, 65), np.float32), t)
    assert _declined(np.zeros((16, 0), np.float32), t)


def test_declines_other_targets():
    x, t = _problem(16, 10, np.float64)
    assert _declined(x, t.astype(np.int32))
    assert _declined(x, t.astype(np.uint64))
    assert _declined(x, np.repeat(t, 2)[::2])
    assert _declined(x, t[:15])
    assert _declined(x, t.reshape(16, 1))
    assert _declined(x, t.astype(np.float64))
    assert _declined(x, t.tolist())
    for bad in (-1, 10, -100):
        u = t.copy()
        u[3] = bad
        assert _declined(x, u)
    u = t.copy()
    u[5] = 4
    assert _declined(x, u, ignore_index=4)
    # an ignore_index no target can equal does not stop it
    assert not _declined(x, t, ignore_index=10)
    assert not _declined(x, t, ignore_index=2**70)


def test_declines_other_options():
    x, t = _problem(16, 10, np.float32)
    for kw in (dict(reduction="avg"), dict(reduction=None), dict(reduction=np.str_("x")),
               dict(reduction=["mean"]), dict(ignore_index=True), dict(ignore_index=1.0),
               dict(ignore_index=np.int64(-100)), dict(label_smoothing=-0.1),
               dict(label_smoothing=1.5), dict(label_smoothing=float("nan")),
               dict(label_smoothing=2), dict(label_smoothing=10**400),
               dict(label_smoothing=np.float64(0.1)), dict(label_smoothing=True),
               dict(label_smoothing="0"), dict(return_grad=np.bool_(True)),
               dict(return_grad=1), dict(return_grad=None)):
        assert _declined(x, t, **kw), kw


def test_declines_other_grad_out():
    x, t = _problem(16, 10, np.float32)
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
        assert _declined(x, t, **kw), kw


def test_declines_a_grad_out_overlapping_the_inputs():
    base = np.zeros(16 * 10 + 5, np.float32)
    x = base[:160].reshape(16, 10)
    x[:] = _problem(16, 10, np.float32)[0]
    t = np.arange(16) % 10
    assert _declined(x, t, return_grad=True, grad_out=base[5:].reshape(16, 10))
    raw = np.zeros(16 * 8 + 160 * 4, np.uint8)
    t_in = raw[:128].view(np.int64)
    t_in[:] = t
    g = raw[64:64 + 640].view(np.float32).reshape(16, 10)
    assert _declined(x, t_in, return_grad=True, grad_out=g)
    clear = raw[128:].view(np.float32).reshape(16, 10)
    assert not _declined(x, t_in, return_grad=True, grad_out=clear)


@pytest.mark.parametrize("call, error", [
    (dict(reduction="avg"), ValueError),
    (dict(label_smoothing=1.5), ValueError),
    (dict(return_grad=1), TypeError),
    (dict(grad_out=np.empty((16, 10), np.float32)), ValueError),
])
def test_public_call_still_raises_for_what_it_declines(call, error):
    x, t = _problem(16, 10, np.float32)
    with pytest.raises(error):
        fx.cross_entropy(x, t, **call)


def test_public_call_raises_for_a_bad_target():
    x, t = _problem(16, 10, np.float32)
    t[2] = 10
    with pytest.raises(IndexError, match="target"):
        fx.cross_entropy(x, t)


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 80), C=st.integers(1, 64), dtype=st.sampled_from(["f4", "f8"]),
       reduction=st.sampled_from(["none", "mean", "sum"]),
       eps=st.sampled_from([0.0, 0.05, 0.5]), want=st.booleans(), seed=st.integers(0, 99))
def test_matches_the_general_way_everywhere(N, C, dtype, reduction, eps, want, seed):
    x, t = _problem(N, C, dtype, seed=seed, scale=10.0)
    got, ref = _both(x, t, reduction=reduction, label_smoothing=eps, return_grad=want)
    if want:
        assert_same(got[0], ref[0])
        assert_same(got[1], ref[1])
    else:
        assert_same(got, ref)


def test_the_public_call_takes_it(monkeypatch):
    x, t = _problem(16, 10, np.float32)
    taken, common_index = [], _xent.common_index

    def spy(*args):
        out = common_index(*args)
        taken.append(out is not None)
        return out
    monkeypatch.setattr(_xent, "common_index", spy)
    fx.cross_entropy(x, t, return_grad=True)
    fx.cross_entropy(x, t, weight=np.ones(10))
    assert taken == [True]
