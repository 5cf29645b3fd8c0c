"""logsumexp, softmax and log_softmax over the class axis of an (outer, C, inner) view.

Design
a) Layout: every input is a 3-D view (outer, C, inner) with arbitrary strides; a "row" is
   x[i, :, j]. Rows are independent, so the loop runs over the outer * inner rows with a static
   schedule (consecutive rows share cache lines when inner > 1).
b) Passes over memory: logsumexp reads each row twice (max, then sum of exponentials);
   softmax writes exp(x - max) into the output on the second pass and scales it on a third,
   so each logit gets exactly one exponential; log_softmax reads the row once more to write.
c) Precision: double accumulators for float and double storage (see fx_simd.h).
d) Preconditions (checked in _validate.py): C >= 1, outputs allocated by the caller with the
   input's (outer, C, inner) shape, every stride a multiple of the item size.
"""
from cython.parallel cimport prange
from libc.math cimport log, isinf, isnan, NAN

from ._common cimport floating, row_max, row_expsum, row_axpw


cdef inline double _logsumexp_row(const floating* x, Py_ssize_t n,
                                  Py_ssize_t s) noexcept nogil:
    # As torch.logsumexp: a row holding +inf gives +inf (NaN if it also holds NaN), and a row
    # of -inf gives -inf: its maximum is replaced by 0, so the sum is exp(-inf) = 0.
    cdef double m = row_max(x, n, s)
    cdef Py_ssize_t c
    if isinf(m) and m > 0:
        for c in range(n):
            if isnan(x[c * s]):
                return NAN
        return m
    if isinf(m):
        m = 0.0
    return m + log(row_expsum(x, n, s, m, NULL, 0, NULL, NULL))


def logsumexp(const floating[:, :, :] x,   # IN  (outer, C, inner)
              double[:, ::1] out,          # OUT (outer, inner)
              int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        out[i, j] = _logsumexp_row(&x[i, 0, j], C, s)


def softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
            floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
            int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t os = out.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef double m, total
    cdef floating* o
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        o = &out[i, 0, j]
        m = row_max(&x[i, 0, j], C, s)
        total = row_expsum(&x[i, 0, j], C, s, m, o, os, NULL, NULL)
        row_axpw(o, C, os, 1.0 / total, 0.0, NULL)


def log_softmax(const floating[:, :, :] x,   # IN  (outer, C, inner)
                floating[:, :, :] out,       # OUT (outer, C, inner), may be x's buffer
                int n_threads):
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t os = out.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r, i, j, c
    cdef double m, lsum
    cdef const floating* xr
    cdef floating* o
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        xr = &x[i, 0, j]
        o = &out[i, 0, j]
        m = row_max(xr, C, s)
        lsum = log(row_expsum(xr, C, s, m, NULL, 0, NULL, NULL))
        # (x - m) is exact-ish in double and never cancels against log(sum).
        for c in range(C):
            o[c * os] = <floating>((<double>xr[c * s] - m) - lsum)
