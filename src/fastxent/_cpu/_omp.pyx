# What the build did about OpenMP and instruction sets, and the run-time thread count it
# sees. omp_get_max_threads() and omp_get_thread_limit() are read at each call (never
# cached), so OMP_NUM_THREADS, OMP_THREAD_LIMIT and threadpoolctl's limits all apply.

from ._common cimport fx_cpu_builds, fx_cpu_kernels

cdef extern from *:
    """
    #if defined(_OPENMP)
    #include <omp.h>
    static int fx_openmp_enabled(void) { return 1; }
    static int fx_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fx_omp_thread_limit(void) { return omp_get_thread_limit(); }
    #else
    static int fx_openmp_enabled(void) { return 0; }
    static int fx_omp_max_threads(void) { return 1; }
    static int fx_omp_thread_limit(void) { return 1; }
    #endif
    """
    int fx_openmp_enabled() nogil
    int fx_omp_max_threads() nogil
    int fx_omp_thread_limit() nogil


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


def omp_thread_limit():
    """Return ``omp_get_thread_limit()`` now: the most threads OpenMP runs (1 without it)."""
    return fx_omp_thread_limit()


def cpu_kernels():
    """Return the instruction set of the CPU kernels that run: "avx512", "avx2" or "baseline".

    On x86-64 the kernels are built for AVX-512, for AVX2 with FMA and for the baseline, and
    each call takes the widest this CPU runs. The environment variable
    ``FASTXENT_CPU_KERNELS=avx2`` (or ``baseline``), set before fastxent is imported, caps the
    choice: to compare the builds, or to run what an older CPU would. A build for one
    instruction set (other compilers and CPUs, ``FASTXENT_NATIVE``) names the one it has.

    Returns
    -------
    str
        ``"avx512"``, ``"avx2"`` or ``"baseline"``.

    Examples
    --------
    >>> import fastxent as fx
    >>> fx.cpu_kernels() in ("avx512", "avx2", "baseline")
    True
    """
    return fx_cpu_kernels().decode()


def cpu_builds():
    """Return the instruction sets the CPU kernels were built for, widest first."""
    return tuple(fx_cpu_builds().decode().split())
