"""binary_cross_entropy and binary_cross_entropy_with_logits, element by element.

Design
a) Layout: every operand is a (d0, d1, d2) view of the same shape with arbitrary strides;
   weight, pos_weight and the gradient scale arrive broadcast (zero strides), so one loop
   serves every broadcasting pattern. _validate.py coalesces the dimensions first, so dense
   inputs arrive as a single long row.
b) One pass: each element is read once and its loss (reduction="none") or the unit's partial
   sum, and its gradient, written in the same iteration; an in-place gradient (grad is the
   input) is safe because the input element is read first. Runs whose innermost axis is
   unit-stride (or broadcast, for the float64 operands) go to fx_binary.inc's 8-lane loops;
   other layouts (mixed C and Fortran order, strided views) go through the same loops in
   chunks copied to and from the stack, so one implementation computes every element (a
   strided element loop with libm's log1p and exp took 23x as long).
c) Threading and determinism: fixed units of work (_common.pxd), partial sums added in unit
   order after the parallel loop (a plain loop for one thread: _threads.py).
d) Formulas are PyTorch's, evaluated in double:
     BCE:             l = w [(y - 1) max(log1p(-p), -100) - y max(log p, -100)]
                      g = w (p - y) / max(p (1 - p), 1e-12 as a float)
     BCE with logits: l = w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]
                      g = w [(pw y + 1 - y) sigmoid(x) - pw y]
   softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows. At x = +inf with y = 1 the
   first term is 0 * inf = NaN, as in PyTorch (docs/numerics.md lists these cases).
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

import numpy as np

from ._common cimport (floating, n_units, unit_row0, unit_row1, unit_col0, unit_col1,
                       unit_runs, bce_logits_run, bce_run, CHUNK, chunk_in, chunk_out,
                       common_reduction, common_gradient, common_grad_memory, common_buffer,
                       common_release, common_scalar)


# PyTorch's floor for p (1 - p) in the BCE gradient is the float constant 1e-12, i.e.
# 9.999999960041972e-13 even for double inputs (checked against torch 2.13 at p = 0).
cdef double _GRAD_EPS = <double>(<float>1e-12)


cdef inline double _bce_unit(Py_ssize_t u, Py_ssize_t rows, const floating[:, :, :] p,
                             const floating[:, :, :] y, const double[:, :, :] w,
                             const double[:, :, :] gscale, floating[:, :, :] loss,
                             floating[:, :, :] grad, bint want_loss,
                             bint want_grad, bint vector) noexcept nogil:
    cdef Py_ssize_t n1 = p.shape[1], n2 = p.shape[2], r, i, j, k, n
    cdef Py_ssize_t k0 = unit_col0(u, n2), k1 = unit_col1(u, n2)
    cdef double acc = 0.0
    cdef floating pb[CHUNK]
    cdef floating yb[CHUNK]
    cdef floating lb[CHUNK]
    cdef floating gb[CHUNK]
    cdef double wb[CHUNK]
    cdef double sb[CHUNK]
    for r in range(unit_row0(u, n2), unit_row1(u, rows, n2)):
        i = r // n1
        j = r - i * n1
        if vector:
            acc += bce_run(&p[i, j, k0], &y[i, j, k0], &w[i, j, k0], w.strides[2] // 8,
                           &gscale[i, j, k0] if want_grad else NULL,
                           gscale.strides[2] // 8 if want_grad else 0, _GRAD_EPS,
                           &loss[i, j, k0] if want_loss else NULL,
                           &grad[i, j, k0] if want_grad else NULL, k1 - k0)
            continue
        k = k0
        while k < k1:
            n = min(<Py_ssize_t>CHUNK, k1 - k)
            chunk_in(p, i, j, k, n, pb)
            chunk_in(y, i, j, k, n, yb)
            chunk_in(w, i, j, k, n, wb)
            chunk_in(gscale, i, j, k, n, sb if want_grad else NULL)
            acc += bce_run(pb, yb, wb, 1, sb if want_grad else NULL, 1, _GRAD_EPS,
                           lb if want_loss else NULL, gb if want_grad else NULL, n)
            chunk_out(loss, grad, i, j, k, n, lb if want_loss else NULL,
                      gb if want_grad else NULL)
            k += n
    return acc


cdef inline bint _vector_runs(const floating[:, :, :] x, const floating[:, :, :] y,
                              const double[:, :, :] w, const double[:, :, :] pw,
                              const double[:, :, :] gscale, floating[:, :, :] loss,
                              floating[:, :, :] grad, bint has_pw, bint want_loss,
                              bint want_grad):
    # unit_runs, with the weights (and pos_weight) unit-stride or broadcast as well.
    return (unit_runs(x, y, gscale, loss, grad, want_loss, want_grad)
            and w.strides[2] in (0, 8) and (not has_pw or pw.strides[2] in (0, 8)))


cdef inline double _bce_logits_unit(Py_ssize_t u, Py_ssize_t rows,
                                    const floating[:, :, :] x, const floating[:, :, :] y,
                                    const double[:, :, :] w, const double[:, :, :] pw,
                                    const double[:, :, :] gscale, floating[:, :, :] loss,
                                    floating[:, :, :] grad, bint has_pw, bint want_loss,
                                    bint want_grad, bint vector) noexcept nogil:
    cdef Py_ssize_t n1 = x.shape[1], n2 = x.shape[2], r, i, j, k, n
    cdef Py_ssize_t k0 = unit_col0(u, n2), k1 = unit_col1(u, n2)
    cdef double acc = 0.0
    cdef floating xb[CHUNK]
    cdef floating yb[CHUNK]
    cdef floating lb[CHUNK]
    cdef floating gb[CHUNK]
    cdef double wb[CHUNK]
    cdef double pb[CHUNK]
    cdef double sb[CHUNK]
    for r in range(unit_row0(u, n2), unit_row1(u, rows, n2)):
        i = r // n1
        j = r - i * n1
        if vector:
            acc += bce_logits_run(
                &x[i, j, k0], &y[i, j, k0], &w[i, j, k0], w.strides[2] // 8,
                &pw[i, j, k0] if has_pw else NULL, pw.strides[2] // 8 if has_pw else 0,
                &gscale[i, j, k0] if want_grad else NULL,
                gscale.strides[2] // 8 if want_grad else 0,
                &loss[i, j, k0] if want_loss else NULL, &grad[i, j, k0] if want_grad else NULL,
                k1 - k0)
            continue
        k = k0
        while k < k1:
            n = min(<Py_ssize_t>CHUNK, k1 - k)
            chunk_in(x, i, j, k, n, xb)
            chunk_in(y, i, j, k, n, yb)
            chunk_in(w, i, j, k, n, wb)
            chunk_in(pw, i, j, k, n, pb if has_pw else NULL)
            chunk_in(gscale, i, j, k, n, sb if want_grad else NULL)
            acc += bce_logits_run(xb, yb, wb, 1, pb if has_pw else NULL, 1,
                                  sb if want_grad else NULL, 1, lb if want_loss else NULL,
                                  gb if want_grad else NULL, n)
            chunk_out(loss, grad, i, j, k, n, lb if want_loss else NULL,
                      gb if want_grad else NULL)
            k += n
    return acc


def bce(const floating[:, :, :] p,        # IN  probabilities in [0, 1] (checked)
        const floating[:, :, :] y,        # IN  targets in [0, 1] (checked)
        const double[:, :, :] w,          # IN  weight, broadcast
        const double[:, :, :] gscale,     # IN  d total / d loss, broadcast
        floating[:, :, :] loss,           # OUT per-element loss when want_loss
        floating[:, :, :] grad,           # OUT gradient when want_grad; may alias p
        bint want_loss, bint want_grad, int n_threads):
    """Return the sum of the element losses; write them and the gradient when asked."""
    cdef Py_ssize_t rows = p.shape[0] * p.shape[1], n2 = p.shape[2]
    cdef Py_ssize_t nu = n_units(rows, n2), u
    cdef double total = 0.0
    cdef bint vector = _vector_runs(p, y, w, w, gscale, loss, grad, False, want_loss,
                                    want_grad)
    cdef double* partial = <double*>malloc(max(nu, 1) * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    try:
        if n_threads == 1:
            with nogil:
                for u in range(nu):
                    partial[u] = _bce_unit(u, rows, p, y, w, gscale, loss, grad, want_loss,
                                           want_grad, vector)
        else:
            for u in prange(nu, nogil=True, schedule="static", num_threads=n_threads):
                partial[u] = _bce_unit(u, rows, p, y, w, gscale, loss, grad, want_loss,
                                       want_grad, vector)
        for u in range(nu):
            total = total + partial[u]
    finally:
        free(partial)
    return total


def bce_logits(const floating[:, :, :] x,       # IN  logits
               const floating[:, :, :] y,       # IN  targets
               const double[:, :, :] w,         # IN  weight, broadcast
               const double[:, :, :] pw,        # IN  pos_weight, broadcast (if has_pw)
               const double[:, :, :] gscale,    # IN  d total / d loss, broadcast
               floating[:, :, :] loss,          # OUT per-element loss when want_loss
               floating[:, :, :] grad,          # OUT gradient when want_grad; may alias x
               bint has_pw, bint want_loss, bint want_grad, int n_threads):
    """Return the sum of the element losses; write them and the gradient when asked."""
    cdef Py_ssize_t rows = x.shape[0] * x.shape[1], n2 = x.shape[2]
    cdef Py_ssize_t nu = n_units(rows, n2), u
    cdef double total = 0.0
    cdef bint vector = _vector_runs(x, y, w, pw, gscale, loss, grad, has_pw, want_loss,
                                    want_grad)
    cdef double* partial = <double*>malloc(max(nu, 1) * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    try:
        if n_threads == 1:
            with nogil:
                for u in range(nu):
                    partial[u] = _bce_logits_unit(u, rows, x, y, w, pw, gscale, loss, grad,
                                                  has_pw, want_loss, want_grad, vector)
        else:
            for u in prange(nu, nogil=True, schedule="static", num_threads=n_threads):
                partial[u] = _bce_logits_unit(u, rows, x, y, w, pw, gscale, loss, grad,
                                              has_pw, want_loss, want_grad, vector)
        for u in range(nu):
            total = total + partial[u]
    finally:
        free(partial)
    return total


# --- binary_cross_entropy_with_logits's most common call, past the Python layer ----------

cdef object _ndarray = np.ndarray
cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)


def common_logits(input, target, reduction, return_grad, grad_out, threads_for):
    """``functional.binary_cross_entropy_with_logits`` for its most common arguments, or
    None for any others.

    At (16, 10) the Python layer took 8 of a loss's 8.3 us. As ``_xent.common_index``, this
    takes the call when every argument is plainly valid and returns what the general way
    returns, bit for bit (the same fx_bce_logits_run over the same units, their partial sums
    added in the same order); anything else returns None, never raises. It takes:

    * logits: a C-ordered ``np.ndarray`` (not a subclass) of NumPy's own float32 or float64
      dtype, at least one element, any number of dimensions;
    * targets: a C-ordered ``np.ndarray`` of the logits' shape and dtype object;
    * `reduction` a str, `return_grad` True or False, `grad_out` as in common_index;
    * no weight, pos_weight or grad_output (the caller checks those are None).

    The general way coalesces such operands into one run of n elements, (1, 1, n), and so
    does this.
    """
    cdef Py_ssize_t n, nbytes, nu, u
    cdef double scale, total = 0.0, one = 1.0
    cdef double* partial = NULL
    cdef const void* xp
    cdef const void* yp
    cdef void* gp = NULL
    cdef void* lp = NULL
    cdef Py_buffer held[4]
    cdef int n_held = 0, nt, red, grads
    cdef bint want, f32
    if type(input) is not _ndarray or type(target) is not _ndarray:
        return None
    dt = input.dtype
    if (dt is not _F32 and dt is not _F64) or target.dtype is not dt:
        return None
    shape = input.shape
    if (target.shape != shape or not input.flags.c_contiguous
            or not target.flags.c_contiguous):
        return None
    red = common_reduction(reduction)
    if red < 0:
        return None
    grads = common_gradient(return_grad, grad_out, input)
    if grads < 0:
        return None
    want = grads == 1
    n = input.size
    if n == 0:
        return None
    f32 = dt is _F32
    nbytes = n * (4 if f32 else 8)
    try:
        xp = common_buffer(input, PyBUF_SIMPLE, held, &n_held)
        yp = common_buffer(target, PyBUF_SIMPLE, held, &n_held)
        if want:
            grad = np.empty(shape, dt) if grad_out is None else grad_out
            gp = common_buffer(grad, PyBUF_WRITABLE, held, &n_held)
            if not common_grad_memory(gp, xp, nbytes, yp, nbytes):
                return None
        if red == 0:
            loss = np.empty(shape, dt)
            lp = common_buffer(loss, PyBUF_WRITABLE, held, &n_held)
        scale = 1.0 / <double>n if red == 1 else 1.0
        nu = n_units(1, n)
        partial = <double*>malloc(nu * sizeof(double))
        if partial == NULL:
            raise MemoryError()
        nt = threads_for(n)
        with nogil:
            if f32:
                _logits_units(<const float*>xp, <const float*>yp, &one,
                              &scale if want else NULL, <float*>lp, <float*>gp, n, nu,
                              partial, nt)
            else:
                _logits_units(<const double*>xp, <const double*>yp, &one,
                              &scale if want else NULL, <double*>lp, <double*>gp, n, nu,
                              partial, nt)
        if red != 0:
            for u in range(nu):
                total = total + partial[u]
            loss = common_scalar(total / <double>n if red == 1 else total, dt, _ndarray)
        return (loss, grad) if want else loss
    finally:
        free(partial)
        common_release(held, n_held)


cdef void _logits_units(const floating* x, const floating* y, const double* w,
                        const double* scale, floating* loss, floating* g, Py_ssize_t n,
                        Py_ssize_t nu, double* partial, int n_threads) noexcept nogil:
    # bce_logits's units over one run of n elements (the (1, 1, n) view), their sums into
    # partial; w and scale one value each (step 0).
    cdef Py_ssize_t u
    if n_threads == 1:
        for u in range(nu):
            partial[u] = _logits_unit(x, y, w, scale, loss, g, n, u)
        return
    for u in prange(nu, schedule="static", num_threads=n_threads):
        partial[u] = _logits_unit(x, y, w, scale, loss, g, n, u)


cdef inline double _logits_unit(const floating* x, const floating* y, const double* w,
                                const double* scale, floating* loss, floating* g,
                                Py_ssize_t n, Py_ssize_t u) noexcept nogil:
    # Unit u: elements unit_col0 .. unit_col1 - 1.
    cdef Py_ssize_t k0 = unit_col0(u, n)
    return bce_logits_run(x + k0, y + k0, w, 0, NULL, 0, scale, 0,
                          loss + k0 if loss != NULL else NULL, g + k0 if g != NULL else NULL,
                          unit_col1(u, n) - k0)
