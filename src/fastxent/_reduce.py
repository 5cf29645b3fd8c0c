"""reduction="none" / "mean" / "sum" and the gradient scale, on the CPU.

Kernels return per-row losses (class-axis problems) or a total summed in fixed blocks
(element-wise problems). The GPU backend (``_gpu``) applies the same conventions to device
arrays without reading the denominator on the host (``_gpu._mean_scale``, and the row and
element-wise kernels' own reduced loss, ``_gpu._reduced_loss``); the stand-in tests
(test_gpu_backend_on_cpu.py) hold it to this module's results.

PyTorch's conventions, which these functions encode:
* "mean" divides by the problem's denominator: the sum of the true-class weights over
  non-ignored targets (class indices), the number of items (probability targets), the
  element count (binary losses, kl_div "mean") or the first dimension (kl_div "batchmean").
* A zero denominator makes "mean" NaN, and its gradient NaN wherever a row still counts
  (a present class of weight 0), while ignored rows keep a zero gradient: the kernels never
  read the scale of an ignored row.
"""
from __future__ import annotations

import numpy as np

from . import _half
from ._cpu._xent import row_total
from ._threads import threads_for

# np.errstate costs about a microsecond on entry and exit, so the casts below enter it only
# when a cast can overflow.


def narrow(a, dtype):
    """`a` in the caller's dtype. A value past a 16-bit dtype's range becomes +-inf without
    a warning, as it does in PyTorch's casts."""
    if a.dtype == dtype:
        return a
    if dtype.itemsize == 2 and isinstance(a, np.ndarray):     # float16, bfloat16
        out = np.empty_like(a, dtype=dtype)
        _half.narrow_into(out, a)
        return out
    with np.errstate(over="ignore"):
        return a.astype(dtype)


_LARGEST = {}


def _largest(dtype) -> float:
    """The largest finite value of `dtype`; 0 where NumPy's finfo does not know it (bfloat16),
    so that every cast to it is guarded."""
    if dtype not in _LARGEST:
        try:
            _LARGEST[dtype] = float(np.finfo(dtype).max)
        except ValueError:
            _LARGEST[dtype] = 0.0
    return _LARGEST[dtype]


def _mean(total, denominator):
    if denominator == 0:
        return np.nan
    return total / denominator


def reduce_rows(rows, reduction: str, denominator: float, loss_shape, dtype):
    """Reduce per-row float64 losses of shape (outer, inner)."""
    if reduction == "none":
        return narrow(rows.reshape(loss_shape), dtype)
    return reduce_total(row_total(rows, threads_for(rows.size)), reduction, denominator, dtype)


def reduce_total(total, reduction: str, denominator: float, dtype):
    """The 0-d result of "sum" or "mean" from a float64 total."""
    value = total if reduction == "sum" else _mean(total, denominator)
    if not abs(value) > _largest(dtype):        # NaN and +-inf cast without a warning
        return np.asarray(value, dtype=dtype)
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=dtype)


def grad_scale(grad_output, reduction: str, denominator: float):
    """d(total)/d(loss): a float64 scalar for "sum"/"mean", the (broadcast) array for "none"."""
    if reduction == "none":
        return grad_output
    return np.float64(grad_output if reduction == "sum" else _mean(grad_output, denominator))
