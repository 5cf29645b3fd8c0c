"""kl_div, element by element.

Design
a) Layout, passes, threading and determinism as in _binary.pyx: (d0, d1, d2) views with
   arbitrary strides (the target and the gradient scale may be broadcast), one pass, fixed
   units whose partial sums are added in order. Unit-stride runs go to fx_binary.inc's 8-lane
   loop (fx_kl_run); other layouts go through it in chunks copied to and from the stack, as
   in _binary.pyx.
b) Formulas are PyTorch's, in double, with x the input log-probabilities and t the target:
     log_target=False: l = xlogy(t, t) - t x,   g = -t
     log_target=True:  l = exp(t) (t - x),      g = -exp(t)
   xlogy(t, t) is 0 at t = 0 and NaN for NaN t (torch.xlogy), so t = 0 contributes -0 x,
   which is NaN at x = -inf exactly as in PyTorch.
"""
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

from ._common cimport (floating, n_units, unit_row0, unit_row1, unit_col0, unit_col1,
                       unit_runs, kl_run, CHUNK, chunk_in, chunk_out)


cdef inline double _kl_unit(Py_ssize_t u, Py_ssize_t rows, const floating[:, :, :] x,
                            const floating[:, :, :] t, const double[:, :, :] gscale,
                            floating[:, :, :] loss, floating[:, :, :] grad, bint log_target,
                            bint want_loss, bint want_grad, bint vector) noexcept nogil:
    cdef Py_ssize_t n1 = x.shape[1], n2 = x.shape[2], r, i, j, k, n
    cdef Py_ssize_t k0 = unit_col0(u, n2), k1 = unit_col1(u, n2)
    cdef double acc = 0.0
    cdef floating xb[CHUNK]
    cdef floating tb[CHUNK]
    cdef floating lb[CHUNK]
    cdef floating gb[CHUNK]
    cdef double sb[CHUNK]
    for r in range(unit_row0(u, n2), unit_row1(u, rows, n2)):
        i = r // n1
        j = r - i * n1
        if vector:
            acc += kl_run(&x[i, j, k0], &t[i, j, k0],
                          &gscale[i, j, k0] if want_grad else NULL,
                          gscale.strides[2] // 8 if want_grad else 0, log_target,
                          &loss[i, j, k0] if want_loss else NULL,
                          &grad[i, j, k0] if want_grad else NULL, k1 - k0)
            continue
        k = k0
        while k < k1:
            n = min(<Py_ssize_t>CHUNK, k1 - k)
            chunk_in(x, i, j, k, n, xb)
            chunk_in(t, i, j, k, n, tb)
            chunk_in(gscale, i, j, k, n, sb if want_grad else NULL)
            acc += kl_run(xb, tb, sb if want_grad else NULL, 1, log_target,
                          lb if want_loss else NULL, gb if want_grad else NULL, n)
            chunk_out(loss, grad, i, j, k, n, lb if want_loss else NULL,
                      gb if want_grad else NULL)
            k += n
    return acc


def kl_div(const floating[:, :, :] x,       # IN  log-probabilities
           const floating[:, :, :] t,       # IN  target (probabilities or log), broadcast
           const double[:, :, :] gscale,    # IN  d total / d loss, broadcast
           floating[:, :, :] loss,          # OUT per-element loss when want_loss
           floating[:, :, :] grad,          # OUT gradient when want_grad; may alias x
           bint log_target, bint want_loss, bint want_grad, int n_threads):
    """Return the sum of the element losses; write them and the gradient when asked."""
    cdef Py_ssize_t rows = x.shape[0] * x.shape[1], n2 = x.shape[2]
    cdef Py_ssize_t nu = n_units(rows, n2), u
    cdef double total = 0.0
    cdef bint vector = unit_runs(x, t, gscale, loss, grad, want_loss, want_grad)
    cdef double* partial = <double*>malloc(max(nu, 1) * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    try:
        if n_threads == 1:
            with nogil:
                for u in range(nu):
                    partial[u] = _kl_unit(u, rows, x, t, gscale, loss, grad, log_target,
                                          want_loss, want_grad, vector)
        else:
            for u in prange(nu, nogil=True, schedule="static", num_threads=n_threads):
                partial[u] = _kl_unit(u, rows, x, t, gscale, loss, grad, log_target,
                                      want_loss, want_grad, vector)
        for u in range(nu):
            total = total + partial[u]
    finally:
        free(partial)
    return total
