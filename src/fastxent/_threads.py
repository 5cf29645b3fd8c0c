"""How many OpenMP threads a kernel call uses.

The count is resolved at each call, never cached at import: ``fx.set_num_threads(n)`` wins;
otherwise ``omp_get_max_threads()``, which already honours ``OMP_NUM_THREADS`` and
threadpoolctl's ``threadpool_limits(user_api="openmp")``. Calls smaller than
``SERIAL_THRESHOLD`` elements run on one thread, because starting the team costs more than
the work. Results never depend on the count: kernels write per-row values or fixed blocks
(see ``_reduce.py``).
"""
from __future__ import annotations

import operator

from ._cpu import omp_max_threads

#: Below this many elements a call runs serially (team start-up dominates tiny problems).
SERIAL_THRESHOLD = 32768

_requested: int | None = None


def set_num_threads(n: int | None) -> None:
    """Set the number of OpenMP threads fastxent's CPU kernels use.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None to go back to the default
        (``omp_get_max_threads()``: ``OMP_NUM_THREADS``, threadpoolctl limits, or all cores).

    Raises
    ------
    TypeError
        If `n` is not an integer or None.
    ValueError
        If `n` is smaller than 1.

    Examples
    --------
    >>> import fastxent as fx
    >>> fx.set_num_threads(1)
    >>> fx.get_num_threads()
    1
    >>> fx.set_num_threads(None)
    """
    global _requested
    if n is None:
        _requested = None
        return
    if isinstance(n, bool):
        raise TypeError(f"n must be a positive integer or None; got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be a positive integer or None; got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n must be a positive integer or None; got {n}")
    _requested = n


def get_num_threads() -> int:
    """Return the number of OpenMP threads a large kernel call would use now.

    Examples
    --------
    >>> import fastxent as fx
    >>> fx.get_num_threads() >= 1
    True
    """
    return _requested if _requested is not None else omp_max_threads()


def threads_for(work: int) -> int:
    """Threads for a call touching `work` elements: 1 below SERIAL_THRESHOLD."""
    return 1 if work < SERIAL_THRESHOLD else get_num_threads()
