"""Random combinations of every option, shape, layout and dtype against the PyTorch oracle.

The parity grids take each option over a fixed set of shapes; here hypothesis draws them
together: class counts on both sides of the kernels' thresholds (16, 64, 256), the class
axis anywhere, C-ordered, Fortran, strided, permuted and reversed layouts, float16,
bfloat16, float32 and float64, non-finite and huge logits, ignored targets (some, all, a
class), weights, label smoothing, an upstream gradient (finite or infinite), the gradient
into a given buffer or in place, and one or two threads. Every call must match the float64
oracle on the same (rounded) inputs within the grids' tolerances (the oracle's answer
rounded to the result's dtype, so that a float16 sum past 65504 is inf in both), give the
same loss with and without its gradient, bit for bit, and leave its inputs alone.

The CI profile runs three times ``FASTXENT_FUZZ_EXAMPLES`` cases per test (450,
derandomised); the long profile of docs/testing.md runs more."""
import warnings

import ml_dtypes
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent as fx
import oracle
from cases import BF16, assert_close, assert_same
from fuzz_inputs import FUZZ
from layouts import LAYOUTS, with_layout

DTYPES = [np.float16, np.float32, np.float64, BF16]
# Class counts: small, and on both sides of the packed rows' 16, the tiles' 64 and the
# grouped rows' 256 classes, up to long rows.
CLASSES = st.one_of(st.integers(1, 9), st.sampled_from(
    [15, 16, 17, 63, 64, 65, 255, 256, 257, 1000, 1031, 4097]))
# Three times the other fuzz tests' cases: each case here is cheap (about 10 ms), and a
# wrong option needs several draws to line up (kl_div, "batchmean", two unequal axes).
ORACLE_FUZZ = settings(FUZZ, max_examples=3 * FUZZ.max_examples)
# What a problem's logits hold besides standard normal values times a scale.
EXTRAS = ["none", "-inf class", "-inf row", "+inf", "nan", "huge"]


@st.composite
def class_problems(draw):
    """(logits, their layout, class axis, the axis argument, a generator): up to four
    dimensions, the class axis 1 (or 0 of a single row), or moved by axis=-1 or axis=0."""
    C = draw(CLASSES)
    ndim = draw(st.integers(1, 4))
    axis = None if ndim == 1 else draw(st.sampled_from([None, None, -1, 0]))
    ax = 0 if ndim == 1 else (1 if axis is None else axis % ndim)
    dims = [draw(st.integers(0, 70 if ndim == 2 else 5)) for _ in range(ndim - 1)]
    if C > 256:
        dims = [min(d, 3) for d in dims]
    shape = tuple(dims[:ax]) + (C,) + tuple(dims[ax:])
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    class_last = shape[:ax] + shape[ax + 1:] + (C,)
    rows = (rng.standard_normal(class_last) * draw(st.sampled_from([1e-3, 1, 4, 30, 1e3]))
            ).reshape(-1, C)
    extra = draw(st.sampled_from(EXTRAS))
    if rows.size and extra != "none":
        r, c = rng.integers(0, rows.shape[0]), rng.integers(0, C)
        if extra == "-inf class":
            rows[:, [0, c]] = -np.inf
        elif extra == "-inf row":
            rows[r] = -np.inf
        elif extra == "huge":
            rows[r, c] = ml_dtypes.finfo(dtype).max / 2
        else:
            rows[r, c] = np.inf if extra == "+inf" else np.nan
    x = np.moveaxis(rows.reshape(class_last), -1, ax).astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(x, layout), layout, ax, axis, rng


def _operands(kind, x, layout):
    """The call's input and grad_out: x and none, x and a new buffer full of NaN, or (in
    place) a copy of x in the same layout as both."""
    if kind == "in place":
        xin = with_layout(x, layout)
        return xin, xin
    return x, (np.full(x.shape, np.nan, x.dtype) if kind == "given" else None)


def _check(fn, reference, xin, grad_out, args, kw, go):
    """fn(xin, *args, **kw) against the oracle's (loss, grad), with and without the
    gradient; the inputs are left alone, but for xin when it is grad_out."""
    dtype = xin.dtype
    with np.errstate(over="ignore"):        # a float16 result past 65504 is inf
        want = [np.asarray(r).astype(dtype).astype(np.float64) for r in reference]
    inputs = [a for a in (xin, *args) if a is not grad_out]
    snapshot = [np.array(a, copy=True) for a in inputs]
    alone = fn(xin, *args, **kw)
    extra = {} if grad_out is None else {"grad_out": grad_out}
    loss, grad = fn(xin, *args, return_grad=True, grad_output=go, **kw, **extra)
    if grad_out is not None:
        assert grad is grad_out
    assert_same(alone, loss)
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype and grad.shape == xin.shape
    assert_close(loss, want[0], dtype)
    assert_close(grad, want[1], dtype)
    for a, before in zip(inputs, snapshot):
        assert_same(a, before)


@ORACLE_FUZZ
@given(problem=class_problems(), data=st.data())
def test_class_losses_match_torch(problem, data):
    x, layout, ax, axis, rng = problem
    C = x.shape[ax]
    loss_shape = x.shape[:ax] + x.shape[ax + 1:]
    fn = data.draw(st.sampled_from(["cross_entropy", "cross_entropy", "nll_loss"]))
    probabilities = fn == "cross_entropy" and data.draw(st.booleans())
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]))
    kw = dict(reduction=reduction)
    if data.draw(st.booleans()):
        kw["weight"] = rng.uniform(0.2, 2.0, C)
    if fn == "cross_entropy":
        kw["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.1, 1.0]))
    if probabilities:
        q = rng.random(x.shape) + 0.05
        target = (q / q.sum(axis=ax, keepdims=True)).astype(x.dtype)
    else:
        target = rng.integers(0, C, loss_shape)
        ignored = data.draw(st.sampled_from(["none", "a class", "some", "every"]))
        if ignored == "a class":
            kw["ignore_index"] = int(rng.integers(0, C))
        elif ignored != "none":
            kw["ignore_index"] = data.draw(st.sampled_from([-100, -1, C + 2]))
            target[rng.random(loss_shape) < (0.3 if ignored == "some" else 1.0)] = \
                kw["ignore_index"]
    go = None
    upstream = data.draw(st.sampled_from(["default", "finite", "finite", "infinite"]))
    if upstream != "default":
        go = rng.standard_normal(loss_shape) if reduction == "none" else 1.7
    if upstream == "infinite":      # PyTorch's two backward steps make NaNs of it
        go = np.where(rng.random(np.shape(go)) < 0.5, np.copysign(np.inf, go), go)
    fx.set_num_threads(data.draw(st.sampled_from([1, 2])))
    xin, grad_out = _operands(data.draw(st.sampled_from(["none", "given", "in place"])), x,
                              layout)
    with np.errstate(all="ignore"):
        reference = getattr(oracle, fn)(np.asarray(x, np.float64), target.astype(np.float64)
                                        if probabilities else target, axis=axis,
                                        grad_output=go, **kw)
    _check(getattr(fx, fn), reference, xin, grad_out, (target,), dict(kw, axis=axis), go)


@st.composite
def broadcast_shapes(draw, shape):
    """A shape that broadcasts to `shape` by PyTorch's trailing rule."""
    tail = shape[len(shape) - draw(st.integers(0, len(shape))):]
    return tuple(1 if draw(st.booleans()) else n for n in tail)


@ORACLE_FUZZ
@given(data=st.data())
def test_elementwise_losses_match_torch(data):
    shape = tuple(data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 8, 17, 33, 65, 257]),
                                     max_size=4)))
    if np.prod(shape) > 100_000:
        shape = tuple(min(n, 3) for n in shape)
    dtype = data.draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fn = data.draw(st.sampled_from(["binary_cross_entropy", "binary_cross_entropy_with_logits",
                                    "kl_div"]))
    kw = dict(reduction=data.draw(st.sampled_from(
        ["none", "mean", "sum"] + (["batchmean"] if fn == "kl_div" else []))))
    edges = data.draw(st.booleans()) and np.prod(shape) > 0
    if fn == "binary_cross_entropy":
        x, target = rng.uniform(0, 1, shape), rng.random(shape)
        if edges:                           # log(0) clamped at -100
            x.flat[0], x.flat[-1], target.flat[0] = 0.0, 1.0, 1.0
    elif fn == "binary_cross_entropy_with_logits":
        x = rng.standard_normal(shape) * data.draw(st.sampled_from([0.1, 1, 4, 40]))
        target = rng.random(shape)
        if edges:
            x.flat[0] = np.inf
    else:
        kw["log_target"] = data.draw(st.booleans())
        x = np.log(rng.uniform(0.01, 1, shape))
        target = rng.standard_normal(shape) if kw["log_target"] else rng.random(shape)
        if edges and not kw["log_target"]:
            target.flat[0] = 0.0            # xlogy(0, 0) = 0
    if fn != "kl_div" and data.draw(st.booleans()):
        kw["weight"] = rng.uniform(0.2, 2, data.draw(broadcast_shapes(shape)))
    if fn == "binary_cross_entropy_with_logits" and data.draw(st.booleans()):
        kw["pos_weight"] = rng.uniform(0.2, 3, data.draw(broadcast_shapes(shape)))
    layout = data.draw(st.sampled_from(LAYOUTS))
    x = with_layout(x.astype(dtype), layout)
    target = with_layout(target.astype(data.draw(st.sampled_from([dtype, np.float64]))),
                         data.draw(st.sampled_from(LAYOUTS)))
    go = None
    if data.draw(st.booleans()):
        go = rng.standard_normal(shape) if kw["reduction"] == "none" else 1.3
    fx.set_num_threads(data.draw(st.sampled_from([1, 2])))
    xin, grad_out = _operands(data.draw(st.sampled_from(["none", "given", "in place"])), x,
                              layout)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # torch's note on kl_div's "mean"
        reference = getattr(oracle, fn)(np.asarray(x, np.float64),
                                        np.asarray(target, np.float64), grad_output=go, **kw)
    _check(getattr(fx, fn), reference, xin, grad_out, (target,), kw, go)


@ORACLE_FUZZ
@given(problem=class_problems(), name=st.sampled_from(["softmax", "log_softmax", "logsumexp"]),
       threads=st.sampled_from([1, 2]))
def test_transforms_match_torch(problem, name, threads):
    x, _, ax, _, _ = problem
    fx.set_num_threads(threads)
    before = np.array(x, copy=True)
    got = getattr(fx, name)(x, axis=ax)
    want = getattr(oracle, name)(np.asarray(x, np.float64), axis=ax)
    assert got.dtype == x.dtype and got.shape == want.shape
    with np.errstate(over="ignore"):
        assert_close(got, want.astype(x.dtype), x.dtype)
    assert_same(x, before)
