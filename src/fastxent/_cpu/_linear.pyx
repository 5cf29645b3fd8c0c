"""Cross entropy of a linear model, fused with its two matrix products, block by block.

Design
a) Problem: logits Z = X Wᵀ + b for a C-contiguous X (N, p), W (K, p), b (K,); class-index
   targets y (N,) in [0, K); s (N,) the weight of each row in the objective. Outputs: the loss
   of each row (softmax cross entropy, label smoothing eps) and the gradient of Σ sᵢ ℓᵢ with
   respect to W and b, as one partial sum per chunk of rows.
b) Passes: the rows of a chunk go in blocks of B rows, B chosen by the caller so that a block
   of Z (B × K) and of X (B × p) stay in cache: (1) Z_blk = b + X_blk Wᵀ (GEMM); (2) each row
   of Z_blk goes through the fused softmax kernels of _xent.pyx (one exponential per logit),
   which overwrites it with G = s (p − q); (3) gW += G_blkᵀ X_blk (GEMM) while X_blk is still in
   cache, and gb += the rows of G. Z never reaches main memory: X is read once per objective
   evaluation, where three separate calls read X twice and write and read all of Z three times.
c) Threads: the chunks are a fixed partition of the rows that depends on the problem's shape
   only, never on the thread count; each owns its Z buffer and its partial gradients, chunks
   run in a prange with a static schedule and the caller sums the partials in chunk order, so
   results are bit-identical for any thread count. BLAS runs single-threaded inside each
   OpenMP thread (the caller limits BLAS to one thread): one thread pool owns the cores. (Two
   pools taking turns on the same cores spin against each other: 1.8× slower, measured.)
d) BLAS: the Fortran ?gemm of SciPy's BLAS through scipy.linalg.cython_blas's function
   pointers, handed over at run time (init_blas), so building fastxent needs no SciPy. A
   row-major (r, c) array is the column-major (c, r) transpose: Z_blkᵀ = W X_blkᵀ is
   gemm("T", "N", K, B, p) and gWᵀ += X_blkᵀ G_blk is gemm("N", "T", p, K, B).
"""
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython.parallel cimport prange
from libc.stdint cimport int64_t

from ._common cimport floating, block_index, rows_index, BLOCK_ROWS, ROW_GROUP, BLOCK_MAX_C

ctypedef void (*dgemm_t)(char* ta, char* tb, int* m, int* n, int* k, double* alpha,
                         double* a, int* lda, double* b, int* ldb, double* beta, double* c,
                         int* ldc) noexcept nogil
ctypedef void (*sgemm_t)(char* ta, char* tb, int* m, int* n, int* k, float* alpha,
                         float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                         int* ldc) noexcept nogil

cdef dgemm_t _dgemm = NULL
cdef sgemm_t _sgemm = NULL


def init_blas(dgemm_capsule, sgemm_capsule):
    """Take ?gemm from scipy.linalg.cython_blas.__pyx_capi__ (PyCapsules)."""
    global _dgemm, _sgemm
    _dgemm = <dgemm_t>PyCapsule_GetPointer(dgemm_capsule, PyCapsule_GetName(dgemm_capsule))
    _sgemm = <sgemm_t>PyCapsule_GetPointer(sgemm_capsule, PyCapsule_GetName(sgemm_capsule))


def blas_ready():
    """True once init_blas has run."""
    return _dgemm != NULL and _sgemm != NULL


cdef inline void _gemm(char ta, char tb, int m, int n, int k, const floating* a, int lda,
                       const floating* b, int ldb, floating* c, int ldc) noexcept nogil:
    # c = op(a) op(b) + c, column-major. BLAS takes non-const pointers; it reads a and b only.
    cdef floating one = 1
    if floating is float:
        _sgemm(&ta, &tb, &m, &n, &k, &one, <float*>a, &lda, <float*>b, &ldb, &one, c, &ldc)
    else:
        _dgemm(&ta, &tb, &m, &n, &k, &one, <double*>a, &lda, <double*>b, &ldb, &one, c, &ldc)


cdef inline void _index_zrows(floating* z, Py_ssize_t K, const int64_t[::1] y, double eps,
                              const double[::1] s, double[::1] loss, Py_ssize_t r,
                              Py_ssize_t i0, Py_ssize_t left) noexcept nogil:
    # Rows i0, i0 + 1, ... of the block (sample r first, at most a kernel's group) through the
    # fused softmax cross entropy of _xent.pyx, in place: each row becomes s_i (p - q).
    cdef Py_ssize_t off[BLOCK_ROWS]
    cdef int nrows = <int>(ROW_GROUP if floating is float else ROW_GROUP // 2), k
    if left < nrows:
        nrows = <int>left
    for k in range(nrows):
        off[k] = (i0 + k) * K
    if K <= BLOCK_MAX_C:
        block_index(z, off, nrows, 0, K, 1, &y[r], NULL, <double>K, eps, &loss[r], z, off, 0,
                    1, &s[r])
    else:
        rows_index(z, off, nrows, K, 1, &y[r], NULL, <double>K, eps, &loss[r], z, off, 1,
                   &s[r])


cdef void _chunk(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
                 const int64_t[::1] y, double eps, const double[::1] s, double[::1] loss,
                 floating[:, :, ::1] gW, double[:, ::1] gb, floating[:, ::1] zbuf,
                 Py_ssize_t block_rows, Py_ssize_t c, Py_ssize_t r0,
                 Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t K = W.shape[0], p = X.shape[1], r = r0, nb, i, j
    cdef floating* z = &zbuf[c, 0]
    cdef floating* zr
    cdef double* gbc = &gb[c, 0]
    while r < r1:
        nb = block_rows if r1 - r > block_rows else r1 - r
        for i in range(nb):
            zr = z + i * K
            for j in range(K):
                zr[j] = b[j]
        _gemm(c'T', c'N', <int>K, <int>nb, <int>p, &W[0, 0], <int>p, &X[r, 0], <int>p,
              z, <int>K)
        i = 0
        while i < nb:
            _index_zrows(z, K, y, eps, s, loss, r + i, i, nb - i)
            i += ROW_GROUP if floating is float else ROW_GROUP // 2
        for i in range(nb):
            zr = z + i * K
            for j in range(K):
                gbc[j] += zr[j]
        _gemm(c'N', c'T', <int>p, <int>K, <int>nb, &X[r, 0], <int>p, z, <int>K,
              &gW[c, 0, 0], <int>p)
        r += nb


def index_linear(const floating[:, ::1] X,       # IN  (N, p) samples
                 const floating[:, ::1] W,       # IN  (K, p) coefficients
                 const floating[::1] b,          # IN  (K,) intercepts
                 const int64_t[::1] y,           # IN  (N,) class indices in [0, K)
                 double eps,                     # label smoothing
                 const double[::1] s,            # IN  (N,) weight of each row
                 double[::1] loss,               # OUT (N,) loss of each row
                 floating[:, :, ::1] gW,         # OUT (chunks, K, p) zeroed, partial ∂/∂W
                 double[:, ::1] gb,              # OUT (chunks, K) zeroed, partial ∂/∂b
                 floating[:, ::1] zbuf,          # scratch (chunks, block_rows * K)
                 Py_ssize_t block_rows, int n_threads):
    """Loss per row and per-chunk partial gradients of a linear softmax model (see Design)."""
    cdef Py_ssize_t N = X.shape[0], chunks = gW.shape[0]
    cdef Py_ssize_t per_chunk = (N + chunks - 1) // chunks, c, r0, r1
    for c in prange(chunks, nogil=True, schedule="static", num_threads=n_threads):
        r0 = c * per_chunk
        r1 = r0 + per_chunk
        if r1 > N:
            r1 = N
        if r0 < r1:
            _chunk(X, W, b, y, eps, s, loss, gW, gb, zbuf, block_rows, c, r0, r1)
