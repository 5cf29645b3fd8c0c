"""cross_entropy and nll_loss rows: loss per sample, and the fused gradient.

Design
a) Layout: logits are an (outer, C, inner) view with arbitrary strides; a row is x[i, :, j].
   Class-index targets arrive as int64 (outer, inner) with every ignored element already
   mapped to -1 (_validate.py checked the range), probability targets as an (outer, C, inner)
   view of the logits' dtype. Class weights are a float64 (C,) array, empty for "no weight".
b) Passes over memory, per row: (1) max; (2) exp(x - max) summed and, in the fused kernels,
   stored into the gradient row -- the only exponential of each logit; (3) the gradient row is
   scaled in place and the target entry recomputed at full precision from the saved logit, so
   p_y - 1 never loses digits to the stored float. The row stays in cache between passes.
   The gradient buffer may be the logits themselves: every element is read before written.
c) Threading: rows are independent; prange with a static schedule. The kernels write one loss
   per row and never reduce: _reduce.py sums the per-row losses in a fixed order, so results
   are bit-identical for any thread count.
d) Gradient scale: gscale[i, j] is d(total)/d(loss_ij) -- grad_output, divided by the mean's
   denominator for reduction="mean" -- computed before the kernel runs.
e) Maths (docs/numerics.md): with m = max, s = sum exp(x - m), lse = m + log s, eps the label
   smoothing, w the class weights (1 when absent) and W = sum_c w_c:
     loss = (1 - eps) w_y (lse - x_y) + eps / C * sum_c w_c (lse - x_c)
     grad = (1 - eps) w_y (p - e_y) + eps / C * (W p - w)
   and with probability targets q' = (1 - eps) q + eps / C:
     loss = sum_c w_c q'_c (lse - x_c),   grad = (sum_c w_c q'_c) p - w * q'.
"""
from cython.parallel cimport prange
from libc.math cimport log, exp, NAN
from libc.stdint cimport int64_t

from ._common cimport (floating, row_max, row_expsum, row_axpw, row_fill,
                       row_prob_expsum, row_prob_grad)


cdef inline double _index_row(const floating* x, Py_ssize_t C, Py_ssize_t s, int64_t y,
                              const double* w, double W, double eps,
                              floating* g, Py_ssize_t gs, double scale) noexcept nogil:
    # Loss of one row with class-index target y (-1: ignored); writes the gradient row when
    # g is not NULL.
    cdef double m, total, ws = 0.0, ls, wy, nll, k, xy, spread = eps / <double>C
    if y < 0:
        if g != NULL:
            # PyTorch zeroes an ignored row through the log-softmax backward, g - p * sum(g),
            # which is NaN wherever p is (a NaN or +inf logit, or a row of -inf): keep that.
            m = row_max(x, C, s)
            total = row_expsum(x, C, s, m, NULL, 0, NULL, NULL)
            row_fill(g, C, gs, 0.0 if total == total else NAN)
        return 0.0
    xy = x[y * s]                        # read before an in-place gradient overwrites it
    wy = w[y] if w != NULL else 1.0
    m = row_max(x, C, s)
    total = row_expsum(x, C, s, m, g, gs, w, &ws if eps > 0.0 else NULL)
    ls = log(total)
    nll = (m - xy) + ls
    if g != NULL:
        k = (1.0 - eps) * wy + spread * W
        row_axpw(g, C, gs, scale * k / total, scale * spread, w if eps > 0.0 else NULL)
        g[y * gs] = <floating>(scale * (k * (exp(xy - m) / total) - (1.0 - eps) * wy
                                        - spread * wy))
    if eps > 0.0:
        return (1.0 - eps) * wy * nll + spread * (ws + W * ls)
    return wy * nll


cdef inline double _prob_row(const floating* x, Py_ssize_t C, Py_ssize_t s,
                             const floating* q, Py_ssize_t qs, const double* w, double eps,
                             floating* g, Py_ssize_t gs, double scale) noexcept nogil:
    # Loss of one row with probability target q; writes the gradient row when g is not NULL.
    cdef double m, total, qw, qws
    m = row_max(x, C, s)
    total = row_prob_expsum(x, C, s, q, qs, m, eps, w, g, gs, &qw, &qws)
    if g != NULL:
        row_prob_grad(g, C, gs, q, qs, eps, w, scale * qw / total, scale)
    return qws + qw * log(total)


cdef inline double _nll_row(const floating* x, Py_ssize_t C, Py_ssize_t s, int64_t y,
                            const double* w, floating* g, Py_ssize_t gs,
                            double scale) noexcept nogil:
    # The input is taken as log-probabilities, unchecked, as in PyTorch.
    cdef double wy, xy
    if y < 0:
        if g != NULL:
            row_fill(g, C, gs, 0.0)
        return 0.0
    wy = w[y] if w != NULL else 1.0
    xy = x[y * s]
    if g != NULL:
        row_fill(g, C, gs, 0.0)
        g[y * gs] = <floating>(-scale * wy)
    return -wy * xy


def index_rows(const floating[:, :, :] x,       # IN  (outer, C, inner) logits
               const int64_t[:, ::1] t,         # IN  (outer, inner), -1 = ignored
               const double[::1] w,             # IN  (C,) or (0,) for no weight
               double eps,                      # label smoothing
               const double[:, :] gscale,       # IN  (outer, inner), may be broadcast
               double[:, ::1] loss,             # OUT (outer, inner)
               floating[:, :, :] grad,          # OUT (outer, C, inner), may alias x
               bint want_grad, int n_threads):
    """Cross entropy with class-index targets: one loss per row (+ gradient rows)."""
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // sizeof(floating)
    cdef Py_ssize_t gs = grad.strides[1] // sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef double W = <double>C if wp == NULL else 0.0
    cdef floating* g = NULL
    cdef double scale = 0.0
    for r in range(w.shape[0]):
        W += w[r]
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        g = NULL
        scale = 0.0
        if want_grad:
            g = &grad[i, 0, j]
            scale = gscale[i, j]
        loss[i, j] = _index_row(&x[i, 0, j], C, s, t[i, j], wp, W, eps, g, gs, scale)


def prob_rows(const floating[:, :, :] x,       # IN  (outer, C, inner) logits
              const floating[:, :, :] q,       # IN  (outer, C, inner) probabilities
              const double[::1] w,             # IN  (C,) or (0,)
              double eps,                      # label smoothing
              const double[:, :] gscale,       # IN  (outer, inner), may be broadcast
              double[:, ::1] loss,             # OUT (outer, inner)
              floating[:, :, :] grad,          # OUT (outer, C, inner), may alias x
              bint want_grad, int n_threads):
    """Cross entropy with probability targets: one loss per row (+ gradient rows)."""
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // sizeof(floating)
    cdef Py_ssize_t qs = q.strides[1] // sizeof(floating)
    cdef Py_ssize_t gs = grad.strides[1] // sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef floating* g = NULL
    cdef double scale = 0.0
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        g = NULL
        scale = 0.0
        if want_grad:
            g = &grad[i, 0, j]
            scale = gscale[i, j]
        loss[i, j] = _prob_row(&x[i, 0, j], C, s, &q[i, 0, j], qs, wp, eps, g, gs, scale)


def nll_rows(const floating[:, :, :] x,       # IN  (outer, C, inner) log-probabilities
             const int64_t[:, ::1] t,         # IN  (outer, inner), -1 = ignored
             const double[::1] w,             # IN  (C,) or (0,)
             const double[:, :] gscale,       # IN  (outer, inner), may be broadcast
             double[:, ::1] loss,             # OUT (outer, inner)
             floating[:, :, :] grad,          # OUT (outer, C, inner), may alias x
             bint want_grad, int n_threads):
    """Negative log-likelihood: one loss per row (+ gradient rows)."""
    cdef Py_ssize_t inner = x.shape[2], C = x.shape[1]
    cdef Py_ssize_t s = x.strides[1] // sizeof(floating)
    cdef Py_ssize_t gs = grad.strides[1] // sizeof(floating)
    cdef Py_ssize_t r, i, j
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef floating* g = NULL
    cdef double scale = 0.0
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        i = r // inner
        j = r - i * inner
        g = NULL
        scale = 0.0
        if want_grad:
            g = &grad[i, 0, j]
            scale = gscale[i, j]
        loss[i, j] = _nll_row(&x[i, 0, j], C, s, t[i, j], wp, g, gs, scale)
