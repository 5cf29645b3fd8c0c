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
c) Threading: rows are independent; prange with a static schedule, or a plain loop for one
   thread (no parallel region: _threads.py). The kernels write one loss per row and never
   reduce: _reduce.py sums the per-row losses in a fixed order, so results are bit-identical
   for any thread count.
d) Gradient scale: gscale[i, j] is d(total)/d(loss_ij) -- grad_output, divided by the mean's
   denominator for reduction="mean" -- computed before the kernel runs.
e) Maths (docs/numerics.md): with m = max, s = sum exp(x - m), lse = m + log s, eps the label
   smoothing, w the class weights (1 when absent) and W = sum_c w_c:
     loss = (1 - eps) w_y (lse - x_y) + eps / C * sum_c w_c (lse - x_c)
     grad = (1 - eps) w_y (p - e_y) + eps / C * (W p - w)
   and with probability targets q' = (1 - eps) q + eps / C:
     loss = sum_c w_c q'_c (lse - x_c),   grad = (sum_c w_c q'_c) p - w * q'.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cython.parallel cimport prange
from libc.stdint cimport int64_t

import numpy as np

from ._common cimport (floating, row_fill, block_index, block_index_loss, packed_index,
                       packed_prob, packed_rows, packed_share, rows_index, block_prob, rows_prob,
                       block_offsets, use_blocks, use_strips, BLOCK_MAX_C, BLOCK_ROWS, ROW_GROUP,
                       STRIP_ROWS, common_reduction, common_gradient, common_grad_memory,
                       common_buffer, common_release, common_scalar,
                       fx_index_range)


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
    cdef Py_ssize_t s = x.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t r
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef double W = <double>C if wp == NULL else 0.0
    cdef Py_ssize_t rows = x.shape[0] * inner, b
    cdef bint blocks = use_blocks(C, s, inner)
    # fx_block_index_loss takes BLOCK_ROWS rows per call, every other kernel ROW_GROUP;
    # consecutive rows go STRIP_ROWS at a time
    cdef Py_ssize_t lanes = ((STRIP_ROWS if blocks and use_strips(
                                  inner, x.strides[0] // <Py_ssize_t>sizeof(floating),
                                  x.strides[2] // <Py_ssize_t>sizeof(floating))
                              else BLOCK_ROWS if blocks and not want_grad else ROW_GROUP)
                             // (1 if floating is float else 2))
    cdef double shared[STRIP_ROWS]
    cdef const double* sp = _shared_scale(gscale, want_grad and rows > 0, shared)
    cdef bint same_rows = grad.strides[0] == x.strides[0] and grad.strides[2] == x.strides[2]
    cdef const double* scale
    cdef Py_ssize_t sstep
    cdef floating* g
    # W enters only the smoothing terms, so the weights are summed only with smoothing: no
    # weight but the target's reaches a row without it (an infinite one in W made 0 * W a
    # NaN in every entry, where PyTorch gives numbers)
    if eps > 0:
        for r in range(w.shape[0]):
            W += w[r]
    if rows > 0 and _packed(x) and (not want_grad or _packed_grad_rows(grad, gscale)):
        # Rows back to back (C order), the gradient's too: one fx_packed_index call per
        # thread.
        g = _packed_grad(grad, gscale, want_grad, 0, &scale, &sstep)
        with nogil:
            _packed_index_run(&x[0, 0, 0], rows, C, &t[0, 0], wp, W, eps, &loss[0, 0], g,
                              scale, sstep, n_threads)
        return
    if n_threads == 1:
        with nogil:
            for b in range((rows + lanes - 1) // lanes):
                _index_group(x, t, wp, W, eps, gscale, sp, loss, grad, same_rows, want_grad,
                             b * lanes, lanes, blocks)
        return
    for b in prange((rows + lanes - 1) // lanes, nogil=True, schedule="static",
                    num_threads=n_threads):
        _index_group(x, t, wp, W, eps, gscale, sp, loss, grad, same_rows, want_grad, b * lanes,
                     lanes, blocks)


cdef void _packed_index_run(const floating* x, Py_ssize_t rows, Py_ssize_t C,
                            const int64_t* t, const double* wp, double W, double eps,
                            double* loss, floating* g, const double* scale, Py_ssize_t sstep,
                            int n_threads) noexcept nogil:
    # fx_packed_index over rows that lie back to back (its contract), each thread's share
    # (packed_share) in one call; no parallel region for one thread.
    cdef Py_ssize_t per, b, r0
    if n_threads == 1:
        packed_index(x, rows, C, t, wp, W, eps, loss, g, scale, sstep)
        return
    per = packed_share(rows, n_threads)
    for b in prange((rows + per - 1) // per, schedule="static", num_threads=n_threads):
        r0 = b * per
        packed_index(x + r0 * C, rows - r0 if rows - r0 < per else per, C, t + r0, wp, W, eps,
                     loss + r0, g + r0 * C if g != NULL else NULL,
                     scale + r0 * sstep if scale != NULL else NULL, sstep)


cdef inline bint _packed(const floating[:, :, :] a) noexcept nogil:
    # Whether the rows of an (outer, C, inner) view lie back to back (_common.packed_rows).
    cdef Py_ssize_t fs = sizeof(floating)
    return packed_rows(a.shape[1], a.shape[2], a.strides[0] // fs, a.strides[1] // fs,
                       a.strides[2] // fs)


cdef inline bint _packed_grad_rows(floating[:, :, :] grad,
                                   const double[:, :] gscale) noexcept nogil:
    # Whether gradient rows lie back to back and their scales one step apart in row order,
    # as _packed_grad hands them to the packed kernels.
    return _packed(grad) and (grad.shape[2] == 1
                              or gscale.strides[0] == grad.shape[2] * gscale.strides[1])


cdef inline floating* _packed_grad(floating[:, :, :] grad, const double[:, :] gscale,
                                  bint want_grad, Py_ssize_t r0, const double** scale,
                                  Py_ssize_t* sstep) noexcept nogil:
    # Gradient row r0 of an (outer, C, inner) view whose rows lie back to back, and its
    # scales: the scale of row r0 and their step (0: one scale broadcast to every row;
    # _packed_grad_rows). NULL (and no scales) without a gradient.
    scale[0] = NULL
    sstep[0] = 0
    if not want_grad:
        return NULL
    sstep[0] = gscale.strides[0 if grad.shape[2] == 1 else 1] // <Py_ssize_t>sizeof(double)
    scale[0] = &gscale[0, 0] + r0 * sstep[0]
    return &grad[0, 0, 0] + r0 * grad.shape[1]


cdef inline const double* _shared_scale(const double[:, :] gscale, bint used,
                                        double* shared) noexcept nogil:
    # `shared` filled with the scale of every row when gscale is one value broadcast ("mean",
    # "sum", a scalar grad_output: zero strides), else NULL. With it, and gradient rows laid
    # out as x's, a group needs no gradient offsets or scale gathers of its own: at C = 10
    # those were a tenth of the fused call.
    cdef int k
    if not used or gscale.strides[0] != 0 or gscale.strides[1] != 0:
        return NULL
    for k in range(STRIP_ROWS):
        shared[k] = gscale[0, 0]
    return shared


cdef inline bint _grad_rows(floating[:, :, :] grad, const double[:, :] gscale,
                           const double* shared, bint same_rows, bint consecutive, Py_ssize_t r0,
                           int nrows, Py_ssize_t* goff, double* scale,
                           const Py_ssize_t** goff_p, const double** scale_p) noexcept nogil:
    # The gradient side of a group: each row's element offset in grad and its scale from
    # gscale (broadcast or not), into goff and scale, pointed to by *goff_p and *scale_p;
    # returns whether the gradient rows are consecutive elements. With a shared scale and
    # grad's rows laid out as x's (same_rows), *goff_p keeps x's offsets (its caller's
    # default, as are `consecutive` and shared) and nothing is computed.
    cdef Py_ssize_t inner = grad.shape[2], fs = sizeof(floating), ds = sizeof(double)
    cdef Py_ssize_t soff[STRIP_ROWS]
    cdef int k
    if same_rows and shared != NULL:
        scale_p[0] = shared
        return consecutive
    block_offsets(r0, nrows, inner, gscale.strides[0] // ds, gscale.strides[1] // ds, soff)
    for k in range(nrows):
        scale[k] = (&gscale[0, 0])[soff[k]]
    goff_p[0] = goff
    scale_p[0] = scale
    return block_offsets(r0, nrows, inner, grad.strides[0] // fs, grad.strides[2] // fs, goff)


cdef inline void _index_group(const floating[:, :, :] x, const int64_t[:, ::1] t,
                              const double* wp, double W, double eps,
                              const double[:, :] gscale, const double* shared,
                              double[:, ::1] loss, floating[:, :, :] grad, bint same_rows,
                              bint want_grad, Py_ssize_t r0, Py_ssize_t lanes,
                              bint blocks) noexcept nogil:
    # Rows r0 .. r0 + lanes - 1 (fewer at the end) through fx_block_index (a lane per row) or
    # fx_rows_index (a row at a time): element offsets of each row in x and grad, and their
    # scales (_shared_scale's, when grad's rows lie as x's: same_rows); targets and loss
    # slots are contiguous in r.
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner
    cdef Py_ssize_t off[STRIP_ROWS]
    cdef Py_ssize_t goff_own[STRIP_ROWS]
    cdef double scale_own[STRIP_ROWS]
    cdef const Py_ssize_t* goff = off
    cdef const double* scale = NULL
    cdef int nrows = <int>(rows - r0 if rows - r0 < lanes else lanes)
    cdef bint consecutive, gconsecutive = 0
    cdef floating* g = NULL
    cdef Py_ssize_t fs = sizeof(floating)
    cdef Py_ssize_t sc = x.strides[1] // fs, gsc = grad.strides[1] // fs
    consecutive = block_offsets(r0, nrows, inner, x.strides[0] // fs, x.strides[2] // fs, off)
    if want_grad:
        g = &grad[0, 0, 0]
        gconsecutive = _grad_rows(grad, gscale, shared, same_rows, consecutive, r0, nrows,
                                  goff_own, scale_own, &goff, &scale)
    if blocks and not want_grad:
        block_index_loss(&x[0, 0, 0], off, nrows, consecutive, x.shape[1], sc, &t[0, 0] + r0,
                         wp, W, eps, &loss[0, 0] + r0)
    elif blocks:
        block_index(&x[0, 0, 0], off, nrows, consecutive, x.shape[1], sc, &t[0, 0] + r0, wp,
                    W, eps, &loss[0, 0] + r0, g, goff, gconsecutive, gsc, scale)
    else:
        rows_index(&x[0, 0, 0], off, nrows, x.shape[1], sc, &t[0, 0] + r0, wp, W, eps,
                   &loss[0, 0] + r0, g, goff, gsc, scale)


def prob_rows(const floating[:, :, :] x,       # IN  (outer, C, inner) logits
              const floating[:, :, :] q,       # IN  (outer, C, inner) probabilities
              const double[::1] w,             # IN  (C,) or (0,)
              double eps,                      # label smoothing
              const double[:, :] gscale,       # IN  (outer, inner), may be broadcast
              double[:, ::1] loss,             # OUT (outer, inner)
              floating[:, :, :] grad,          # OUT (outer, C, inner), may alias x
              bint want_grad, int n_threads):
    """Cross entropy with probability targets: one loss per row (+ gradient rows)."""
    cdef Py_ssize_t rows = x.shape[0] * x.shape[2], b
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef bint blocks = use_blocks(x.shape[1], x.strides[1] // <Py_ssize_t>sizeof(floating),
                                  x.shape[2])
    cdef Py_ssize_t lanes = ((STRIP_ROWS if blocks and use_strips(
                                  x.shape[2],
                                  x.strides[0] // <Py_ssize_t>sizeof(floating),
                                  x.strides[2] // <Py_ssize_t>sizeof(floating))
                              else ROW_GROUP) // (1 if floating is float else 2))
    cdef double shared[STRIP_ROWS]
    cdef const double* sp = _shared_scale(gscale, want_grad and rows > 0, shared)
    cdef bint same_rows = grad.strides[0] == x.strides[0] and grad.strides[2] == x.strides[2]
    cdef Py_ssize_t fs = sizeof(floating), per, C = x.shape[1], inner = x.shape[2]
    if (rows > 0 and _packed(x) and _packed(q)
            and (not want_grad or _packed_grad_rows(grad, gscale))):
        # Logits, targets and gradient rows back to back (C order): one fx_packed_prob call
        # per thread, as index_rows.
        if n_threads == 1:
            with nogil:
                _prob_packed(x, q, wp, eps, gscale, loss, grad, want_grad, 0, rows)
            return
        per = packed_share(rows, n_threads)
        for b in prange((rows + per - 1) // per, nogil=True, schedule="static",
                        num_threads=n_threads):
            _prob_packed(x, q, wp, eps, gscale, loss, grad, want_grad, b * per,
                         rows - b * per if rows - b * per < per else per)
        return
    if n_threads == 1:
        with nogil:
            for b in range((rows + lanes - 1) // lanes):
                _prob_group(x, q, wp, eps, gscale, sp, loss, grad, same_rows, want_grad,
                            b * lanes, lanes, blocks)
        return
    for b in prange((rows + lanes - 1) // lanes, nogil=True, schedule="static",
                    num_threads=n_threads):
        _prob_group(x, q, wp, eps, gscale, sp, loss, grad, same_rows, want_grad, b * lanes,
                    lanes, blocks)


cdef inline void _prob_packed(const floating[:, :, :] x, const floating[:, :, :] q,
                              const double* wp, double eps, const double[:, :] gscale,
                              double[:, ::1] loss, floating[:, :, :] grad, bint want_grad,
                              Py_ssize_t r0, Py_ssize_t nrows) noexcept nogil:
    # Rows r0 .. r0 + nrows - 1 of (outer, C, inner) views whose rows lie back to back.
    cdef Py_ssize_t C = x.shape[1], sstep
    cdef const double* scale
    cdef floating* g = _packed_grad(grad, gscale, want_grad, r0, &scale, &sstep)
    packed_prob(&x[0, 0, 0] + r0 * C, nrows, C, &q[0, 0, 0] + r0 * C, wp, eps,
                &loss[0, 0] + r0, g, scale, sstep)


cdef inline void _prob_group(const floating[:, :, :] x, const floating[:, :, :] q,
                             const double* wp, double eps, const double[:, :] gscale,
                             const double* shared, double[:, ::1] loss,
                             floating[:, :, :] grad, bint same_rows, bint want_grad,
                             Py_ssize_t r0, Py_ssize_t lanes, bint blocks) noexcept nogil:
    # Rows r0 .. r0 + lanes - 1 (fewer at the end) through fx_block_prob or fx_rows_prob, as
    # _index_group.
    cdef Py_ssize_t inner = x.shape[2], rows = x.shape[0] * inner
    cdef Py_ssize_t off[STRIP_ROWS]
    cdef Py_ssize_t qoff[STRIP_ROWS]
    cdef Py_ssize_t goff_own[STRIP_ROWS]
    cdef double scale_own[STRIP_ROWS]
    cdef const Py_ssize_t* goff = off
    cdef const double* scale = NULL
    cdef int nrows = <int>(rows - r0 if rows - r0 < lanes else lanes)
    cdef floating* g = NULL
    cdef Py_ssize_t fs = sizeof(floating)
    cdef bint consecutive, qconsecutive, gconsecutive = 0
    consecutive = block_offsets(r0, nrows, inner, x.strides[0] // fs, x.strides[2] // fs, off)
    qconsecutive = block_offsets(r0, nrows, inner, q.strides[0] // fs, q.strides[2] // fs,
                                 qoff)
    if want_grad:
        g = &grad[0, 0, 0]
        gconsecutive = _grad_rows(grad, gscale, shared, same_rows, consecutive, r0, nrows,
                                  goff_own, scale_own, &goff, &scale)
    if blocks:
        block_prob(&x[0, 0, 0], off, nrows, consecutive, x.shape[1], x.strides[1] // fs,
                   &q[0, 0, 0], qoff, qconsecutive, q.strides[1] // fs, wp, eps,
                   &loss[0, 0] + r0, g, goff, gconsecutive, grad.strides[1] // fs, scale)
    else:
        rows_prob(&x[0, 0, 0], off, nrows, x.shape[1], x.strides[1] // fs, &q[0, 0, 0], qoff,
                  q.strides[1] // fs, wp, eps, &loss[0, 0] + r0, g, goff,
                  grad.strides[1] // fs, scale)


def nll_rows(const floating[:, :, :] x,       # IN  (outer, C, inner) log-probabilities
             const int64_t[:, ::1] t,         # IN  (outer, inner), -1 = ignored
             const double[::1] w,             # IN  (C,) or (0,)
             const double[:, :] gscale,       # IN  (outer, inner), may be broadcast
             double[:, ::1] loss,             # OUT (outer, inner)
             floating[:, :, :] grad,          # OUT (outer, C, inner), may alias x
             bint want_grad, int n_threads):
    """Negative log-likelihood: one loss per row (+ gradient rows)."""
    cdef Py_ssize_t inner = x.shape[2], r
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    if n_threads == 1:
        with nogil:
            for r in range(x.shape[0] * inner):
                _nll_at(x, t, wp, gscale, loss, grad, want_grad, r)
        return
    for r in prange(x.shape[0] * inner, nogil=True, schedule="static",
                    num_threads=n_threads):
        _nll_at(x, t, wp, gscale, loss, grad, want_grad, r)


cdef inline void _nll_at(const floating[:, :, :] x, const int64_t[:, ::1] t, const double* wp,
                         const double[:, :] gscale, double[:, ::1] loss,
                         floating[:, :, :] grad, bint want_grad, Py_ssize_t r) noexcept nogil:
    # Row r of the (outer, C, inner) view.
    cdef Py_ssize_t inner = x.shape[2], i = r // inner, j = r - i * inner
    cdef floating* g = NULL
    cdef double scale = 0.0
    if want_grad:
        g = &grad[i, 0, j]
        scale = gscale[i, j]
    loss[i, j] = _nll_row(&x[i, 0, j], x.shape[1], x.strides[1] // <Py_ssize_t>sizeof(floating),
                          t[i, j], wp, g, grad.strides[1] // <Py_ssize_t>sizeof(floating), scale)


# --- helpers of the Python layer: the target range check and the sum of the row losses ----
#
# Both are one pass over N values, serial in the Python layer's time: at 65536 rows, 4 and 5 us
# of a 200 us fused call. With n_threads > 1 the pass is split over the threads, and the
# results are those of one thread, bit for bit: min and max in any order, and the sum's
# parts are whole subtrees of its pairwise tree (_tree_parts), added back in its order.

cdef enum:
    MAX_PARTS = 64      # the most parts either pass is split into


def target_range(const int64_t[::1] t, int n_threads):
    """``(min, max)`` of a non-empty int64 target array, in one pass.

    The range check of ``_validate`` (two NumPy reductions cost more than the whole kernel on
    a small batch).
    """
    cdef Py_ssize_t n = t.shape[0], per, b, parts
    cdef int64_t lo, hi
    cdef int64_t lo_part[MAX_PARTS]
    cdef int64_t hi_part[MAX_PARTS]
    if n_threads == 1 or n < MAX_PARTS:
        fx_index_range(&t[0], n, &lo, &hi)
        return lo, hi
    per = (n + min(n_threads, MAX_PARTS) - 1) // min(n_threads, MAX_PARTS)
    parts = (n + per - 1) // per
    for b in prange(parts, nogil=True, schedule="static", num_threads=min(n_threads, parts)):
        fx_index_range(&t[0] + b * per, min(per, n - b * per), &lo_part[b], &hi_part[b])
    lo, hi = lo_part[0], hi_part[0]
    for b in range(1, parts):
        lo = min(lo, lo_part[b])
        hi = max(hi, hi_part[b])
    return lo, hi


cdef double _pairwise_sum(const double* a, Py_ssize_t n) noexcept nogil:
    # Blocks of up to 128 summed in 8 interleaved partial sums, blocks combined pairwise: the
    # rounding error grows with log(n), not n, and the order depends on n alone.
    cdef double acc[8]
    cdef double total
    cdef Py_ssize_t i, k, half
    if n > 128:
        half = _tree_half(n)
        return _pairwise_sum(a, half) + _pairwise_sum(a + half, n - half)
    if n < 8:
        total = 0.0
        for i in range(n):
            total = total + a[i]
        return total
    for k in range(8):
        acc[k] = a[k]
    i = 8
    while i + 8 <= n:
        for k in range(8):
            acc[k] = acc[k] + a[i + k]
        i = i + 8
    total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    while i < n:
        total = total + a[i]
        i = i + 1
    return total


cdef inline Py_ssize_t _tree_half(Py_ssize_t n) noexcept nogil:
    # Where _pairwise_sum splits n > 128 values.
    return (n // 2) & ~(<Py_ssize_t>7)


cdef int _tree_parts(Py_ssize_t o, Py_ssize_t n, int depth, Py_ssize_t* off, Py_ssize_t* cnt,
                     int k) noexcept nogil:
    # The subtrees of _pairwise_sum's tree over values o .. o + n - 1 that lie `depth` levels
    # down (or higher, where a node of <= 128 values has no children), appended from left to
    # right at off[k], cnt[k]; returns the new count.
    cdef Py_ssize_t half
    if depth == 0 or n <= 128:
        off[k] = o
        cnt[k] = n
        return k + 1
    half = _tree_half(n)
    k = _tree_parts(o, half, depth - 1, off, cnt, k)
    return _tree_parts(o + half, n - half, depth - 1, off, cnt, k)


cdef double _tree_join(Py_ssize_t n, int depth, const double* part, int* k) noexcept nogil:
    # _pairwise_sum over n values from the sums of _tree_parts' subtrees (the next at
    # part[k[0]]): the same additions in the same order.
    cdef Py_ssize_t half
    cdef double left
    if depth == 0 or n <= 128:
        k[0] += 1
        return part[k[0] - 1]
    half = _tree_half(n)
    left = _tree_join(half, depth - 1, part, k)
    return left + _tree_join(n - half, depth - 1, part, k)


def row_total(const double[:, ::1] rows, int n_threads):
    """The float64 sum of the per-row losses, in an order fixed by their count alone.

    A sum with an infinite row of each sign is NaN, as in PyTorch, and raises no
    floating-point warning (NumPy's sum would).
    """
    cdef Py_ssize_t n = rows.shape[0] * rows.shape[1]
    cdef Py_ssize_t off[MAX_PARTS]
    cdef Py_ssize_t cnt[MAX_PARTS]
    cdef double part[MAX_PARTS]
    cdef int depth = 0, parts, b, k = 0
    if n == 0:
        return 0.0
    if n_threads == 1:
        return _pairwise_sum(&rows[0, 0], n)
    while (1 << depth) < n_threads and (2 << depth) <= MAX_PARTS:
        depth += 1
    parts = _tree_parts(0, n, depth, off, cnt, 0)
    for b in prange(parts, nogil=True, schedule="static", num_threads=min(n_threads, parts)):
        part[b] = _pairwise_sum(&rows[0, 0] + off[b], cnt[b])
    return _tree_join(n, depth, part, &k)


# --- the most common calls of cross_entropy and nll_loss, past the Python layer ----------

cdef object _ndarray = np.ndarray
cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)
cdef object _I64 = np.dtype(np.int64)


def common_index(input, target, ignore_index, reduction, label_smoothing, return_grad,
                 grad_out, threads_for, bint log_probs=False):
    """``functional.cross_entropy`` (``nll_loss`` with `log_probs`) for its most common
    arguments, or None for any others.

    At (16, 10) the Python layer's checks took 6 of a loss's 7 us. This function takes the
    call when it can tell at a glance that every argument is valid, and returns what the
    Python layer returns for it, bit for bit: the same kernels (fx_packed_index through
    _packed_index_run, or _nll_row), the same sum of the row losses (_pairwise_sum) and the
    same casts. It never raises for bad arguments: anything it does not take returns None,
    and the caller goes the general way, which validates. It takes:

    * logits (log-probabilities with `log_probs`): a C-ordered (N, C) ``np.ndarray`` (not a
      subclass) of NumPy's own float32 or float64 dtype, N >= 1 and C >= 1; for cross
      entropy C <= BLOCK_MAX_C as well (the rows fx_packed_index takes);
    * targets: a C-ordered (N,) int64 ``np.ndarray``, every value in [0, C) and none equal
      to `ignore_index` (a Python int);
    * `reduction` a str, `label_smoothing` a Python float or int in [0, 1] (0 for
      nll_loss), `return_grad` True or False;
    * `grad_out` None, or a C-ordered writeable ``np.ndarray`` of the logits' shape and
      dtype that is the logits themselves or shares no byte with them or the targets;
    * no class weight, class axis, or grad_output (the caller checks those are None).

    `threads_for` is ``_threads.threads_for``, which picks the thread count.
    """
    cdef Py_ssize_t N, C, nbytes
    cdef int64_t lo, hi
    cdef double eps, scale, total
    cdef double* rows
    cdef double* own = NULL      # rows, where they are not the returned loss's memory
    cdef const void* xp
    cdef const int64_t* tp
    cdef void* gp = NULL
    cdef float* lp
    cdef Py_buffer held[4]
    cdef int n_held = 0, nt, red, grads
    cdef bint want, mean, f32
    cdef Py_ssize_t i
    if type(input) is not _ndarray or type(target) is not _ndarray:
        return None
    dt = input.dtype
    if (dt is not _F32 and dt is not _F64) or target.dtype is not _I64:
        return None
    shape, tshape = input.shape, target.shape
    if len(shape) != 2 or len(tshape) != 1 or tshape[0] != shape[0]:
        return None
    N, C = shape
    if N == 0 or C == 0 or (C > BLOCK_MAX_C and not log_probs):
        return None
    red = common_reduction(reduction)
    if red < 0:
        return None
    if type(ignore_index) is not int:
        return None
    if type(label_smoothing) is not float and type(label_smoothing) is not int:
        return None
    if not 0 <= label_smoothing <= 1:       # also NaN; an int compared before it converts
        return None
    eps = label_smoothing
    grads = common_gradient(return_grad, grad_out, input)
    if grads < 0:
        return None
    want = grads == 1
    if not input.flags.c_contiguous or not target.flags.c_contiguous:
        return None
    f32 = dt is _F32
    nbytes = N * C * (4 if f32 else 8)
    try:
        xp = common_buffer(input, PyBUF_SIMPLE, held, &n_held)
        tp = <const int64_t*>common_buffer(target, PyBUF_SIMPLE, held, &n_held)
        fx_index_range(tp, N, &lo, &hi)
        if lo < 0 or hi >= C or (0 <= ignore_index < C and lo <= ignore_index <= hi):
            return None         # ignored or invalid targets: the general way
        if want:
            grad = np.empty(shape, dt) if grad_out is None else grad_out
            gp = common_buffer(grad, PyBUF_WRITABLE, held, &n_held)
            if not common_grad_memory(gp, xp, nbytes, tp, N * 8):
                return None
        mean = red == 1
        scale = 1.0 / <double>N if mean else 1.0
        if red == 0 and not f32:
            loss = np.empty(N, np.float64)
            rows = <double*>common_buffer(loss, PyBUF_WRITABLE, held, &n_held)
        else:
            own = rows = <double*>PyMem_Malloc(N * sizeof(double))
            if rows == NULL:
                raise MemoryError()
        nt = threads_for(N * C)
        with nogil:
            if log_probs and f32:
                _nll_run(<const float*>xp, N, C, tp, rows, <float*>gp, scale, nt)
            elif log_probs:
                _nll_run(<const double*>xp, N, C, tp, rows, <double*>gp, scale, nt)
            elif f32:
                _packed_index_run(<const float*>xp, N, C, tp, NULL, <double>C, eps, rows,
                                  <float*>gp, &scale if want else NULL, 0, nt)
            else:
                _packed_index_run(<const double*>xp, N, C, tp, NULL, <double>C, eps, rows,
                                  <double*>gp, &scale if want else NULL, 0, nt)
        if red != 0:
            total = _pairwise_sum(rows, N)
            loss = common_scalar(total / <double>N if mean else total, dt, _ndarray)
        elif f32:
            loss = np.empty(N, np.float32)
            lp = <float*>common_buffer(loss, PyBUF_WRITABLE, held, &n_held)
            for i in range(N):
                lp[i] = <float>rows[i]
        return (loss, grad) if want else loss
    finally:
        PyMem_Free(own)
        common_release(held, n_held)


cdef void _nll_run(const floating* x, Py_ssize_t rows, Py_ssize_t C, const int64_t* t,
                   double* loss, floating* g, double scale, int n_threads) noexcept nogil:
    # _nll_row over rows that lie back to back (t: no ignored row), as nll_rows runs them.
    cdef Py_ssize_t r
    if n_threads == 1:
        for r in range(rows):
            loss[r] = _nll_row(x + r * C, C, 1, t[r], NULL, g + r * C if g != NULL else NULL, 1,
                               scale)
        return
    for r in prange(rows, schedule="static", num_threads=n_threads):
        loss[r] = _nll_row(x + r * C, C, 1, t[r], NULL, g + r * C if g != NULL else NULL, 1,
                           scale)
