"""logsumexp, softmax and log_softmax over the class axis of an (outer, C, inner) view.

Design
a) Layout: every input is a 3-D view (outer, C, inner) with arbitrary strides; a "row" is
   x[i, :, j]. Rows are independent, so the loop runs over the outer * inner rows with a static
   schedule (consecutive rows share cache lines when inner > 1), or as a plain loop for one
   thread (no parallel region: _threads.py).
b) Passes over memory: logsumexp reads each row twice (max, then sum of exponentials);
   softmax writes exp(x - max) into the output on the second pass and scales it on a third,
   so each logit gets exactly one exponential; log_softmax reads the row once more to write.
   Short rows, rows whose classes are not adjacent and the (N, C, d) layout run the same
   passes a lane per row, 16 rows at a time (fx_block_transform; _common.use_blocks), or, for
   rows that lie back to back (C order) with an output laid out alike, a thread's whole run of
   rows per call (fx_packed_transform); longer class-adjacent rows a row at a time, a group of
   16 (8 for double) per call (fx_rows_transform), whose logs run as one vector.
c) Precision: double accumulators for float and double storage (see fx_simd.h).
d) Preconditions (checked in _validate.py): C >= 1, outputs allocated by the caller with the
   input's (outer, C, inner) shape, every stride a multiple of the item size.
"""
from cython.parallel cimport prange

from ._common cimport (floating, block_transform, packed_transform, packed_rows,
                       packed_share, rows_transform, block_offsets, use_blocks, use_strips,
                       ROW_GROUP, STRIP_ROWS, FX_LSE, FX_SOFTMAX, FX_LOG_SOFTMAX)


cdef inline void _group(int mode, const floating[:, :, :] x, double* lse, floating* out,
                        const Py_ssize_t* os, bint same_rows, Py_ssize_t r0, Py_ssize_t lanes,
                        bint blocks) noexcept nogil:
    # Rows r0 .. r0 + lanes - 1 (fewer at the end) through fx_block_transform (a lane per
    # row) or fx_rows_transform (a row at a time): lse (one per row, in order) for FX_LSE,
    # else out with element strides os[0..2]; same_rows: out's rows lie as x's, so x's row
    # offsets serve both.
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner
    cdef Py_ssize_t off[STRIP_ROWS]
    cdef Py_ssize_t ooff_own[STRIP_ROWS]
    cdef const Py_ssize_t* ooff = off
    cdef int nrows = <int>(rows - r0 if rows - r0 < lanes else lanes)
    cdef bint consecutive, oconsecutive = 0
    cdef Py_ssize_t osc = 0
    consecutive = block_offsets(r0, nrows, inner, x.strides[0] // <Py_ssize_t>sizeof(floating),
                                x.strides[2] // <Py_ssize_t>sizeof(floating), off)
    if out != NULL:
        oconsecutive = consecutive
        if not same_rows:
            oconsecutive = block_offsets(r0, nrows, inner, os[0], os[2], ooff_own)
            ooff = ooff_own
        osc = os[1]
    if blocks:
        block_transform(mode, &x[0, 0, 0], off, nrows, consecutive, x.shape[1],
                        x.strides[1] // <Py_ssize_t>sizeof(floating),
                        lse + r0 if lse != NULL else NULL, out, ooff, oconsecutive, osc)
    else:
        rows_transform(mode, &x[0, 0, 0], off, nrows, x.shape[1],
                       lse + r0 if lse != NULL else NULL, out, ooff, osc)


cdef void _groups(int mode, const floating[:, :, :] x, double* lse, floating* out,
                  const Py_ssize_t* os, int n_threads) noexcept nogil:
    # Every row of x, a group of ROW_GROUP float (or half as many double) rows per step;
    # STRIP_ROWS for consecutive rows.
    cdef Py_ssize_t rows = x.shape[0] * x.shape[2], b
    cdef bint blocks = use_blocks(x.shape[1], x.strides[1] // <Py_ssize_t>sizeof(floating),
                                  x.shape[2])
    cdef Py_ssize_t lanes = ((STRIP_ROWS if blocks and use_strips(
                                  x.shape[2],
                                  x.strides[0] // <Py_ssize_t>sizeof(floating),
                                  x.strides[2] // <Py_ssize_t>sizeof(floating))
                              else ROW_GROUP) // (1 if floating is float else 2))
    cdef bint same_rows = (out != NULL and os[0] == x.strides[0] // <Py_ssize_t>sizeof(floating)
                           and os[2] == x.strides[2] // <Py_ssize_t>sizeof(floating))
    cdef Py_ssize_t C = x.shape[1], per, fs = sizeof(floating)
    if (rows > 0 and packed_rows(C, x.shape[2], x.strides[0] // fs, x.strides[1] // fs,
                                 x.strides[2] // fs)
            and (out == NULL or packed_rows(C, x.shape[2], os[0], os[1], os[2]))):
        # Rows back to back (C order), the output's too: one fx_packed_transform call per
        # thread.
        if n_threads == 1:
            packed_transform(mode, &x[0, 0, 0], rows, C, lse, out)
            return
        per = packed_share(rows, n_threads)
        for b in prange((rows + per - 1) // per, schedule="static", num_threads=n_threads):
            packed_transform(mode, &x[0, 0, 0] + b * per * C,
                             rows - b * per if rows - b * per < per else per, C,
                             lse + b * per if lse != NULL else NULL,
                             out + b * per * C if out != NULL else NULL)
        return
    if n_threads == 1:
        for b in range((rows + lanes - 1) // lanes):
            _group(mode, x, lse, out, os, same_rows, b * lanes, lanes, blocks)
        return
    for b in prange((rows + lanes - 1) // lanes, schedule="static", num_threads=n_threads):
        _group(mode, x, lse, out, os, same_rows, b * lanes, lanes, blocks)


cdef inline void _element_strides(floating[:, :, :] out, Py_ssize_t* os) noexcept nogil:
    cdef int d
    for d in range(3):
        os[d] = out.strides[d] // <Py_ssize_t>sizeof(floating)


def logsumexp(const floating[:, :, :] x,   # IN  (outer, C, inner)
              double[:, ::1] out,          # OUT (outer, inner)
              int n_threads):
    with nogil:
        _groups(FX_LSE, x, &out[0, 0], <floating*>NULL, NULL, n_threads)


def softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
            floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
            int n_threads):
    cdef Py_ssize_t ostrides[3]
    _element_strides(out, ostrides)
    with nogil:
        _groups(FX_SOFTMAX, x, NULL, &out[0, 0, 0], ostrides, n_threads)


def log_softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
                floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
                int n_threads):
    cdef Py_ssize_t ostrides[3]
    _element_strides(out, ostrides)
    with nogil:
        _groups(FX_LOG_SOFTMAX, x, NULL, &out[0, 0, 0], ostrides, n_threads)
