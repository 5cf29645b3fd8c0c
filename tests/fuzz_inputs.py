"""Hypothesis strategies for fuzzing the public functions: arrays of any shape (0- and
1-sized axes included), dtype and layout with non-finite values, class targets of plausible
and implausible shapes and values, and option values of the wrong type or range."""
import os

import numpy as np
from hypothesis import HealthCheck, settings
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
def arrays(draw, shape=None, dtypes=DTYPES, special=SPECIAL):
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=3, size=shape)
    if values.size and draw(st.booleans()):
        values.flat[rng.integers(0, values.size, 3)] = rng.choice(special, 3)
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


def targets_like(draw, x, dtypes=DTYPES, special=SPECIAL):
    """Class indices of plausible or implausible shapes and values, or probabilities."""
    kind = draw(st.sampled_from(["index", "index", "probs", "anything"]))
    if kind == "anything" or x.ndim == 0:
        return draw(arrays(dtypes=dtypes, special=special))
    ax = 0 if x.ndim == 1 else 1
    C = x.shape[ax]
    if kind == "probs":
        return draw(arrays(shape=x.shape, dtypes=FLOATS, special=special))
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


def option(draw, name, x, dtypes=DTYPES, special=SPECIAL):
    """A value for the option `name` of a call on x: valid, or of a wrong type or range."""
    if name in OPTIONS:
        return draw(st.sampled_from(OPTIONS[name]))
    some = arrays(dtypes=dtypes, special=special)
    if name in ("weight", "pos_weight"):
        return draw(st.one_of(st.none(), some, st.just(np.ones(x.shape[-1:] or (1,)))))
    if name == "grad_output":
        return draw(st.one_of(st.none(), st.just(2.0), some))
    if name == "grad_out":
        return draw(st.sampled_from([None, "input", "zeros", "wrong"]))
    raise AssertionError(name)


def grad_out_for(marker, x):
    """The grad_out that option() names by `marker`: x itself (in place), a fresh buffer,
    or one of the wrong shape; None stays None."""
    if marker == "input":
        return x
    if marker == "zeros":
        return np.zeros_like(x)
    if marker == "wrong":
        return np.zeros(x.shape + (2,), x.dtype)
    return marker


# The options each loss takes, fuzzed by name
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
