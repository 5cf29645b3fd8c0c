"""Fuzzing every public function and loss class with hypothesis.

Random shapes (0- and 1-sized axes included), dtypes (float, int, bool, complex, object),
layouts, non-finite values, out-of-range targets and option values of the wrong type or
range. Every call must return, or raise ValueError, TypeError or IndexError with a
message from fastxent's own checks (not from a kernel: in the Debug build an index past a
buffer's end raises IndexError too, and that must fail here). It must never raise another
exception, emit a RuntimeWarning (an error under this suite's settings), crash or modify
its inputs.

The CI profile runs ``FASTXENT_FUZZ_EXAMPLES`` cases per function (default 150). The
release profile is documented in docs/testing.md:

    FASTXENT_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -p no:randomly
"""
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import fastxent as fx

from fuzz_inputs import ALLOWED, FUZZ, LOSSES, arrays, grad_out_for, option, targets_like


def _unchanged(a, before):
    if a.dtype == object:
        return [repr(v) for v in a.ravel()] == [repr(v) for v in before.ravel()]
    return np.array_equal(a, before, equal_nan=a.dtype.kind in "fc")


def _raised_by_fastxent(exc):
    """The error comes from fastxent's own checks (a .py module of the package), not from a
    kernel: the Debug build's bounds check raises IndexError from a .pyx file."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    assert "fastxent" in where and where.endswith(".py"), f"{exc!r} raised in {where}"


def _call(fn, x, t, options):
    snapshot = [(a, np.array(a, copy=True)) for a in (x, t) if isinstance(a, np.ndarray)]
    go = options.get("grad_out")
    if "grad_out" in options:
        options["grad_out"] = grad_out_for(go, x)
    try:
        result = fn(x, **options) if t is None else fn(x, t, **options)
        event("returned")
    except ALLOWED as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        _raised_by_fastxent(exc)
        event(type(exc).__name__)
        result = None
    in_place = go == "input" and result is not None
    for array, before in snapshot:
        if not (in_place and array is x):
            assert _unchanged(array, before), "an input was modified"
    return result


@pytest.mark.parametrize("fn", list(LOSSES), ids=lambda f: f.__name__)
@FUZZ
@given(data=st.data())
def test_losses_return_or_raise_cleanly(fn, data):
    x = data.draw(arrays())
    t = targets_like(data.draw, x) if fn in (fx.cross_entropy, fx.nll_loss) else \
        data.draw(st.one_of(arrays(shape=x.shape), arrays()))
    names = data.draw(st.lists(st.sampled_from(LOSSES[fn]), unique=True))
    options = {name: option(data.draw, name, x) for name in names}
    _call(fn, x, t, options)


@pytest.mark.parametrize("fn", [fx.softmax, fx.log_softmax, fx.logsumexp],
                         ids=lambda f: f.__name__)
@FUZZ
@given(data=st.data())
def test_transforms_return_or_raise_cleanly(fn, data):
    x = data.draw(arrays())
    names = data.draw(st.lists(st.sampled_from(
        ["axis", "keepdims"] if fn is fx.logsumexp else ["axis"]), unique=True))
    options = {name: option(data.draw, name, x) for name in names}
    result = _call(fn, x, None, options)
    if result is not None and fn is not fx.logsumexp:
        assert result.shape == x.shape and result.dtype == x.dtype


CLASSES = [(fx.CrossEntropyLoss, fx.cross_entropy), (fx.NLLLoss, fx.nll_loss),
           (fx.BCELoss, fx.binary_cross_entropy),
           (fx.BCEWithLogitsLoss, fx.binary_cross_entropy_with_logits),
           (fx.KLDivLoss, fx.kl_div)]


@pytest.mark.parametrize("cls,fn", CLASSES, ids=lambda c: getattr(c, "__name__", ""))
@FUZZ
@given(data=st.data())
def test_loss_classes_return_or_raise_cleanly(cls, fn, data):
    x = data.draw(arrays())
    t = targets_like(data.draw, x) if fn in (fx.cross_entropy, fx.nll_loss) else \
        data.draw(arrays(shape=x.shape))
    names = data.draw(st.lists(st.sampled_from(
        [n for n in LOSSES[fn] if n not in ("return_grad", "grad_output", "grad_out")]),
        unique=True))
    options = {name: option(data.draw, name, x) for name in names}
    try:
        loss = cls(**options)
    except ALLOWED as exc:
        assert str(exc)
        _raised_by_fastxent(exc)
        return
    _call(lambda a, b: loss(a, b), x, t, {})
    _call(lambda a, b: loss.loss_and_grad(a, b), x, t, {})
