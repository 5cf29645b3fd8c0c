"""logsumexp, softmax and log_softmax over the class axis of an (outer, C, inner) view.

Design
a) Layout: every input is a 3-D view (outer, C, inner) with arbitrary strides; a "row" is
   x[i, :, j]. Rows are independent, so the loop runs over the outer * inner rows with a static
   schedule (consecutive rows share cache lines when inner > 1).
b) Passes over memory: logsumexp reads each row twice (max, then sum of exponentials);
   softmax writes exp(x - max) into the output on the second pass and scales it on a third,
   so each logit gets exactly one exponential; log_softmax reads the row once more to write.
   Short rows, rows whose classes are not adjacent and the (N, C, d) layout run the same
   passes a lane per row, 16 rows at a time (fx_block_transform; _common.use_blocks).
c) Precision: double accumulators for float and double storage (see fx_simd.h).
d) Preconditions (checked in _validate.py): C >= 1, outputs allocated by the caller with the
   input's (outer, C, inner) shape, every stride a multiple of the item size.
"""
from cython.parallel cimport prange
from libc.math cimport log, isinf, isnan, NAN

from ._common cimport (floating, row_max, row_expsum, row_axpw, row_shift, block_transform,
                       block_offsets, use_blocks, BLOCK_ROWS, FX_LSE, FX_SOFTMAX,
                       FX_LOG_SOFTMAX)


cdef inline double _logsumexp_row(const floating* x, Py_ssize_t n, Py_ssize_t s,
                                  const floating* nxt) noexcept nogil:
    # As torch.logsumexp: a row holding +inf gives +inf (NaN if it also holds NaN), and a row
    # of -inf gives -inf: its maximum is replaced by 0, so the sum is exp(-inf) = 0. nxt: the
    # next row, prefetched (or NULL).
    cdef double m = row_max(x, n, s)
    cdef Py_ssize_t c
    if isinf(m) and m > 0:
        for c in range(n):
            if isnan(x[c * s]):
                return NAN
        return m
    if isinf(m):
        m = 0.0
    return m + log(row_expsum(x, n, s, m, NULL, 0, NULL, NULL, nxt))


cdef inline const floating* _next_row(const floating[:, :, :] x, Py_ssize_t i) noexcept nogil:
    # The row after row i on the row-kernel path (inner == 1, unit class stride), for its
    # exponential pass to prefetch: the next row's max pass then reads cache, not memory
    # (2048 x 32000 float32 cross entropy: 12.6 -> 9.6 ms). NULL after the last row.
    return &x[i + 1, 0, 0] if i + 1 < x.shape[0] else NULL


cdef inline void _block(int mode, const floating[:, :, :] x, double* lse, floating* out,
                        const Py_ssize_t* os, Py_ssize_t r0, Py_ssize_t lanes) noexcept nogil:
    # Rows r0 .. r0 + lanes - 1 (fewer at the end) through fx_block_transform: lse (one per
    # row, in order) for FX_LSE, else out with element strides os[0..2].
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner
    cdef Py_ssize_t off[BLOCK_ROWS]
    cdef Py_ssize_t ooff[BLOCK_ROWS]
    cdef int nrows = <int>(rows - r0 if rows - r0 < lanes else lanes)
    cdef bint consecutive, oconsecutive = 0
    cdef Py_ssize_t osc = 0
    consecutive = block_offsets(r0, nrows, inner, x.strides[0] // <Py_ssize_t>sizeof(floating),
                                x.strides[2] // <Py_ssize_t>sizeof(floating), off)
    if out != NULL:
        oconsecutive = block_offsets(r0, nrows, inner, os[0], os[2], ooff)
        osc = os[1]
    block_transform(mode, &x[0, 0, 0], off, nrows, consecutive, x.shape[1],
                    x.strides[1] // <Py_ssize_t>sizeof(floating),
                    lse + r0 if lse != NULL else NULL, out, ooff, oconsecutive, osc)


cdef void _blocks(int mode, const floating[:, :, :] x, double* lse, floating* out,
                  const Py_ssize_t* os, int n_threads) noexcept nogil:
    # Every row of x, a block of 16 (float) or 8 (double) rows per lane-parallel step.
    cdef Py_ssize_t rows = x.shape[0] * x.shape[2], b
    cdef Py_ssize_t lanes = 16 if floating is float else 8
    for b in prange((rows + lanes - 1) // lanes, schedule="static", num_threads=n_threads):
        _block(mode, x, lse, out, os, b * lanes, lanes)


cdef inline void _element_strides(floating[:, :, :] out, Py_ssize_t* os) noexcept nogil:
    cdef int d
    for d in range(3):
        os[d] = out.strides[d] // <Py_ssize_t>sizeof(floating)


def logsumexp(const floating[:, :, :] x,   # IN  (outer, C, inner)
              double[:, ::1] out,          # OUT (outer, inner)
              int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j
    if use_blocks(C, s, inner):
        _blocks(FX_LSE, x, &out[0, 0], <floating*>NULL, NULL, n_threads)
        return
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        out[i, j] = _logsumexp_row(&x[i, 0, j], C, s, _next_row(x, i))


def softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
            floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
            int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t os = out.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef double m, total
    cdef floating* o
    cdef Py_ssize_t ostrides[3]
    if use_blocks(C, s, inner):
        _element_strides(out, ostrides)
        _blocks(FX_SOFTMAX, x, NULL, &out[0, 0, 0], ostrides, n_threads)
        return
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        o = &out[i, 0, j]
        m = row_max(&x[i, 0, j], C, s)
        total = row_expsum(&x[i, 0, j], C, s, m, o, os, NULL, NULL, _next_row(x, i))
        row_axpw(o, C, os, 1.0 / total, 0.0, NULL)


def log_softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
                floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
                int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t os = out.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef double m, lsum
    cdef Py_ssize_t ostrides[3]
    if use_blocks(C, s, inner):
        _element_strides(out, ostrides)
        _blocks(FX_LOG_SOFTMAX, x, NULL, &out[0, 0, 0], ostrides, n_threads)
        return
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        m = row_max(&x[i, 0, j], C, s)
        lsum = log(row_expsum(&x[i, 0, j], C, s, m, NULL, 0, NULL, NULL, _next_row(x, i)))
        row_shift(&x[i, 0, j], C, s, m, lsum, &out[i, 0, j], os)
