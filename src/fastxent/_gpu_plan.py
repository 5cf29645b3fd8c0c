"""Launch plans for the CUDA kernels: which lane mapping, what grid, which arguments.

Pure Python over anything with ``shape``, ``strides`` and ``itemsize`` (CuPy arrays on the
GPU, NumPy arrays in the CPU-only host test, which runs the same row bodies through g++ with
exactly these argument tuples). The argument order is the kernels' signature in
_cuda/rows.cu and _cuda/elementwise.cu; every scalar gets an explicit NumPy type, because
CuPy passes a Python int as a 64-bit integer and a float as a double whatever the kernel
expects.
"""
from __future__ import annotations

import numpy as np

from . import _cuda_sources as S

# The row cache lives in dynamic shared memory; beyond this the block-per-row kernel reads
# the row again from global memory (mostly L2) in its later passes.
CACHE_LIMIT_BYTES = 160 * 1024
THREAD_PER_ROW_MAX_C = 32
WARP_PER_ROW_MAX_C = 2048


_DTYPE_NAMES = {}


def dtype_name(dtype) -> str:
    """``dtype.name``, which NumPy builds in Python at each use (about 2 us; a call needs it
    for every kernel name and result dtype)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


def _els(a) -> tuple:
    """`a`'s strides in elements (an array builds its strides tuple at each use)."""
    itemsize = a.itemsize
    return tuple([np.int64(s // itemsize) for s in a.strides])


def row_config(C: int, class_stride: int, itemsize: int):
    """The lane mapping for rows of C classes of `itemsize` bytes: ``(lanes, block, cached)``.

    A loss alone uses the row cache too: streaming it instead was measured slower on an H100
    (16384 x 32000 bfloat16, 1.55 ms against 1.12; float32 about equal)."""
    if class_stride != 1 or C <= THREAD_PER_ROW_MAX_C:
        return S.THREAD_PER_ROW
    if C <= WARP_PER_ROW_MAX_C:
        return S.WARP_PER_ROW
    if row_cache_bytes(C, itemsize) <= CACHE_LIMIT_BYTES:
        return S.BLOCK_PER_ROW_CACHED
    return S.BLOCK_PER_ROW


def row_grid(nrows: int, config, n_sm: int) -> int:
    """Blocks for a grid-stride loop over the rows: enough to fill the device, bounded so that
    every block keeps working. A cluster config's grid is a multiple of its K blocks."""
    lanes, block, _ = config
    bound = n_sm * (2048 // block) * 4
    if lanes > block:
        k = lanes // block
        return int(k * max(1, min(nrows, bound // k)))
    rows_per_block = block // lanes
    needed = -(-nrows // rows_per_block)
    return int(max(1, min(needed, bound)))


def cluster_slice_classes(C: int, k: int) -> int:
    """The classes each of a cluster's k blocks holds (rows.cu: cluster_slice_begin)."""
    return (-(-C // k) + 7) // 8 * 8


def row_cache_bytes(C: int, itemsize: int) -> int:
    """The row cache: the row's elements as stored (rows.cu: row_work), and a 16-byte group's
    classes less one (fx_device.cuh: GROUP, 8 of a 16-bit type, else 4), so that it can
    start at the row's offset from a vector boundary (rows.cu: row_cache_elems)."""
    group = 8 if itemsize == 2 else 4
    return (C + group - 1) * itemsize


def row_shared_bytes(C: int, config, itemsize: int) -> int:
    """Dynamic shared memory per block: the row cache, or a cluster block's slice of it."""
    lanes, block, cached = config
    if not cached:
        return 0
    return row_cache_bytes(cluster_slice_classes(C, lanes // block) if lanes > block else C,
                           itemsize)


def row_args(x3, *, t2=None, ignore_index=-100, q3=None, w=None, eps=0.0, gscale2=None,
             gmul=1.0, rows_out, g3=None, err, counter=None, partial=None, mode="sum",
             denominator=None, denominator_value=0.0, out=None):
    """Arguments of ``fx::rows`` for an (outer, C, inner) view `x3`.

    `t2` (outer, inner) class indices (int32/int64), `q3` probabilities of x3's shape, `w`
    float64 (C,) class weights, `gscale2` float64 (outer, inner) d total / d loss (zero
    strides broadcast), which the kernel multiplies by the number `gmul`, `rows_out` float64
    (outer * inner,), `g3` the gradient or transform output of x3's shape, `err` an int32
    (1,) flag (None for the ops that never flag). With `counter`, the reduction of
    `_reduction_args`, over the rows' losses: `denominator` a float64 device scalar for
    "mean by pointer". Absent operands are passed as x3 or rows_out (valid pointers the
    kernel never reads or writes).
    """
    outer, C, inner = x3.shape
    t = t2 if t2 is not None else x3
    q = q3 if q3 is not None else x3
    wv = w if w is not None else rows_out
    gs = gscale2 if gscale2 is not None else rows_out
    g = g3 if g3 is not None else x3
    zeros = (np.int64(0),) * 3
    return (
        x3, np.int64(outer), np.int32(C), np.int64(inner), *_els(x3),
        t, *(_els(t2) if t2 is not None else zeros[:2]),
        np.int64(ignore_index),
        q, *(_els(q3) if q3 is not None else zeros),
        wv, np.int32(w is not None), np.float64(eps),
        gs, *(_els(gscale2) if gscale2 is not None else zeros[:2]), np.float64(gmul),
        rows_out,
        g, *(_els(g3) if g3 is not None else zeros), np.int32(g3 is not None),
        err if err is not None else rows_out,
        *_reduction_args(rows_out, counter=counter, partial=partial, mode=mode,
                         denominator=denominator if denominator is not None else rows_out,
                         denominator_value=denominator_value, out=out),
    )


def _reduction_args(absent, *, counter, partial, mode, denominator_value, out,
                    denominator=None):
    """The kernels' reduced-loss arguments: with a zeroed uint32 / int32 (1,) `counter` and
    float64 `partial` (one per block), the kernel also writes the reduced loss to the 0-d
    `out` (any of S.DTYPES, rounded once); `mode` a key of ``S.REDUCE_MODES``, "mean by
    value" over `denominator_value`. `denominator`: the row kernel's device denominator
    ("mean by pointer"), which the element-wise kernel does not take. Absent operands are
    passed as `absent`."""
    return (
        partial if partial is not None else absent,
        counter if counter is not None else absent, np.int32(counter is not None),
        np.int32(S.REDUCE_MODES[mode]),
        *(() if denominator is None else (denominator,)), np.float64(denominator_value),
        out if out is not None else absent,
        np.int32(S.DTYPE_CODES[dtype_name(out.dtype)] if out is not None else 1),
    )


def elementwise_grid(n: int, n_sm: int) -> int:
    block = S.ELEMENTWISE_BLOCK
    return int(max(1, min(-(-n // block), n_sm * (2048 // block) * 4)))


def elementwise_args(x3, y3, *, w3=None, pw3=None, log_target=False, gscale3=None,
                     gmul=1.0, loss3=None, g3=None, err=None, counter=None, partial=None,
                     mode="sum", denominator_value=0.0, out=None):
    """Arguments of ``fx::elementwise`` for (d0, d1, d2) views of equal shape (stride 0
    broadcasts); absent operands are passed as x3 with zero strides. The gradient scale is
    `gscale3` times the number `gmul`, as in `row_args`. `err`: a zeroed int32 (1,) flag
    (binary_cross_entropy's values outside [0, 1]; the other losses never write it). With
    `counter`, the reduction of `_reduction_args`: `mode` "sum" or "mean by value"."""
    d0, d1, d2 = x3.shape

    def op(a, present):
        if not present:
            return (x3, np.int64(0), np.int64(0), np.int64(0))
        return (a, *_els(a))

    return (
        x3, np.int64(d0), np.int64(d1), np.int64(d2), *_els(x3),
        *op(y3, True),
        *op(w3, w3 is not None),
        *op(pw3, pw3 is not None), np.int32(pw3 is not None),
        np.int32(bool(log_target)),
        *op(gscale3, gscale3 is not None), np.float64(gmul),
        *op(loss3, loss3 is not None), np.int32(loss3 is not None),
        *op(g3, g3 is not None), np.int32(g3 is not None),
        err if err is not None else x3,
        *_reduction_args(x3, counter=counter, partial=partial, mode=mode,
                         denominator_value=denominator_value, out=out),
    )


# A reduction block adds at least this many items before another block is started: its
# partial costs a ticket and a slot that the last block reads.
REDUCE_ITEMS_PER_BLOCK = 16 * S.REDUCE_BLOCK


def reduce_grid(n: int, n_sm: int) -> int:
    """Blocks of reduce.cu's mean_scale over n items: one for up to 4096, then enough to read a
    large problem at the device's bandwidth (a million segmentation targets would take one
    multiprocessor longer than the row kernel of 21 classes), at most 4 per multiprocessor."""
    return int(max(1, min(-(-n // REDUCE_ITEMS_PER_BLOCK), 4 * n_sm)))


def mean_scale_args(t2, *, ignore_index, C, w, grad_output, grad_output_mul=1.0, partials,
                    counter, out):
    """Arguments of ``fx::mean_scale`` for (outer, inner) class-index targets `t2`, float64
    (C,) weights `w` (or None), a float64 0-d `grad_output` times the number
    `grad_output_mul`, float64 `partials` (one per block), a zeroed uint32 / int32 (1,)
    `counter` and float64 (2,) `out`."""
    outer, inner = t2.shape
    return (t2, np.int64(outer * inner), np.int64(inner), *_els(t2),
            np.int64(ignore_index), np.int32(C), w if w is not None else partials,
            np.int32(w is not None), grad_output, np.float64(grad_output_mul), partials,
            counter, out)

