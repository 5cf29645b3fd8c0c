"""float32 <-> float16 and bfloat16 conversions of whole buffers on every thread.

The 16-bit inputs run the float32 kernels: widened once, their results rounded back once.
NumPy's and ml_dtypes' casts run on one thread, and NumPy's float32 -> float16 cast takes
about 60 ns for each value below float16's smallest normal (a softmax over many classes is
mostly such values). ``fx_half.h`` gives the same bits at the same speed for every value.
Buffers are 1-D, contiguous, and never overlap (checked by the caller, ``_half.py``).
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint16_t

cdef extern from "fx_half.h" nogil:
    void fx_narrow_f16(const float* src, uint16_t* dst, int64_t n)
    void fx_narrow_bf16(const float* src, uint16_t* dst, int64_t n)
    void fx_widen_f16(const uint16_t* src, float* dst, int64_t n)
    void fx_widen_bf16(const uint16_t* src, float* dst, int64_t n)

cdef enum:
    PIECE = 1 << 16     # elements a task converts: 256 KB of float32


cdef void _convert(int op, const char* src, char* dst, int64_t n) noexcept nogil:
    if op == 0:
        fx_narrow_f16(<const float*>src, <uint16_t*>dst, n)
    elif op == 1:
        fx_narrow_bf16(<const float*>src, <uint16_t*>dst, n)
    elif op == 2:
        fx_widen_f16(<const uint16_t*>src, <float*>dst, n)
    else:
        fx_widen_bf16(<const uint16_t*>src, <float*>dst, n)


cdef void _in_pieces(int op, const char* src, char* dst, int64_t n, int n_threads) noexcept:
    # op 0, 1: float32 -> float16, bfloat16; 2, 3: float16, bfloat16 -> float32
    cdef int64_t parts = (n + PIECE - 1) // PIECE, b, lo
    cdef int src_size = 4 if op < 2 else 2
    cdef int dst_size = 6 - src_size
    for b in prange(parts, nogil=True, schedule="static", num_threads=max(1, n_threads)):
        lo = b * PIECE
        _convert(op, src + lo * src_size, dst + lo * dst_size, min(PIECE, n - lo))


def narrow(const float[::1] src, uint16_t[::1] dst, bint bfloat16, int n_threads):
    """Round float32 `src` into the 16-bit bit patterns `dst` (float16 or bfloat16)."""
    if src.shape[0]:
        _in_pieces(bfloat16, <const char*>&src[0], <char*>&dst[0], src.shape[0], n_threads)


def widen(const uint16_t[::1] src, float[::1] dst, bint bfloat16, int n_threads):
    """The float32 values of the 16-bit bit patterns `src` (float16 or bfloat16), into `dst`."""
    if src.shape[0]:
        _in_pieces(2 + bfloat16, <const char*>&src[0], <char*>&dst[0], src.shape[0],
                   n_threads)
