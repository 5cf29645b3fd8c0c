"""float16 and bfloat16 arrays to float32 and back, on every thread (``_cpu._half``).

A 16-bit call runs the float32 kernels on a float32 copy of its input and rounds the results
back. These do both conversions in the layout NumPy's ``astype`` would give, bit for bit as
NumPy's and ml_dtypes' casts, but on every thread and, for float16, without NumPy's slow
path for values below its smallest normal (about 60 ns each). An array that is neither C- nor
Fortran-contiguous, or too small for threads to pay, goes through NumPy.
"""
from __future__ import annotations

import numpy as np

from ._cpu import _half
from ._threads import threads_for

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_SMALL = 1 << 14        # below this many elements NumPy's cast costs less than the checks


def _kind(dtype):
    """True for bfloat16, False for float16, None for any other dtype."""
    if dtype.itemsize != 2:     # first: dtype.name costs a microsecond, a (16, 10) call 3
        return None
    if dtype == _F16:
        return False
    return True if dtype.name == "bfloat16" else None


def _flat_pair(a: np.ndarray, b: np.ndarray):
    """1-D views of `a` and `b` (one shape, both C- or both Fortran-contiguous) that list
    the same elements in the same order, or None."""
    if a.size < _SMALL:
        return None
    for order in ("C", "F"):
        if a.flags[order + "_CONTIGUOUS"] and b.flags[order + "_CONTIGUOUS"]:
            return a.reshape(-1, order=order), b.reshape(-1, order=order)
    return None


def widen(a: np.ndarray, dtype) -> np.ndarray:
    """``a.astype(dtype, copy=False)``: a float16 or bfloat16 `a` to float32 here."""
    kind = _kind(a.dtype)
    if kind is None or dtype != _F32:
        return a.astype(dtype, copy=False)
    out = np.empty_like(a, dtype=_F32)
    pair = _flat_pair(a, out)
    if pair is None:
        np.copyto(out, a)
    else:
        src, dst = pair
        _half.widen(src.view(np.uint16), dst, kind, threads_for(src.size))
    return out


def narrow_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``np.copyto(dst, src, casting="unsafe")`` for float32 `src`, values beyond a 16-bit
    dtype's range becoming +-inf silently, as in PyTorch's casts."""
    kind = _kind(dst.dtype)
    pair = _flat_pair(src, dst) if kind is not None and src.dtype == _F32 else None
    if pair is None:
        with np.errstate(over="ignore"):
            np.copyto(dst, src, casting="unsafe")
    else:
        s, d = pair
        _half.narrow(s, d.view(np.uint16), kind, threads_for(s.size))
