"""The CUDA sources of the GPU backend, their compile options and template instantiations.

Pure Python (no CuPy): the GPU backend builds its ``cupy.RawModule`` objects from here, and
the CPU-only CI compiles exactly the same modules with nvcc (tests/test_cuda_sources.py).

A module is one kernel template for one operation and one input dtype, with every
instantiation the launcher may ask for (target integer types, lane mappings) listed as
NVRTC name expressions; CuPy compiles them together on first use, per device.
"""
from __future__ import annotations

from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "_cuda"
HEADER = "fx_device.cuh"

# NVRTC options (CuPy adds -arch for the device and its include paths; the sources need no
# CUDA headers). Never -use_fast_math: the exponential and logarithm stay IEEE-accurate.
OPTIONS = ("--std=c++17",)

# rows.cu's launch knobs and the values the backend compiles (its #define defaults).
TUNING_DEFAULTS = {"FX_IN_FLIGHT": 4, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 0}


def tuning_options(**knobs) -> tuple:
    """OPTIONS with rows.cu's launch knobs set (``FX_IN_FLIGHT=8``, ``FX_MIN_BLOCKS=2``,
    ``FX_PREFETCH=1``): the variants benchmarks/gpu_sweep.py times. The backend itself
    compiles with OPTIONS."""
    unknown = set(knobs) - set(TUNING_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tuning knobs {sorted(unknown)}; "
                         f"expected some of {sorted(TUNING_DEFAULTS)}")
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int; got {value!r}")
        if name == "FX_PREFETCH" and value not in (0, 1):
            raise ValueError(f"FX_PREFETCH must be 0 or 1; got {value!r}")
        if name != "FX_PREFETCH" and value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    return OPTIONS + tuple(f"-D{k}={v}" for k, v in sorted(knobs.items()))


# NumPy dtype name -> C++ storage type.
DTYPES = {"float32": "float", "float64": "double", "float16": "fx::f16",
          "bfloat16": "fx::bf16"}
# The kernels' codes of the dtypes where a dtype is an argument (fx_device.cuh:
# store_double_as); the g++ host build's entry points take the same.
DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
# Class-index target dtypes the kernels read directly (others are converted to int64).
TARGETS = {"int32": "int", "int64": "long long"}

ROW_OPS = {"ce_index": 0, "ce_prob": 1, "nll": 2, "logsumexp": 3, "softmax": 4,
           "log_softmax": 5}
INDEX_OPS = ("ce_index", "nll")
ELEMENTWISE_OPS = {"bce": 0, "bce_logits": 1, "kl_div": 2}

# (lanes per row, threads per block, row cached in shared memory); see rows.cu. Lanes a
# multiple of the block (K blocks of a cluster per row, sm_90) name rows_cluster, which the
# backend does not choose yet: benchmarks/gpu_sweep.py times it.
THREAD_PER_ROW = (1, 128, False)
WARP_PER_ROW = (32, 128, False)
BLOCK_PER_ROW = (512, 512, False)
BLOCK_PER_ROW_CACHED = (512, 512, True)
ROW_CONFIGS = (THREAD_PER_ROW, WARP_PER_ROW, BLOCK_PER_ROW, BLOCK_PER_ROW_CACHED)
ELEMENTWISE_BLOCK = 256
# reduce.cu: "mean"'s denominator and gradient scale. The modes of the reduced loss the
# row and element-wise kernels write (fx_device.cuh).
REDUCE_BLOCK = 256
REDUCE_MODES = {"sum": 0, "mean by pointer": 1, "mean by value": 2}


def source(file: str) -> str:
    """The text of ``_cuda/<file>`` with the device header pasted in (NVRTC gets one string)."""
    text = (SOURCE_DIR / file).read_text()
    header = (SOURCE_DIR / HEADER).read_text()
    return text.replace(f'#include "{HEADER}"', header, 1)


def row_kernel(op: str, dtype: str, target: str | None, config) -> str:
    """The name expression of one class-axis kernel instantiation."""
    lanes, block, cached = config
    ti = TARGETS[target] if op in INDEX_OPS else "long long"
    kernel, width = ("rows_cluster", lanes // block) if lanes > block else ("rows", lanes)
    return (f"fx::{kernel}<{ROW_OPS[op]}, {DTYPES[dtype]}, {ti}, {width}, {block}, "
            f"{'true' if cached else 'false'}>")


def elementwise_kernel(op: str, dtype: str, indexed: bool) -> str:
    """The name expression of one element-wise kernel instantiation; `indexed` for a view
    that keeps more than one axis (elementwise.cu's INDEXED)."""
    return (f"fx::elementwise<{ELEMENTWISE_OPS[op]}, {DTYPES[dtype]}, {ELEMENTWISE_BLOCK}, "
            f"{'true' if indexed else 'false'}>")


def mean_scale_kernel(target: str) -> str:
    """The name expression of the "mean" denominator kernel for int32 / int64 targets."""
    return f"fx::mean_scale<{TARGETS[target]}, {REDUCE_BLOCK}>"


def module(kind: str, op: str, dtype: str):
    """``(file, name_expressions)`` of the module holding every instantiation of `op` for
    `dtype`; `kind` is "rows", "elementwise" or "reduce" (one module, op and dtype
    "reduce" and "any": "mean"'s denominator of class-index targets)."""
    if kind == "rows":
        targets = tuple(TARGETS) if op in INDEX_OPS else (None,)
        names = [row_kernel(op, dtype, t, cfg) for t in targets for cfg in ROW_CONFIGS]
        return "rows.cu", names
    if kind == "reduce":
        return "reduce.cu", [mean_scale_kernel(t) for t in TARGETS]
    return "elementwise.cu", [elementwise_kernel(op, dtype, i) for i in (False, True)]


def all_modules():
    """Every module the backend can request: ``(kind, op, dtype, file, names)``."""
    out = []
    for dtype in DTYPES:
        for op in ROW_OPS:
            out.append(("rows", op, dtype) + module("rows", op, dtype))
        for op in ELEMENTWISE_OPS:
            out.append(("elementwise", op, dtype) + module("elementwise", op, dtype))
    out.append(("reduce", "reduce", "any") + module("reduce", "reduce", "any"))
    return out
