# The cross-entropy row with a class-index target, shared by _xent (any layout) and _linear
# (rows of a linear model's logits). The maths is in _xent.pyx's design block.

from libc.math cimport log, exp, NAN
from libc.stdint cimport int64_t

from ._common cimport floating, row_max, row_expsum, row_axpw, row_fill


cdef inline double index_row(const floating* x, Py_ssize_t C, Py_ssize_t s, int64_t y,
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
