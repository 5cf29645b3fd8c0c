"""The CuPy backend against the NumPy API, fuzzed, on the CuPy stand-in.

The same random calls as ``test_fuzz`` (shapes with 0- and 1-sized axes, dtypes, layouts,
non-finite values, out-of-range targets, options of the wrong type or range), made once
with NumPy arrays and once with the same arrays on the "device". Either both return, with
the same shapes and dtypes and values within the dtype's tolerance, or both raise the same
exception type with the same message. The one allowed difference is the device's deferred
value error: where the NumPy API raises for a class index out of range or a BCE value
outside [0, 1], the device call returns and ``check_errors`` raises the same type.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastxent as fx
from fastxent import _gpu

import cuda_host_lib
from fuzz_inputs import (ALLOWED, FLOATS, FUZZ, LOSSES, SPECIAL, arrays, grad_out_for, option,
                         targets_like)

pytestmark = pytest.mark.main_run_only

# The stand-in's state is reset by every example's check_errors, so one fixture serves all.
GPU_FUZZ = settings(FUZZ, suppress_health_check=list(FUZZ.suppress_health_check)
                   + [HealthCheck.function_scoped_fixture])
# CuPy has no object arrays: every other dtype of the CPU fuzz. And no huge finite values:
# the device evaluates 16- and 32-bit inputs in float32, where a product of two of them,
# such as (1 - y) x in BCE, overflows (as in PyTorch's float32) while the CPU path's
# float64 does not; NaN and the infinities stay.
DEVICE = dict(dtypes=FLOATS * 4 + [np.int8, np.int32, np.int64, np.uint8, np.bool_,
                                   np.complex64],
              special=[v for v in SPECIAL if abs(v) != 1e30])


def _arguments(args, options, device):
    """Copies of the call's arrays (the grad_out markers resolved), on the device or not."""
    args = [np.array(a, copy=True, order="K") if isinstance(a, np.ndarray) else a
            for a in args]
    options = dict(options)
    if "grad_out" in options:
        options["grad_out"] = grad_out_for(options["grad_out"], args[0])
    if device:
        in_place = options.get("grad_out") is args[0]
        args = [device(a) if isinstance(a, np.ndarray) else a for a in args]
        options = {k: device(v) if isinstance(v, np.ndarray) else v
                   for k, v in options.items()}
        if in_place:
            options["grad_out"] = args[0]
    return args, options


def _numpy(fn, args, options):
    """(result, None) or (None, the error) of the NumPy API's call."""
    host_args, host_options = _arguments(args, options, None)
    try:
        return fn(*host_args, **host_options), None
    except ALLOWED as exc:
        return None, exc


def _valid_values(fn, args):
    """The arguments with values no check can refuse, their shapes and dtypes kept: class
    0 for integer targets, 0.5 for the probabilities of binary_cross_entropy."""
    x, t = args
    if fn is fx.binary_cross_entropy and x.dtype.kind == "f":
        return np.full_like(x, 0.5), np.full_like(t, 0.5 if t.dtype.kind in "fc" else 1)
    return x, np.zeros_like(t)


def _same(gpu, fn, args, options):
    want, error = _numpy(fn, args, options)
    dev_args, dev_options = _arguments(args, options, gpu.dev)
    try:
        got = fn(*dev_args, **dev_options)
    except ALLOWED as exc:
        assert error is not None, f"the device raised {exc!r}; NumPy returned"
        assert not _gpu._pending, "a refused call left a device error pending"
        if (type(exc), str(exc)) != (type(error), str(error)):
            # The device checks values after the call's other checks: with a value fault
            # and another, it names the other one, which NumPy names once the values are
            # valid.
            error = _numpy(fn, _valid_values(fn, args), options)[1]
            assert (type(exc), str(exc)) == (type(error), str(error))
        return
    try:
        fx.check_errors()
        deferred = None
    except ALLOWED as exc:
        deferred = exc
    if error is not None:
        assert type(deferred) is type(error), f"NumPy raised {error!r}; the device {deferred!r}"
        return
    assert deferred is None, deferred
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    assert len(got) == len(want)
    dtype = np.dtype(args[0].dtype).name
    for g, w in zip(got, want):
        assert type(g).__module__.startswith("cupy"), type(g)
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        cuda_host_lib.assert_close(g, w, dtype)


@pytest.mark.parametrize("fn", list(LOSSES), ids=lambda f: f.__name__)
@GPU_FUZZ
@given(data=st.data())
def test_losses_match_the_numpy_api(gpu, fn, data):
    x = data.draw(arrays(**DEVICE))
    if fn in (fx.cross_entropy, fx.nll_loss):
        t = targets_like(data.draw, x, **DEVICE)
    else:
        t = data.draw(st.one_of(arrays(shape=x.shape, **DEVICE), arrays(**DEVICE)))
    names = data.draw(st.lists(st.sampled_from(LOSSES[fn]), unique=True))
    _same(gpu, fn, (x, t), {name: option(data.draw, name, x, **DEVICE) for name in names})


@pytest.mark.parametrize("fn", [fx.softmax, fx.log_softmax, fx.logsumexp],
                         ids=lambda f: f.__name__)
@GPU_FUZZ
@given(data=st.data())
def test_transforms_match_the_numpy_api(gpu, fn, data):
    x = data.draw(arrays(**DEVICE))
    names = data.draw(st.lists(st.sampled_from(
        ["axis", "keepdims"] if fn is fx.logsumexp else ["axis"]), unique=True))
    _same(gpu, fn, (x,), {name: option(data.draw, name, x, **DEVICE) for name in names})
