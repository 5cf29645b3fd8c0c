"""The CPU kernels (Cython + OpenMP). They trust their inputs: call them through functional."""
import os
import warnings

from ._omp import cpu_builds, cpu_kernels, omp_max_threads, omp_thread_limit, openmp_enabled

__all__ = ["cpu_builds", "cpu_kernels", "omp_max_threads", "omp_thread_limit",
           "openmp_enabled"]

# The kernels read the cap themselves, when they load (fx_simd.h); here an unknown value is
# reported rather than silently ignored.
_cap = os.environ.get("FASTXENT_CPU_KERNELS")
if _cap is not None and _cap not in ("avx512", "avx2", "baseline"):
    warnings.warn(f"FASTXENT_CPU_KERNELS={_cap!r} is not 'avx512', 'avx2' or 'baseline'; "
                  f"it is ignored", RuntimeWarning, stacklevel=2)
