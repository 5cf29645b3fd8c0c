"""The CUDA sources' host+device code built by g++ into a shared library (tests/cuda_host),
and the conversion of launcher arguments to ctypes: the CPU stand-in for a device."""
import ctypes
import os
import shutil
import subprocess

import numpy as np

from fastxent import _cuda_sources as S

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPE_CODES = S.DTYPE_CODES


def build(directory):
    gxx = shutil.which("g++")
    assert gxx, "g++ is required (it builds the extension)"
    out = os.path.join(str(directory), "libfxhost.so")
    subprocess.run([gxx, "-std=c++20", "-pthread", "-O1", "-Wall", "-Wextra", "-Werror", "-shared",
                    "-fPIC", "-x", "c++", "-I", str(S.SOURCE_DIR),
                    os.path.join(HERE, "cuda_host", "fx_host.cpp"), "-o", out],
                   check=True, capture_output=True, timeout=300)
    lib = ctypes.CDLL(out)
    lib.fx_host_set_lanes.argtypes = [ctypes.c_int]
    lib.fx_host_set_cluster.argtypes = [ctypes.c_int]
    for name, res, arg in (("fx_host_to_f16", ctypes.c_ushort, ctypes.c_float),
                           ("fx_host_from_f16", ctypes.c_float, ctypes.c_ushort),
                           ("fx_host_to_bf16", ctypes.c_ushort, ctypes.c_float),
                           ("fx_host_from_bf16", ctypes.c_float, ctypes.c_ushort)):
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = [arg]
    lib.fx_host_row_cache_bytes.restype = ctypes.c_longlong
    lib.fx_host_row_cache_bytes.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.fx_host_narrow_double.restype = ctypes.c_uint
    lib.fx_host_narrow_double.argtypes = [ctypes.c_int, ctypes.c_double]
    return lib


def c_arg(arg):
    """A launcher argument as ctypes: arrays by address, typed NumPy scalars by value."""
    if isinstance(arg, np.ndarray):
        return ctypes.c_void_p(arg.__array_interface__["data"][0])
    return {np.dtype(np.int64): ctypes.c_longlong, np.dtype(np.int32): ctypes.c_int,
            np.dtype(np.float64): ctypes.c_double}[np.asarray(arg).dtype](arg)


# Tolerances of a device result against the CPU backend's, by storage dtype: float32 and
# the 16-bit types compute in float on the device (double on the CPU).
TOL = {"float64": 1e-12, "float32": 3e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


def assert_close(got, want, dtype, what=""):
    """Same NaN positions, same infinities, finite values within TOL[dtype] of the row's
    scale."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    infinite = np.isinf(want)
    np.testing.assert_array_equal(got[infinite], want[infinite], err_msg=what)
    finite = np.isfinite(want)
    scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
    np.testing.assert_allclose(got[finite], want[finite], rtol=TOL[dtype],
                               atol=TOL[dtype] * scale, err_msg=what)
