# Shared declarations for every CPU kernel module: the fused storage type and the row loops
# of fx_simd.h. Indices and sizes are Py_ssize_t (64-bit), never int.

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int64_t

ctypedef fused floating:
    float
    double

cdef extern from "fx_simd.h" nogil:
    const char* fx_cpu_kernels()
    const char* fx_cpu_builds()
    void fx_row_fill_f32(float* g, Py_ssize_t n, Py_ssize_t gs, float v)
    void fx_row_fill_f64(double* g, Py_ssize_t n, Py_ssize_t gs, double v)
    void fx_block_index_f32(const float* x, const Py_ssize_t* off, int nrows, int consecutive,
                            Py_ssize_t C, Py_ssize_t sc, const int64_t* t, const double* w,
                            double W, double eps, double* loss, float* g,
                            const Py_ssize_t* goff, int gconsecutive, Py_ssize_t gsc,
                            const double* scale)
    void fx_block_index_f64(const double* x, const Py_ssize_t* off, int nrows, int consecutive,
                            Py_ssize_t C, Py_ssize_t sc, const int64_t* t, const double* w,
                            double W, double eps, double* loss, double* g,
                            const Py_ssize_t* goff, int gconsecutive, Py_ssize_t gsc,
                            const double* scale)
    void fx_block_index_loss_f32(const float* x, const Py_ssize_t* off, int nrows,
                                 int consecutive, Py_ssize_t C, Py_ssize_t sc, const int64_t* t,
                                 const double* w, double W, double eps, double* loss)
    void fx_block_index_loss_f64(const double* x, const Py_ssize_t* off, int nrows,
                                 int consecutive, Py_ssize_t C, Py_ssize_t sc, const int64_t* t,
                                 const double* w, double W, double eps, double* loss)
    void fx_packed_index_f32(const float* x, Py_ssize_t nrows, Py_ssize_t C, const int64_t* t,
                             const double* w, double W, double eps, double* loss, float* g,
                             const double* scale, Py_ssize_t sstep)
    void fx_packed_index_f64(const double* x, Py_ssize_t nrows, Py_ssize_t C,
                             const int64_t* t, const double* w, double W, double eps,
                             double* loss, double* g, const double* scale, Py_ssize_t sstep)
    void fx_packed_transform_f32(int mode, const float* x, Py_ssize_t nrows, Py_ssize_t C,
                                 double* lse, float* out)
    void fx_packed_transform_f64(int mode, const double* x, Py_ssize_t nrows, Py_ssize_t C,
                                 double* lse, double* out)
    void fx_packed_prob_f32(const float* x, Py_ssize_t nrows, Py_ssize_t C, const float* q,
                            const double* w, double eps, double* loss, float* g,
                            const double* scale, Py_ssize_t sstep)
    void fx_packed_prob_f64(const double* x, Py_ssize_t nrows, Py_ssize_t C, const double* q,
                            const double* w, double eps, double* loss, double* g,
                            const double* scale, Py_ssize_t sstep)
    void fx_rows_index_f32(const float* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                           Py_ssize_t sc, const int64_t* t, const double* w, double W,
                           double eps, double* loss, float* g, const Py_ssize_t* goff,
                           Py_ssize_t gsc, const double* scale)
    void fx_rows_index_f64(const double* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                           Py_ssize_t sc, const int64_t* t, const double* w, double W,
                           double eps, double* loss, double* g, const Py_ssize_t* goff,
                           Py_ssize_t gsc, const double* scale)
    void fx_rows_transform_f32(int mode, const float* x, const Py_ssize_t* off, int nrows,
                               Py_ssize_t C, double* lse, float* out, const Py_ssize_t* ooff,
                               Py_ssize_t osc)
    void fx_rows_transform_f64(int mode, const double* x, const Py_ssize_t* off, int nrows,
                               Py_ssize_t C, double* lse, double* out,
                               const Py_ssize_t* ooff, Py_ssize_t osc)
    void fx_block_prob_f32(const float* x, const Py_ssize_t* off, int nrows, int consecutive,
                           Py_ssize_t C, Py_ssize_t sc, const float* q, const Py_ssize_t* qoff,
                           int qconsecutive, Py_ssize_t qsc, const double* w, double eps,
                           double* loss, float* g, const Py_ssize_t* goff, int gconsecutive,
                           Py_ssize_t gsc, const double* scale)
    void fx_block_prob_f64(const double* x, const Py_ssize_t* off, int nrows, int consecutive,
                           Py_ssize_t C, Py_ssize_t sc, const double* q,
                           const Py_ssize_t* qoff, int qconsecutive, Py_ssize_t qsc,
                           const double* w, double eps, double* loss, double* g,
                           const Py_ssize_t* goff, int gconsecutive, Py_ssize_t gsc,
                           const double* scale)
    void fx_rows_prob_f32(const float* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                          Py_ssize_t sc, const float* q, const Py_ssize_t* qoff, Py_ssize_t qsc,
                          const double* w, double eps, double* loss, float* g,
                          const Py_ssize_t* goff, Py_ssize_t gsc, const double* scale)
    void fx_rows_prob_f64(const double* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                          Py_ssize_t sc, const double* q, const Py_ssize_t* qoff,
                          Py_ssize_t qsc, const double* w, double eps, double* loss,
                          double* g, const Py_ssize_t* goff, Py_ssize_t gsc,
                          const double* scale)
    void fx_block_transform_f32(int mode, const float* x, const Py_ssize_t* off, int nrows,
                                int consecutive, Py_ssize_t C, Py_ssize_t sc, double* lse,
                                float* out, const Py_ssize_t* ooff, int oconsecutive,
                                Py_ssize_t osc)
    void fx_block_transform_f64(int mode, const double* x, const Py_ssize_t* off, int nrows,
                                int consecutive, Py_ssize_t C, Py_ssize_t sc, double* lse,
                                double* out, const Py_ssize_t* ooff, int oconsecutive,
                                Py_ssize_t osc)
    enum:
        FX_LSE
        FX_SOFTMAX
        FX_LOG_SOFTMAX
    double fx_bce_logits_run_f32(const float* x, const float* y, const double* w,
                                 Py_ssize_t wstep, const double* pw, Py_ssize_t pwstep,
                                 const double* gsc, Py_ssize_t gstep, float* loss, float* g,
                                 Py_ssize_t n)
    double fx_bce_logits_run_f64(const double* x, const double* y, const double* w,
                                 Py_ssize_t wstep, const double* pw, Py_ssize_t pwstep,
                                 const double* gsc, Py_ssize_t gstep, double* loss, double* g,
                                 Py_ssize_t n)
    double fx_bce_run_f32(const float* p, const float* y, const double* w, Py_ssize_t wstep,
                          const double* gsc, Py_ssize_t gstep, double grad_eps, float* loss,
                          float* g, Py_ssize_t n)
    double fx_bce_run_f64(const double* p, const double* y, const double* w,
                          Py_ssize_t wstep, const double* gsc, Py_ssize_t gstep,
                          double grad_eps, double* loss, double* g, Py_ssize_t n)
    double fx_kl_run_f32(const float* x, const float* t, const double* gsc, Py_ssize_t gstep,
                         int log_target, float* loss, float* g, Py_ssize_t n)
    double fx_kl_run_f64(const double* x, const double* t, const double* gsc,
                         Py_ssize_t gstep, int log_target, double* loss, double* g,
                         Py_ssize_t n)
    double fx_sigmoid(double x)
    void fx_index_range(const int64_t* t, Py_ssize_t n, int64_t* lo, int64_t* hi)


# Fused wrappers: one name per row loop, resolved at compile time by the storage type.

cdef inline void row_fill(floating* g, Py_ssize_t n, Py_ssize_t gs, double v) noexcept nogil:
    if floating is float:
        fx_row_fill_f32(g, n, gs, <float>v)
    else:
        fx_row_fill_f64(g, n, gs, v)


cdef inline void block_index(const floating* x, const Py_ssize_t* off, int nrows,
                             int consecutive, Py_ssize_t C, Py_ssize_t sc, const int64_t* t,
                             const double* w, double W, double eps, double* loss, floating* g,
                             const Py_ssize_t* goff, int gconsecutive, Py_ssize_t gsc,
                             const double* scale) noexcept nogil:
    if floating is float:
        fx_block_index_f32(x, off, nrows, consecutive, C, sc, t, w, W, eps, loss, g, goff,
                           gconsecutive, gsc, scale)
    else:
        fx_block_index_f64(x, off, nrows, consecutive, C, sc, t, w, W, eps, loss, g, goff,
                           gconsecutive, gsc, scale)


cdef inline void block_index_loss(const floating* x, const Py_ssize_t* off, int nrows,
                                  int consecutive, Py_ssize_t C, Py_ssize_t sc,
                                  const int64_t* t, const double* w, double W, double eps,
                                  double* loss) noexcept nogil:
    if floating is float:
        fx_block_index_loss_f32(x, off, nrows, consecutive, C, sc, t, w, W, eps, loss)
    else:
        fx_block_index_loss_f64(x, off, nrows, consecutive, C, sc, t, w, W, eps, loss)


cdef inline void packed_index(const floating* x, Py_ssize_t nrows, Py_ssize_t C,
                              const int64_t* t, const double* w, double W, double eps,
                              double* loss, floating* g, const double* scale,
                              Py_ssize_t sstep) noexcept nogil:
    if floating is float:
        fx_packed_index_f32(x, nrows, C, t, w, W, eps, loss, g, scale, sstep)
    else:
        fx_packed_index_f64(x, nrows, C, t, w, W, eps, loss, g, scale, sstep)


cdef inline void packed_transform(int mode, const floating* x, Py_ssize_t nrows, Py_ssize_t C,
                                  double* lse, floating* out) noexcept nogil:
    if floating is float:
        fx_packed_transform_f32(mode, x, nrows, C, lse, out)
    else:
        fx_packed_transform_f64(mode, x, nrows, C, lse, out)


cdef inline void packed_prob(const floating* x, Py_ssize_t nrows, Py_ssize_t C,
                             const floating* q, const double* w, double eps, double* loss,
                             floating* g, const double* scale, Py_ssize_t sstep) noexcept nogil:
    if floating is float:
        fx_packed_prob_f32(x, nrows, C, q, w, eps, loss, g, scale, sstep)
    else:
        fx_packed_prob_f64(x, nrows, C, q, w, eps, loss, g, scale, sstep)


cdef inline void rows_index(const floating* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                            Py_ssize_t sc, const int64_t* t, const double* w, double W,
                            double eps, double* loss, floating* g, const Py_ssize_t* goff,
                            Py_ssize_t gsc, const double* scale) noexcept nogil:
    if floating is float:
        fx_rows_index_f32(x, off, nrows, C, sc, t, w, W, eps, loss, g, goff, gsc, scale)
    else:
        fx_rows_index_f64(x, off, nrows, C, sc, t, w, W, eps, loss, g, goff, gsc, scale)


cdef inline void block_transform(int mode, const floating* x, const Py_ssize_t* off,
                                 int nrows, int consecutive, Py_ssize_t C, Py_ssize_t sc,
                                 double* lse, floating* out, const Py_ssize_t* ooff,
                                 int oconsecutive, Py_ssize_t osc) noexcept nogil:
    if floating is float:
        fx_block_transform_f32(mode, x, off, nrows, consecutive, C, sc, lse, out, ooff,
                               oconsecutive, osc)
    else:
        fx_block_transform_f64(mode, x, off, nrows, consecutive, C, sc, lse, out, ooff,
                               oconsecutive, osc)


cdef inline void block_prob(const floating* x, const Py_ssize_t* off, int nrows,
                            int consecutive, Py_ssize_t C, Py_ssize_t sc, const floating* q,
                            const Py_ssize_t* qoff, int qconsecutive, Py_ssize_t qsc,
                            const double* w, double eps, double* loss, floating* g,
                            const Py_ssize_t* goff, int gconsecutive, Py_ssize_t gsc,
                            const double* scale) noexcept nogil:
    if floating is float:
        fx_block_prob_f32(x, off, nrows, consecutive, C, sc, q, qoff, qconsecutive, qsc, w, eps,
                          loss, g, goff, gconsecutive, gsc, scale)
    else:
        fx_block_prob_f64(x, off, nrows, consecutive, C, sc, q, qoff, qconsecutive, qsc, w, eps,
                          loss, g, goff, gconsecutive, gsc, scale)


cdef inline void rows_prob(const floating* x, const Py_ssize_t* off, int nrows, Py_ssize_t C,
                           Py_ssize_t sc, const floating* q, const Py_ssize_t* qoff,
                           Py_ssize_t qsc, const double* w, double eps, double* loss,
                           floating* g, const Py_ssize_t* goff, Py_ssize_t gsc,
                           const double* scale) noexcept nogil:
    if floating is float:
        fx_rows_prob_f32(x, off, nrows, C, sc, q, qoff, qsc, w, eps, loss, g, goff, gsc, scale)
    else:
        fx_rows_prob_f64(x, off, nrows, C, sc, q, qoff, qsc, w, eps, loss, g, goff, gsc, scale)


cdef inline void rows_transform(int mode, const floating* x, const Py_ssize_t* off, int nrows,
                                Py_ssize_t C, double* lse, floating* out,
                                const Py_ssize_t* ooff, Py_ssize_t osc) noexcept nogil:
    if floating is float:
        fx_rows_transform_f32(mode, x, off, nrows, C, lse, out, ooff, osc)
    else:
        fx_rows_transform_f64(mode, x, off, nrows, C, lse, out, ooff, osc)


# Rows of an (outer, C, inner) view, a group at a time: rows are numbered r = i * inner + j,
# and their classes are adjacent when the class stride is 1. A kernel call takes ROW_GROUP
# float rows (double: half as many); fx_block_index (a row in each lane) takes BLOCK_ROWS for
# the loss alone, whose per-row logs it then takes for two registers' rows at once
# (fx_block.inc). The block kernels run a group a register's lanes at a time. Rows that lie
# back to back (C order, C <= BLOCK_MAX_C), with class-index targets, with probability targets
# laid out alike, or through a transform with an output laid out alike, skip the groups:
# fx_packed_index, fx_packed_prob and fx_packed_transform take each thread's run of rows in
# one call (fx_packed.inc).

cdef enum:
    BLOCK_ROWS = 32         # float rows per fx_block_index call for the loss alone (double: half)
    ROW_GROUP = 16          # float rows per call of every other kernel (double: half)
    STRIP_ROWS = 64         # float rows per call for consecutive rows (double: half)


# Rows of at most BLOCK_MAX_C classes go to the block kernels even when their classes are
# adjacent: one row in flight would wait on the exponential's latency, and a row's fixed
# costs (reductions, a log, calls) outweigh its few vectors. It is the size of the blocks'
# on-stack tile (FX_TILE_C in fx_block.inc). Measured: docs/performance.md.
cdef enum:
    BLOCK_MAX_C = 64


cdef inline bint use_blocks(Py_ssize_t C, Py_ssize_t s, Py_ssize_t inner) noexcept nogil:
    # Short rows, and rows whose classes are not adjacent (Fortran order, strided views, the
    # (N, C, d1...dK) layout, whose rows are adjacent along inner), run a lane per row.
    return s != 1 or C <= BLOCK_MAX_C


cdef inline bint use_strips(Py_ssize_t inner, Py_ssize_t so, Py_ssize_t si) noexcept nogil:
    # Whether the rows of an (outer, C, inner) view (element strides so and si) are
    # consecutive elements (Fortran order, the (N, C, d) layout): their groups take STRIP_ROWS
    # rows, which fx_block.inc copies into a strip when the classes are many or their stride
    # crowds the cache sets (fx_strip).
    return si == 1 if inner > 1 else so == 1


cdef inline bint packed_rows(Py_ssize_t C, Py_ssize_t inner, Py_ssize_t so, Py_ssize_t sc,
                             Py_ssize_t si) noexcept nogil:
    # Whether the rows of an (outer, C, inner) view (element strides so, sc, si) lie back to
    # back, row r = i * inner + j at r * C, short enough for fx_packed.inc: a C-ordered
    # (N, C) array, or the (N, C, d) view of C-ordered class-last (N, d, C) logits.
    return sc == 1 and C <= BLOCK_MAX_C and (inner == 1 or si == C) and so == inner * C


cdef inline Py_ssize_t packed_share(Py_ssize_t rows, int n_threads) noexcept nogil:
    # Each thread's run of rows through fx_packed.inc: an equal share, rounded up to a
    # multiple of two float blocks.
    return ((rows + n_threads - 1) // n_threads + 31) // 32 * 32


cdef inline bint block_offsets(Py_ssize_t r0, int nrows, Py_ssize_t inner, Py_ssize_t so,
                               Py_ssize_t si, Py_ssize_t* off) noexcept nogil:
    # off[k]: the element offset of row r0 + k (k < nrows) in a view whose outer and inner
    # strides are so and si elements; returns whether the rows are consecutive elements.
    # (i, j) steps through the rows without a division per row, and (N, C) rows (inner == 1)
    # skip the bookkeeping: at C = 10 either would cost a sixth of the kernel.
    cdef Py_ssize_t i, j
    cdef int k
    cdef bint consecutive = 1
    if inner == 1:
        for k in range(nrows):
            off[k] = (r0 + k) * so
        return so == 1
    i = r0 // inner
    j = r0 - i * inner
    for k in range(nrows):
        off[k] = i * so + j * si
        consecutive = consecutive and off[k] == off[0] + k
        j = j + 1
        if j == inner:
            j = 0
            i = i + 1
    return consecutive


cdef inline double bce_logits_run(const floating* x, const floating* y, const double* w,
                                  Py_ssize_t wstep, const double* pw, Py_ssize_t pwstep,
                                  const double* gsc, Py_ssize_t gstep, floating* loss,
                                  floating* g, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fx_bce_logits_run_f32(x, y, w, wstep, pw, pwstep, gsc, gstep, loss, g, n)
    else:
        return fx_bce_logits_run_f64(x, y, w, wstep, pw, pwstep, gsc, gstep, loss, g, n)


cdef inline double bce_run(const floating* p, const floating* y, const double* w,
                           Py_ssize_t wstep, const double* gsc, Py_ssize_t gstep,
                           double grad_eps, floating* loss, floating* g,
                           Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fx_bce_run_f32(p, y, w, wstep, gsc, gstep, grad_eps, loss, g, n)
    else:
        return fx_bce_run_f64(p, y, w, wstep, gsc, gstep, grad_eps, loss, g, n)


cdef inline double kl_run(const floating* x, const floating* t, const double* gsc,
                          Py_ssize_t gstep, int log_target, floating* loss, floating* g,
                          Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fx_kl_run_f32(x, t, gsc, gstep, log_target, loss, g, n)
    else:
        return fx_kl_run_f64(x, t, gsc, gstep, log_target, loss, g, n)




# Work split shared by the element-wise losses, whose views are (d0, d1, d2). A "unit" is a
# fixed block of about ELEMENTWISE_BLOCK elements: a slice of one row when rows are long, or a
# run of whole rows when they are short. The split depends on the shape only, never on the
# thread count, and each unit's partial sum is accumulated sequentially and the partials are
# added in unit order, so the total is bit-identical for any number of threads.

cdef enum:
    ELEMENTWISE_BLOCK = 4096


cdef inline Py_ssize_t n_units(Py_ssize_t rows, Py_ssize_t n2) noexcept nogil:
    cdef Py_ssize_t rpu
    if rows == 0 or n2 == 0:
        return 0
    if n2 > ELEMENTWISE_BLOCK:
        return rows * ((n2 + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK)
    rpu = ELEMENTWISE_BLOCK // n2
    return (rows + rpu - 1) // rpu


cdef inline Py_ssize_t unit_row0(Py_ssize_t u, Py_ssize_t n2) noexcept nogil:
    # First row of unit u.
    if n2 > ELEMENTWISE_BLOCK:
        return u // ((n2 + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK)
    return u * (ELEMENTWISE_BLOCK // n2)


cdef inline Py_ssize_t unit_row1(Py_ssize_t u, Py_ssize_t rows, Py_ssize_t n2) noexcept nogil:
    # One past the last row of unit u.
    cdef Py_ssize_t r1
    if n2 > ELEMENTWISE_BLOCK:
        return unit_row0(u, n2) + 1
    r1 = (u + 1) * (ELEMENTWISE_BLOCK // n2)
    return r1 if r1 < rows else rows


cdef inline Py_ssize_t unit_col0(Py_ssize_t u, Py_ssize_t n2) noexcept nogil:
    # First column of unit u.
    cdef Py_ssize_t per
    if n2 > ELEMENTWISE_BLOCK:
        per = (n2 + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
        return (u - (u // per) * per) * ELEMENTWISE_BLOCK
    return 0


cdef inline Py_ssize_t unit_col1(Py_ssize_t u, Py_ssize_t n2) noexcept nogil:
    # One past the last column of unit u.
    cdef Py_ssize_t k1 = unit_col0(u, n2) + ELEMENTWISE_BLOCK
    return k1 if k1 < n2 else n2


# Elements a binary or kl_div run copies to the stack at a time where its layout is not one
# the 8-lane loops take (_binary.pyx, _kldiv.pyx), and the copies: a[i, j, k:k + n] into
# dst (NULL: not wanted; a is of the input's dtype or a float64 weight or scale), and the
# chunk's losses and gradient back where wanted.
cdef enum:
    CHUNK = 256


cdef inline void chunk_in(const floating[:, :, :] a, Py_ssize_t i, Py_ssize_t j, Py_ssize_t k,
                          Py_ssize_t n, floating* dst) noexcept nogil:
    cdef Py_ssize_t m
    if dst != NULL:
        for m in range(n):
            dst[m] = a[i, j, k + m]


cdef inline void chunk_out(floating[:, :, :] loss, floating[:, :, :] grad, Py_ssize_t i,
                           Py_ssize_t j, Py_ssize_t k, Py_ssize_t n, const floating* lb,
                           const floating* gb) noexcept nogil:
    cdef Py_ssize_t m
    for m in range(n):
        if lb != NULL:
            loss[i, j, k + m] = lb[m]
        if gb != NULL:
            grad[i, j, k + m] = gb[m]


cdef inline bint unit_runs(const floating[:, :, :] x, const floating[:, :, :] y,
                           const double[:, :, :] gscale, floating[:, :, :] loss,
                           floating[:, :, :] grad, bint want_loss, bint want_grad) noexcept:
    # The innermost axis is a run fx_binary.inc's 8-lane loops can take: unit stride for the
    # arrays of the input's dtype, unit or zero (broadcast) for the float64 gradient scale.
    cdef Py_ssize_t fs = sizeof(floating)
    return (x.strides[2] == fs and y.strides[2] == fs
            and (not want_grad or (gscale.strides[2] in (0, 8) and grad.strides[2] == fs))
            and (not want_loss or loss.strides[2] == fs))


# Checks shared by the shortcuts that take the most common calls past the Python layer
# (_xent.common_index, _binary.common_logits). Each tells whether an argument is one the
# shortcut can take at a glance; none raises for a bad one (the general way does).

cdef inline int common_reduction(object reduction) noexcept:
    # 0 "none", 1 "mean", 2 "sum"; -1 for anything else (not a str, or another str)
    if type(reduction) is not str:
        return -1
    if reduction == "none":
        return 0
    if reduction == "mean":
        return 1
    if reduction == "sum":
        return 2
    return -1


cdef inline int common_gradient(object return_grad, object grad_out,
                                object input) except -2:
    # 1 for return_grad True, 0 for False; -1 (decline) for a return_grad that is not a
    # bool, or a grad_out other than None or, with return_grad, an array of the same type as
    # `input` (the caller's checked np.ndarray), its dtype object and shape, C-ordered and
    # writeable
    if return_grad is not True and return_grad is not False:
        return -1
    if grad_out is None:
        return 1 if return_grad else 0
    if (return_grad and type(grad_out) is type(input) and grad_out.dtype is input.dtype
            and grad_out.shape == input.shape and grad_out.flags.c_contiguous
            and grad_out.flags.writeable):
        return 1
    return -1


cdef inline bint common_grad_memory(const void* g, const void* x, Py_ssize_t nbytes,
                                    const void* t, Py_ssize_t tbytes) noexcept nogil:
    # Whether a gradient of nbytes at g is the input at x itself or shares no byte with it
    # or with the target's tbytes at t (grad_out's aliasing rule, _validate.grad_out)
    cdef const char* gc = <const char*>g
    cdef const char* xc = <const char*>x
    cdef const char* tc = <const char*>t
    if gc != xc and gc < xc + nbytes and xc < gc + nbytes:
        return False
    return not (gc < tc + tbytes and tc < gc + nbytes)


cdef inline void* common_buffer(object a, int flags, Py_buffer* held,
                                int* n_held) except NULL:
    # The memory of a non-empty C-ordered array, its buffer appended to held[n_held] until
    # common_release
    PyObject_GetBuffer(a, &held[n_held[0]], flags)
    n_held[0] += 1
    return held[n_held[0] - 1].buf


cdef inline void common_release(Py_buffer* held, int n_held) noexcept:
    cdef int k
    for k in range(n_held):
        PyBuffer_Release(&held[k])


cdef inline object common_scalar(double value, object dtype, object ndarray):
    # The 0-d result of "mean" or "sum": a new ndarray of float32 or float64 `dtype` holding
    # `value`, cast as NumPy casts (to +-inf past float32's range), without a warning
    cdef Py_buffer b
    out = ndarray((), dtype)
    PyObject_GetBuffer(out, &b, PyBUF_WRITABLE)
    if dtype.itemsize == 4:
        (<float*>b.buf)[0] = <float>value
    else:
        (<double*>b.buf)[0] = value
    PyBuffer_Release(&b)
    return out
