"""The CPU kernels (Cython + OpenMP). They trust their inputs: call them through functional."""
from ._omp import omp_max_threads, openmp_enabled

__all__ = ["omp_max_threads", "openmp_enabled"]
