# What the build did about OpenMP, and the run-time thread count it sees.
# omp_get_max_threads() is read at each call (never cached), so OMP_NUM_THREADS and
# threadpoolctl's limits both apply.

cdef extern from *:
    """
    #if defined(_OPENMP)
    #include <omp.h>
    static int fx_openmp_enabled(void) { return 1; }
    static int fx_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fx_openmp_enabled(void) { return 0; }
    static int fx_omp_max_threads(void) { return 1; }
    #endif
    """
    int fx_openmp_enabled() nogil
    int fx_omp_max_threads() nogil


def openmp_enabled():
    """Return True when the CPU kernels were compiled with OpenMP.

    Examples
    --------
    >>> import fastxent as fx
    >>> isinstance(fx.openmp_enabled(), bool)
    True
    """
    return bool(fx_openmp_enabled())


def omp_max_threads():
    """Return ``omp_get_max_threads()`` now (1 when built without OpenMP)."""
    return fx_omp_max_threads()
