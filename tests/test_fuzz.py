"""Fuzzing every public function and loss class with hypothesis.

Random shapes (0- and 1-sized axes included), dtypes (float, int, bool, complex, object),
layouts, non-finite values, out-of-range targets and option values of the wrong type or
range. Every call must return, or raise ValueError, TypeError or IndexError with a
message from fastxent's own checks (not from a kernel: in the Debug build an index past a
buffer's end raises IndexError too, and that must fail here). It must never raise another exception, emit a RuntimeWarning (an error under this
suite's settings), crash or modify its inputs.

The CI profile runs ``FASTXENT_FUZZ_EXAMPLES`` cases per function (default 150). The
release profile is documented in docs/testing.md:

    FASTXENT_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -p no:randomly
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastxent as fx

EXAMPLES = int(os.environ.get("FASTXENT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALLOWED = (ValueError, TypeError, IndexError)

FLOATS = [np.float16, np.float32, np.float64]
# Floats four times as often as the rest, so that most cases get past the dtype checks.
DTYPES = FLOATS * 4 + [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex64, object]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e30, -1e30, 0.5, 1e-40]


@st.composite
def arrays(draw, shape=None, dtypes=DTYPES):
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=3, size=shape)
    if values.size and draw(st.booleans()):
        values.flat[rng.integers(0, values.size, 3)] = rng.choice(SPECIAL, 3)
    if dtype is object:
        a = values.astype(object)
    elif np.dtype(dtype).kind in "iub":
        with np.errstate(invalid="ignore"):
            a = np.nan_to_num(values, posinf=5, neginf=-5).round().astype(dtype)
    else:
        with np.errstate(over="ignore"):
            a = values.astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "reversed", "transposed"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "reversed" and a.ndim:
        a = a[::-1]
    elif layout == "transposed" and a.ndim > 1:
        a = np.ascontiguousarray(a.swapaxes(0, -1)).swapaxes(0, -1)
    return a


def targets_like(draw, x):
    """Class indices of plausible or implausible shapes and values, or probabilities."""
    kind = draw(st.sampled_from(["index", "index", "probs", "anything"]))
    if kind == "anything" or x.ndim == 0:
        return draw(arrays())
    ax = 0 if x.ndim == 1 else 1
    C = x.shape[ax]
    if kind == "probs":
        return draw(arrays(shape=x.shape, dtypes=FLOATS))
    shape = x.shape[:ax] + x.shape[ax + 1:]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(-3, C + 3, size=shape) if draw(st.booleans()) else \
        rng.integers(0, max(C, 1), size=shape)
    if t.size and draw(st.booleans()):
        t.flat[0] = -100
    return t.astype(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int8])))


OPTIONS = {
    "reduction": ["mean", "sum", "none", "batchmean", "avg", None, 1],
    "label_smoothing": [0.0, 0.1, 1.0, -0.1, 1.5, np.nan, "a", None],
    "ignore_index": [-100, 0, 1, 2**40, 1.5, "x", True],
    "axis": [None, 0, 1, -1, 5, 1.0],
    "return_grad": [False, True, True, 1, "yes"],
    "log_target": [False, True, 0],
    "keepdims": [False, True, "no"],
}


def _option(draw, name, x):
    if name in OPTIONS:
        return draw(st.sampled_from(OPTIONS[name]))
    if name in ("weight", "pos_weight"):
        return draw(st.one_of(st.none(), arrays(), st.just(np.ones(x.shape[-1:] or (1,)))))
    if name == "grad_output":
        return draw(st.one_of(st.none(), st.just(2.0), arrays()))
    if name == "grad_out":
        return draw(st.sampled_from([None, "input", "zeros", "wrong"]))
    raise AssertionError(name)


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
    if go == "input":
        options["grad_out"] = x
    elif go == "zeros":
        options["grad_out"] = np.zeros_like(x)
    elif go == "wrong":
        options["grad_out"] = np.zeros(x.shape + (2,), x.dtype)
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


LOSSES = {
    fx.cross_entropy: ["weight", "ignore_index", "reduction", "label_smoothing", "axis",
                       "return_grad", "grad_output", "grad_out"],
    fx.nll_loss: ["weight", "ignore_index", "reduction", "axis", "return_grad",
                  "grad_output", "grad_out"],
    fx.binary_cross_entropy: ["weight", "reduction", "return_grad", "grad_output", "grad_out"],
    fx.binary_cross_entropy_with_logits: ["weight", "pos_weight", "reduction", "return_grad",
                                          "grad_output", "grad_out"],
    fx.kl_div: ["reduction", "log_target", "return_grad", "grad_output", "grad_out"],
}


@pytest.mark.parametrize("fn", list(LOSSES), ids=lambda f: f.__name__)
@FUZZ
@given(data=st.data())
def test_losses_return_or_raise_cleanly(fn, data):
    x = data.draw(arrays())
    t = targets_like(data.draw, x) if fn in (fx.cross_entropy, fx.nll_loss) else \
        data.draw(st.one_of(arrays(shape=x.shape), arrays()))
    names = data.draw(st.lists(st.sampled_from(LOSSES[fn]), unique=True))
    options = {name: _option(data.draw, name, x) for name in names}
    _call(fn, x, t, options)


@pytest.mark.parametrize("fn", [fx.softmax, fx.log_softmax, fx.logsumexp],
                         ids=lambda f: f.__name__)
@FUZZ
@given(data=st.data())
def test_transforms_return_or_raise_cleanly(fn, data):
    x = data.draw(arrays())
    names = data.draw(st.lists(st.sampled_from(
        ["axis", "keepdims"] if fn is fx.logsumexp else ["axis"]), unique=True))
    options = {name: _option(data.draw, name, x) for name in names}
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
    options = {name: _option(data.draw, name, x) for name in names}
    try:
        loss = cls(**options)
    except ALLOWED as exc:
        assert str(exc)
        _raised_by_fastxent(exc)
        return
    _call(lambda a, b: loss(a, b), x, t, {})
    _call(lambda a, b: loss.loss_and_grad(a, b), x, t, {})
