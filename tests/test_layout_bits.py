"""Which results are the same bit for bit in every memory layout (docs/numerics.md).

Rows whose classes are adjacent in memory go through the row kernel above 64 classes, other
rows through the block kernel, which sums a row's terms in another order (and, in float64,
takes its own logarithm). Both compute the same float exponentials, and their double sums
differ far below float32's rounding, so float32 results agree in every layout; so do rows
of up to 64 classes, which take the block kernel (or the packed rows, lane for lane the
same) in every layout, and nll_loss, which sums nothing. Float64 rows of more than 64
classes agree with the oracle in every layout (the parity grids), not bit for bit."""
import numpy as np
import pytest

import fastxent as fx
from cases import assert_same
from layouts import LAYOUTS, with_layout

# (N, C) and (N, C, d): packed and tiled rows, past the tiles' 64 classes, past the grouped
# rows' 256, long rows, and one row
SHAPES = [(40, 3), (40, 17), (40, 64), (40, 65), (33, 300), (9, 1031), (3, 5000),
          (4, 9, 5), (4, 70, 3), (2, 300, 3), (70,), (5000,)]


def _calls(shape, dtype, rng):
    """Every class-axis function with targets, weights and smoothing fixed for `shape`."""
    ax = 0 if len(shape) == 1 else 1
    C = shape[ax]
    t = rng.integers(0, C, shape[:ax] + shape[ax + 1:])
    q = rng.random(shape) + 0.05
    p = (q / q.sum(axis=ax, keepdims=True)).astype(dtype)
    kw = dict(weight=rng.uniform(0.2, 2, C), reduction="none", return_grad=True)
    return {
        "index": lambda x: fx.cross_entropy(x, t, label_smoothing=0.1, **kw),
        "probabilities": lambda x: fx.cross_entropy(x, p, label_smoothing=0.1, **kw),
        "nll_loss": lambda x: fx.nll_loss(x, t, **kw),
        "softmax": lambda x: (fx.softmax(x, axis=ax),),
        "log_softmax": lambda x: (fx.log_softmax(x, axis=ax),),
        "logsumexp": lambda x: (fx.logsumexp(x, axis=ax),),
    }


def _logits(shape, dtype, rng):
    """Logits with a row of -inf, a +inf, a NaN and a huge logit among ordinary ones."""
    ax = 0 if len(shape) == 1 else 1
    class_last = shape[:ax] + shape[ax + 1:] + shape[ax:ax + 1]
    rows = (rng.standard_normal(class_last) * 3).reshape(-1, shape[ax])
    if rows.shape[0] >= 4:
        rows[0] = -np.inf
        rows[1, -1] = np.inf
        rows[2, 0] = np.nan
        rows[3, rows.shape[1] // 2] = 1e30
    return np.moveaxis(rows.reshape(class_last), -1, ax).astype(dtype)


def _same_in_every_layout(shape, dtype, names):
    rng = np.random.default_rng(len(shape) * 10007 + shape[-1])
    x = _logits(shape, dtype, rng)
    calls = _calls(shape, dtype, rng)
    for name in names:
        want = calls[name](x)
        for layout in LAYOUTS[1:]:
            for got, expected in zip(calls[name](with_layout(x, layout)), want):
                assert_same(got, expected)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_results_do_not_depend_on_the_layout(shape):
    _same_in_every_layout(shape, np.float32, ["index", "probabilities", "nll_loss",
                                              "softmax", "log_softmax", "logsumexp"])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_short_rows_and_nll_loss_do_not_depend_on_the_layout(shape):
    C = shape[0] if len(shape) == 1 else shape[1]
    names = ["nll_loss"]
    if C <= 64:
        names += ["index", "probabilities", "softmax", "log_softmax", "logsumexp"]
    _same_in_every_layout(shape, np.float64, names)
