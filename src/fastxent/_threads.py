"""How many OpenMP threads a kernel call uses.

The count is resolved at each call, never cached at import: a ``limited(n)`` block on the
calling thread wins (the Dask path uses it so that each Dask thread runs one OpenMP thread),
then ``fx.set_num_threads(n)``, then ``omp_get_max_threads()``, which already honours
``OMP_NUM_THREADS`` and threadpoolctl's ``threadpool_limits(user_api="openmp")``; none
exceeds ``OMP_THREAD_LIMIT``, which OpenMP enforces whatever a region asks for. Calls
smaller than ``SERIAL_THRESHOLD`` elements run on one thread, because starting the team
costs more than the work. A kernel given one thread runs its loop outside any OpenMP parallel
region: entering even a one-thread region costs about half a microsecond, seven times the
kernel of a (16, 10) loss. Results never depend on the count: kernels write per-row values or
fixed blocks (see ``_reduce.py``).

Whichever source sets it, the count is at most ``THREADS_PER_PROCESSOR`` per processor this
process may run on: no kernel gains from more, and OpenMP's runtime ends the process when it
cannot start the threads a parallel region asks for (libgomp aborted at 40 000 threads on a
2-core machine, and crashed at 65 535).

In a process forked after this one's kernels ran on more than one thread, every kernel runs
on one thread. GNU OpenMP (libgomp) keeps its thread pool across ``fork()``, but the child
has none of those threads, and its first parallel region would wait for them forever: a
``multiprocessing`` pool with the "fork" start method, a PyTorch ``DataLoader`` worker, a
pre-forking server. A process forked before any team started keeps its count.
"""
from __future__ import annotations

import contextlib
import operator
import os
import threading

from ._cpu import omp_max_threads, omp_thread_limit

#: Below this many elements a call runs serially (team start-up dominates tiny problems).
SERIAL_THRESHOLD = 32768
#: The most threads a kernel runs per processor: a few per processor stay possible (to test
#: oversubscription, or where a container under-reports its processors).
THREADS_PER_PROCESSOR = 16

_requested: int | None = None
_local = threading.local()     # .n: the count inside a limited() block on this thread
_teams_started = False         # a kernel of this process asked OpenMP for several threads
_forked_after_teams = False    # this process was forked from one whose kernels had


def _after_fork_in_child() -> None:
    global _forked_after_teams
    _forked_after_teams = _forked_after_teams or _teams_started


if hasattr(os, "register_at_fork"):         # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _count(n, name: str = "n") -> int | None:
    """`n` as a positive int, or None; raises as set_num_threads documents."""
    if n is None:
        return None
    if isinstance(n, bool):
        raise TypeError(f"{name} must be a positive integer or None; got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer or None; got "
                        f"{type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"{name} must be a positive integer or None; got {n}")
    return n


def set_num_threads(n: int | None) -> None:
    """Set the number of OpenMP threads fastxent's CPU kernels use.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None to go back to the default
        (``omp_get_max_threads()``: ``OMP_NUM_THREADS``, threadpoolctl limits, or all cores).
        Kernels run at most 16 threads per processor available to the process, whatever
        is asked: OpenMP ends the process when it cannot start the threads asked for.

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
    _requested = _count(n)


def get_num_threads() -> int:
    """Return the number of OpenMP threads a large kernel call would use now.

    Returns
    -------
    int
        `set_num_threads`'s value if set, else OpenMP's maximum (``OMP_NUM_THREADS``,
        threadpoolctl); inside a thread-local limit, that limit. At most
        ``OMP_THREAD_LIMIT`` and 16 per processor available to the process, and 1 in a
        process forked after this one's kernels ran on several threads (GNU OpenMP cannot
        start threads there).

    Examples
    --------
    >>> import fastxent as fx
    >>> fx.get_num_threads() >= 1
    True
    """
    if _forked_after_teams:
        return 1
    local = getattr(_local, "n", None)
    if local is not None:
        chosen = local
    else:
        chosen = _requested if _requested is not None else omp_max_threads()
    return min(chosen, THREADS_PER_PROCESSOR * _processors(), omp_thread_limit())


def _processors() -> int:
    """The processors this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def limited(n: int | None, name: str = "n"):
    """Run the calling thread's kernels on `n` OpenMP threads inside the block.

    Thread-local, so concurrent callers (Dask's worker threads) do not see each other's
    limit; None leaves the count as it is.
    """
    n = _count(n, name)
    previous = getattr(_local, "n", None)
    _local.n = n if n is not None else previous
    try:
        yield
    finally:
        _local.n = previous


def threads_for(work: int) -> int:
    """Threads for a call touching `work` elements: 1 below SERIAL_THRESHOLD."""
    global _teams_started
    if work < SERIAL_THRESHOLD:
        return 1
    n = get_num_threads()
    if n > 1:
        _teams_started = True
    return n
