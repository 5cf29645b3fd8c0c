/* fastxent's device library: storage types, conversions and the per-row / per-element maths
 * of every loss, written once as host+device functions.
 *
 * Header-free on purpose: the same text compiles under NVRTC (CuPy's RawModule, no CUDA
 * include path needed), under nvcc (the CI compile check) and under g++ (the CI host test,
 * tests/test_cuda_sources.py, which runs these functions against a float64 reference).
 *
 * Arithmetic: float for float32 / float16 / bfloat16 storage, double for float64 ("acc_t").
 * The formulas are those of the CPU kernels (_cpu/_xent.pyx's design block, fx_binary.inc,
 * _kldiv.pyx), so both backends give PyTorch's answers, non-finite cases included.
 */
#ifndef FX_DEVICE_CUH
#define FX_DEVICE_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FX_HD __host__ __device__ __forceinline__
#define FX_DEV __device__ __forceinline__
#else
#define FX_HD inline
#define FX_DEV inline
#endif

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

namespace fx {

/* 16-bit storage types as their bits: no cuda_fp16.h / cuda_bf16.h needed. */
struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

template <class T> struct acc_of { typedef float type; };
template <> struct acc_of<double> { typedef double type; };

FX_HD float f32_from_bits(unsigned int b) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(b);
#else
    float f;
    __builtin_memcpy(&f, &b, sizeof f);
    return f;
#endif
}

FX_HD unsigned int bits_from_f32(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    unsigned int b;
    __builtin_memcpy(&b, &f, sizeof b);
    return b;
#endif
}

FX_HD float nan_f() { return f32_from_bits(0x7fc00000u); }
FX_HD float inf_f() { return f32_from_bits(0x7f800000u); }

/* bfloat16 <-> float: the top half of the float's bits; rounding to nearest even, NaN kept
 * quiet (the integer trick would carry a NaN's mantissa into the exponent). From sm_80 on,
 * the device rounds with its own instruction (the same values; a NaN becomes the canonical
 * one): the integer form cost six or seven instructions a value, in every gradient pass. */
FX_HD float widen(bf16 v) { return f32_from_bits((unsigned int)v.bits << 16); }

FX_HD bf16 to_bf16(float f) {
    bf16 r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
#else
    const unsigned int u = bits_from_f32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (unsigned short)((u >> 16) | 0x40u);
    } else {
        r.bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
#endif
    return r;
}

/* float16 <-> float: the hardware conversion on the device, IEEE round-to-nearest-even in
 * software on the host (the host test checks the two agree through NumPy's float16). */
FX_HD float widen(f16 v) {
#if defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
#else
    const unsigned int sign = (unsigned int)(v.bits & 0x8000u) << 16;
    const unsigned int exp = (v.bits >> 10) & 0x1fu, man = v.bits & 0x3ffu;
    if (exp == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return f32_from_bits(sign);
    /* subnormal: man * 2^-24, exact in float */
    const float mag = (float)man * f32_from_bits(0x33800000u);
    return sign ? -mag : mag;
#endif
}

FX_HD f16 to_f16(float f) {
    f16 r;
#if defined(__CUDA_ARCH__)
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
#else
    const unsigned int u = bits_from_f32(f);
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int a = u & 0x7fffffffu;
    if (a > 0x7f800000u) { r.bits = (unsigned short)(sign | 0x7e00u); return r; }
    if (a >= 0x477ff000u) { r.bits = (unsigned short)(sign | 0x7c00u); return r; }  /* >= 65520 */
    if (a < 0x38800000u) {                       /* below 2^-14: subnormal or zero */
        const float mag = f32_from_bits(a) * f32_from_bits(0x4b800000u);   /* * 2^24 */
        /* mag < 1024 is exact in float; round half to even like the hardware */
        unsigned int m = (unsigned int)mag;
        const float frac = mag - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
        r.bits = (unsigned short)(sign | m);
        return r;
    }
    const unsigned int rounded = a + 0x0fffu + ((a >> 13) & 1u);
    r.bits = (unsigned short)(sign | ((rounded - 0x38000000u) >> 13));
#endif
    return r;
}

FX_HD float widen(float v) { return v; }
FX_HD double widen(double v) { return v; }

template <class T> struct narrow_to;
template <> struct narrow_to<float> { FX_HD static float from(float v) { return v; } };
template <> struct narrow_to<double> { FX_HD static double from(double v) { return v; } };
template <> struct narrow_to<bf16> { FX_HD static bf16 from(float v) { return to_bf16(v); } };
template <> struct narrow_to<f16> { FX_HD static f16 from(float v) { return to_f16(v); } };

/* A double to float rounded to odd: truncated toward zero, its last bit set when inexact.
 * Rounding that to a 16-bit type gives the double's own nearest value: float keeps more
 * than two bits beyond either 16-bit type, so no second rounding can land on a tie. */
FX_HD float to_float_odd(double d) {
    float f = (float)d;
    if ((double)f != d && d == d) {
        unsigned int b = bits_from_f32(f);
        if (fabs((double)f) > fabs(d)) b -= 1;     /* rounded away from zero: one step back */
        f = f32_from_bits(b | 1u);
    }
    return f;
}

/* A float64 result (a reduced loss) in the output's dtype, rounded once. */
template <class T> FX_HD T narrow_double(double v) { return narrow_to<T>::from(to_float_odd(v)); }
template <> FX_HD float narrow_double<float>(double v) { return (float)v; }
template <> FX_HD double narrow_double<double>(double v) { return v; }

/* v rounded once to the dtype coded `code` (_cuda_sources.DTYPE_CODES: 0 float32, 1 float64,
 * 2 float16, 3 bfloat16), stored at out. */
FX_HD void store_double_as(int code, void* out, double v) {
    if (code == 0) *(float*)out = narrow_double<float>(v);
    else if (code == 1) *(double*)out = v;
    else if (code == 2) *(f16*)out = narrow_double<f16>(v);
    else *(bf16*)out = narrow_double<bf16>(v);
}

/* Overloads so that one template body serves float and double arithmetic. */
FX_HD float fx_exp(float v) { return expf(v); }
FX_HD double fx_exp(double v) { return exp(v); }
/* exp(v) as 2^(v log2 e) by the device's approximate exp2, for rows stored in 16 bits: six
 * instructions, subnormal results included, where expf takes nine (sm_90). Its relative
 * error, about |v| 2^-24 from rounding v log2 e plus the instruction's own 2^-22, lies far
 * below the 2^-9 and 2^-12 of a bfloat16 or float16 result; a row's largest term, exp(0),
 * stays exactly 1 (CUDA's own expf(0) = 1 rests on the same exp2 of 0). float32 and float64
 * rows keep fx_exp. */
FX_HD float exp_short(float v) {
#if defined(__CUDA_ARCH__)
    float r;
    asm("ex2.approx.f32 %0, %1;" : "=f"(r) : "f"(v * 1.44269504f));
    return r;
#else
    return exp2f(v * 1.44269504f);
#endif
}

/* exp for results rounded to 16 bits (SHORT: exp_short) or not (fx_exp): the row passes of
 * a 16-bit storage type and the element-wise losses of one. */
template <bool SHORT, class A> FX_HD A exp_for(A v) {
    if constexpr (SHORT) return exp_short(v);
    else return fx_exp(v);
}
FX_HD float fx_log(float v) { return logf(v); }
FX_HD double fx_log(double v) { return log(v); }
FX_HD float fx_abs(float v) { return fabsf(v); }
FX_HD double fx_abs(double v) { return fabs(v); }
/* The larger of two values, a NaN never winning: max over a row skips NaN logits (they
 * reach the sum through exp), as the CPU kernels do. */
FX_HD float fx_max(float a, float b) { return fmaxf(a, b); }
FX_HD double fx_max(double a, double b) { return fmax(a, b); }
FX_HD bool fx_isnan(float v) { return v != v; }
FX_HD bool fx_isnan(double v) { return v != v; }
FX_HD bool fx_isinf(double v) { return v == v && v - v != v - v; }

/* ---- vector access -------------------------------------------------------------------
 * A group: the elements of T one 16-byte vector access moves, for float32 (4) and the
 * 16-bit types (8); float64 takes 4, 32 bytes in two 16-byte accesses. The row passes
 * (rows.cu) and the element-wise losses (elementwise.cu) move their unit-stride runs by
 * groups from the first 16-byte boundary on. */
template <class T> constexpr int GROUP = sizeof(T) == 2 ? 8 : 4;

template <class T> struct alignas(16) Vec {
    T v[GROUP<T>];
};

template <class T> FX_HD Vec<T> load_vec(const T* p) {
    Vec<T> r;
#if defined(__CUDA_ARCH__)
    r = *reinterpret_cast<const Vec<T>*>(p);           /* ld.global.v4, ld.shared.v4 */
#else
    /* the host test stands in for the device: a misaligned vector access would fault there */
    if (((unsigned long long)p % alignof(Vec<T>)) != 0) __builtin_trap();
    __builtin_memcpy(&r, p, sizeof r);
#endif
    return r;
}

template <class T> FX_HD void store_vec(T* p, const Vec<T>& v) {
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<Vec<T>*>(p) = v;
#else
    if (((unsigned long long)p % alignof(Vec<T>)) != 0) __builtin_trap();
    __builtin_memcpy(p, &v, sizeof v);
#endif
}

/* How a run of n elements of T at stride s splits into vector accesses: [0, head) one at a
 * time (up to the first 16-byte boundary), `groups` groups of GROUP<T>, then the rest one at
 * a time. A strided or element-misaligned run is all tail. N: the count's type (int for a
 * row's classes, long long for the element-wise losses). */
template <class N> struct Split {
    N head, groups;
};

template <class T, class N> FX_HD Split<N> split_row(const T* p, N n, long long s) {
    Split<N> r = {0, 0};
    const unsigned long long al = alignof(Vec<T>), mis = (unsigned long long)p % al;
    if (s != 1 || mis % sizeof(T) != 0) return r;
    r.head = (N)(((al - mis) % al) / sizeof(T));
    if (r.head > n) r.head = n;
    r.groups = (n - r.head) / GROUP<T>;
    return r;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FX_UNROLL _Pragma("unroll")
#define FX_NO_UNROLL _Pragma("unroll 1")
#else
#define FX_UNROLL
#define FX_NO_UNROLL
#endif

/* ---- lanes: the threads that share a row or a reduction ----------------------------------
 * Every body that reduces is written once over a Lanes type: HostLanes (one lane, on the
 * host or a thread per row), WarpLanes (a warp's butterfly shuffles), BlockLanes (the
 * warps' slots in index order) or, in rows.cu, ClusterLanes (a cluster's blocks, each with
 * a slice of the row). Each combines in a fixed order, so every lane ends with the same
 * bits, and repeats are bit-identical. Besides lanes() and lane(), which stride through the
 * classes a lane visits, a Lanes type names those classes ([first_class, end_class) of C)
 * and the one lane that writes the row's results (leader). */

/* Set an error flag (bit 0) that the host reads after the call. */
FX_HD void raise_flag(int* err) {
#if defined(__CUDA_ARCH__)
    atomicOr(err, 1);
#else
    *err |= 1;
#endif
}

/* One lane per row, on the host (the CI test) or in a thread-per-row kernel. */
struct HostLanes {
    static const int NL = 1;
    FX_HD int lanes() const { return 1; }
    FX_HD int lane() const { return 0; }
    FX_HD int first_class(int) const { return 0; }
    FX_HD int end_class(int C) const { return C; }
    FX_HD bool leader() const { return true; }
    template <class A> FX_HD A max(A v) const { return v; }
    template <class A> FX_HD A sum(A v) const { return v; }
    FX_HD void sync() const {}
    FX_HD void flag(int* err) const { raise_flag(err); }
};

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* NL lanes of one warp per row (NL <= 32, a power of two): butterfly shuffles, so every lane
 * ends with the same bits. */
template <int NL_> struct WarpLanes {
    static const int NL = NL_;
    __device__ int lanes() const { return NL; }
    __device__ int lane() const { return (int)(threadIdx.x % NL); }
    __device__ int first_class(int) const { return 0; }
    __device__ int end_class(int C) const { return C; }
    __device__ bool leader() const { return lane() == 0; }
    template <class A> __device__ A max(A v) const {
#pragma unroll
        for (int o = NL / 2; o > 0; o >>= 1) v = fx_max(v, __shfl_xor_sync(0xffffffffu, v, o, NL));
        return v;
    }
    template <class A> __device__ A sum(A v) const {
#pragma unroll
        for (int o = NL / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, NL);
        return v;
    }
    __device__ void sync() const { __syncwarp(); }
    __device__ void flag(int* err) const { raise_flag(err); }
};

/* All BLOCK threads on one row: warp butterflies, then the warps' slots in index order. */
template <int BLOCK, class A> struct BlockLanes {
    static const int NL = BLOCK;
    A* slots;
    __device__ int lanes() const { return NL; }
    __device__ int lane() const { return (int)threadIdx.x; }
    __device__ int first_class(int) const { return 0; }
    __device__ int end_class(int C) const { return C; }
    __device__ bool leader() const { return threadIdx.x == 0; }
    template <bool MAX> __device__ A reduce(A v) const {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const A u = __shfl_xor_sync(0xffffffffu, v, o);
            v = MAX ? fx_max(v, u) : v + u;
        }
        if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
        __syncthreads();
        A r = slots[0];
        for (int k = 1; k < BLOCK / 32; ++k) r = MAX ? fx_max(r, slots[k]) : r + slots[k];
        __syncthreads();
        return r;
    }
    __device__ A max(A v) const { return reduce<true>(v); }
    __device__ A sum(A v) const { return reduce<false>(v); }
    __device__ void sync() const { __syncthreads(); }
    __device__ void flag(int* err) const { raise_flag(err); }
};

template <int NL, int BLOCK, class A> struct LanesFor { typedef BlockLanes<BLOCK, A> type; };
template <int BLOCK, class A> struct LanesFor<1, BLOCK, A> { typedef HostLanes type; };
template <int BLOCK, class A> struct LanesFor<32, BLOCK, A> { typedef WarpLanes<32> type; };

#endif

/* ---- two-stage reductions ----------------------------------------------------------------
 * n items split into G contiguous slices, one per block: a block adds its slice in a fixed
 * order and writes one float64 partial; the block that finishes last (an integer ticket,
 * counted in memory the host zeroes) adds the G partials in index order. Deterministic for
 * a given grid, and no float atomics. reduce.cu's kernel and the row and element-wise
 * kernels' reduced losses use them. */

/* "mean" divides by a denominator found on the device (REDUCE_MEAN_BY_POINTER) or known to
 * the host (REDUCE_MEAN_BY_VALUE). */
enum { REDUCE_SUM = 0, REDUCE_MEAN_BY_POINTER = 1, REDUCE_MEAN_BY_VALUE = 2 };

/* Block b's slice of n items over G blocks. */
struct Slice {
    long long begin, end;
};

FX_HD Slice block_slice(long long n, long long G, long long b) {
    const long long per = (n + G - 1) / G;
    Slice s = {per * b, per * (b + 1)};
    if (s.begin > n) s.begin = n;
    if (s.end > n) s.end = n;
    return s;
}

/* total / denominator; NaN for a zero denominator (PyTorch's mean over no counted item). */
FX_HD double mean_of(double total, double denominator) {
    return denominator == 0.0 ? (double)nan_f() : total / denominator;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FX_NO_UNROLL _Pragma("unroll 1")
#else
#define FX_NO_UNROLL
#endif

/* A value another block wrote: read past the (incoherent) L1 cache on the device. */
FX_HD double load_from_other_block(const double* p) {
#if defined(__CUDA_ARCH__)
    return *(const volatile double*)p;
#else
    return *p;
#endif
}

/* The lanes' sum of item(k) over block b's slice of n items (G blocks), in a fixed order. */
template <class Lanes, class F>
FX_HD double slice_sum(const Lanes& L, long long n, long long G, long long b, F item) {
    const Slice s = block_slice(n, G, b);
    double acc = 0.0;
    for (long long k = s.begin + L.lane(); k < s.end; k += L.lanes()) acc += item(k);
    return L.sum(acc);
}

/* The lanes' sum of partials[0, G), in a fixed order (slice_sum's over one slice). Not
 * unrolled: it runs in one block a call, and unrolled, its registers counted against the
 * row kernel's whole body (a float32 nll_loss row kernel took 53 registers, not 32). */
template <class Lanes> FX_HD double sum_partials(const Lanes& L, const double* partials,
                                                 long long G) {
    double acc = 0.0;
    FX_NO_UNROLL
    for (long long j = L.lane(); j < G; j += L.lanes())
        acc += load_from_other_block(partials + j);
    return L.sum(acc);
}

/* The reduced loss from the sum of its terms: the sum, or "mean" by a denominator on the
 * device or one the host knows. */
FX_HD double reduced(double total, int mode, const double* denominator,
                     double denominator_value) {
    if (mode == REDUCE_SUM) return total;
    return mean_of(total, mode == REDUCE_MEAN_BY_POINTER ? *denominator : denominator_value);
}

/* The reduced loss from G blocks' partials, in the block that finishes last, written as one
 * value of the dtype coded out_dtype (the input's, or float64 for the Dask path, which adds
 * its blocks' sums itself). */
template <class Lanes>
FX_HD void write_reduced(const Lanes& L, const double* partials, long long G, int mode,
                         const double* denominator, double denominator_value, void* out,
                         int out_dtype) {
    const double r = reduced(sum_partials(L, partials, G), mode, denominator,
                             denominator_value);
    if (L.lane() == 0) store_double_as(out_dtype, out, r);
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* Publish this block's partial (lane 0's) and take a ticket: true in the block that
 * finishes last, which then sees every block's partial. */
__device__ bool publish_partial(double part, double* partials, unsigned int* counter) {
    __shared__ bool last;
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = part;
        __threadfence();                    /* the partial is visible before the ticket */
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    return last;
}

/* A reduced loss's two stages at the end of a kernel's own work: the block adds its lanes'
 * `acc` in a fixed order and publishes it, and the block that finishes last writes the
 * result (write_reduced). Every thread of every block calls it. */
template <int BLOCK>
__device__ void finish_reduced(double acc, double* partials, unsigned int* counter, int mode,
                               const double* denominator, double denominator_value,
                               void* out, int out_dtype) {
    __shared__ double sums[BLOCK / 32];
    const BlockLanes<BLOCK, double> lanes = {sums};      /* a fixed order of the lanes */
    if (publish_partial(lanes.sum(acc), partials, counter))
        write_reduced(lanes, partials, gridDim.x, mode, denominator, denominator_value, out,
                      out_dtype);
}

#endif

/* ---- class-axis rows ---------------------------------------------------------------------
 * A row's statistics, gathered by the lanes of a row and combined in a fixed order:
 *   m     max of the row (pass 1);
 *   total sum_c exp(x_c - m)                                  (pass 2, every op);
 *   a, b  op-specific sums                                    (pass 2):
 *         class index + smoothing: a = sum_c w_c, b = sum_c w_c (m - x_c);
 *         probabilities: a = sum_c w_c q'_c, b = sum_c w_c q'_c (m - x_c).
 * Sums are taken relative to m so that huge logits never cancel. */
template <class A> struct RowSums {
    A total, a, b;
};

template <class A> FX_HD RowSums<A> row_sums_add(RowSums<A> u, RowSums<A> v) {
    RowSums<A> r;
    r.total = u.total + v.total;
    r.a = u.a + v.a;
    r.b = u.b + v.b;
    return r;
}

/* The loss of a class-index row from its statistics; xy is the target's logit, wy its weight,
 * W the sum of all class weights (C without weights), eps the label smoothing. */
template <class A> FX_HD A index_row_loss(A m, RowSums<A> s, A xy, A wy, A W, A eps, int C) {
    const A ls = fx_log(s.total);
    const A nll = (m - xy) + ls;
    if (eps > A(0)) {
        const A spread = eps / A(C);
        return (A(1) - eps) * wy * nll + spread * (s.b + W * ls);
    }
    return wy * nll;
}

/* The gradient coefficients of a class-index row: grad_c = ka * e_c - kb * w_c for c != y,
 * with e_c = exp(x_c - m), and grad_y from index_target_grad. scale is d total / d loss. */
template <class A> struct IndexGrad {
    A ka, kb, k;
};

template <class A> FX_HD IndexGrad<A> index_row_grad(RowSums<A> s, A wy, A W, A eps, int C,
                                                     A scale) {
    const A spread = eps / A(C);
    IndexGrad<A> r;
    r.k = (A(1) - eps) * wy + spread * W;
    r.ka = scale * r.k / s.total;
    /* no smoothing term without smoothing, as on the CPU: a scale beyond A's range (a huge
     * grad_output, rounded to float for 32- and 16-bit inputs) would make it inf * 0, a NaN
     * in every entry where PyTorch and the CPU path give +-inf */
    r.kb = eps > A(0) ? scale * spread : A(0);
    return r;
}

/* The target entry, recomputed from the saved logit so that p_y - 1 keeps its digits. */
template <class A> FX_HD A index_target_grad(IndexGrad<A> g, A m, RowSums<A> s, A xy, A wy,
                                            A eps, int C, A scale) {
    const A spread = eps / A(C);
    return scale * (g.k * (fx_exp(xy - m) / s.total) - (A(1) - eps) * wy - spread * wy);
}

/* Probability targets: loss = b + a log(total), grad_c = (scale a / total) e_c
 * - scale w_c q'_c, with q'_c = (1 - eps) q_c + eps / C. */
template <class A> FX_HD A smoothed(A q, A eps, int C) {
    return (A(1) - eps) * q + eps / A(C);
}

template <class A> FX_HD A prob_row_loss(RowSums<A> s) {
    return s.b + s.a * fx_log(s.total);
}

/* ---- element-wise losses -------------------------------------------------------------- */

/* a / b; with SHORT (a result rounded to 16 bits) the device's approximate division: 2 ulp
 * of float for |b| in [2^-126, 2^126], which holds every divisor below, where IEEE division
 * takes about ten instructions and a check for its slow path. */
template <bool SHORT, class A> FX_HD A fx_div(A a, A b) {
#if defined(__CUDA_ARCH__)
    if constexpr (SHORT && sizeof(A) == 4) {
        float r;
        asm("div.approx.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
        return r;
    }
#endif
    return a / b;
}

/* Logarithms for results rounded to 16 bits, where logf's polynomial (about thirty
 * instructions and a branch) is more than the result keeps. ln_approx: ln 2 log2(v) by the
 * device's approximate log2, whose absolute error is 2^-22 over [0.5, 2] and 2 ulp
 * elsewhere (CUDA's table for __log2f); subnormal v kept (no .ftz: a bfloat16 value can be
 * one). It serves only where |ln v| is not small, v outside [15/16, 17/16]: there its error
 * is at most 2^-18 of the result. Near 1 the series takes over: neg_log1m_series(e) =
 * -ln(1 - e) = e + e^2/2 + e^3/3 + e^4/4 for |e| <= 1/16, whose first omitted term is below
 * 2^-18 of the result. */
FX_HD float ln_approx(float v) {
#if defined(__CUDA_ARCH__)
    float r;
    asm("lg2.approx.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r * 0.693147182f;
#else
    /* the host form truncates log2 to the device's error bound over [0.5, 2], so that host
     * tests see a log taken where that bound is too coarse */
    const float l2 = log2f(v);
    return (v >= 0.5f && v <= 2.0f ? truncf(l2 * 4194304.0f) / 4194304.0f : l2) *
           0.693147182f;
#endif
}

FX_HD float neg_log1m_series(float e) {
    return e * (1.0f + e * (0.5f + e * (0.333333343f + e * 0.25f)));
}

/* ln v for v stored in 16 bits (1 - v is exact near 1); NaN takes the second arm and stays
 * NaN, 0 gives -inf. */
FX_HD float log_short(float v) {
    const float e = 1.0f - v;
    return fabsf(e) <= 0.0625f ? -neg_log1m_series(e) : ln_approx(v);
}

/* log1p(e) for e = exp(-|x|) in [0, 1], or NaN; 1 + e rounds by at most 2^-24, about
 * 2^-20 of ln(1 + e) where it is taken. */
FX_HD float log1p_short(float e) {
    return e <= 0.0625f ? -neg_log1m_series(-e) : ln_approx(1.0f + e);
}

/* binary_cross_entropy_with_logits: w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)], with
 * softplus(-x) = log1p(exp(-|x|)) + max(-x, 0), log1p by Goldberg's formula (or
 * log1p_short for SHORT); and its gradient w [(pw y + 1 - y) sigmoid(x) - pw y]. Without
 * pos_weight the pw terms are left out, not set to 1: PyTorch leaves them out, and an
 * infinite y makes (pw - 1) y = 0 * inf a NaN where its loss and gradient are -inf. */
template <class A, bool SHORT = false> FX_HD A bce_logits_loss(A x, A y, A w, bool has_pw,
                                                               A pw) {
    const A e = exp_for<SHORT>(-fx_abs(x)), u = A(1) + e;
    A l1p;
    if constexpr (SHORT) l1p = log1p_short(e);
    else l1p = (u == A(1)) ? e : fx_log(u) * (e / (u - A(1)));
    const A sp = l1p + (x < A(0) ? -x : A(0));
    return w * ((A(1) - y) * x + (has_pw ? (A(1) + (pw - A(1)) * y) * sp : sp));
}

template <class A, bool SHORT = false> FX_HD A bce_logits_grad(A x, A y, A w, bool has_pw,
                                                               A pw, A scale) {
    const A e = exp_for<SHORT>(-fx_abs(x)), u = A(1) + e;
    const A sg = fx_div<SHORT>(x < A(0) ? e : A(1), u);
    return scale * w * (has_pw ? (pw * y + A(1) - y) * sg - pw * y : sg - y);
}

/* binary_cross_entropy on probabilities: each log clamped at -100 the way std::max does it
 * (a NaN log stays NaN), and the gradient w (p - y) / max(p (1 - p), 1e-12f) (PyTorch's
 * float constant, also in double; a NaN product takes the floor, as on the CPU). */
FX_HD float fx_log1p(float v) { return log1pf(v); }
FX_HD double fx_log1p(double v) { return log1p(v); }

template <class A> FX_HD A clamp_log(A v) { return v < A(-100) ? A(-100) : v; }

/* With SHORT (p stored in 16 bits), ln(1 - p) takes the series up to p = 1/16; above it
 * 1 - p is exact in float, since p has no bit below 2^-14. */
template <class A, bool SHORT = false> FX_HD A bce_loss(A p, A y, A w) {
    A log_p, log_1mp;
    if constexpr (SHORT) {
        log_1mp = p <= A(0.0625f) ? -neg_log1m_series(p) : ln_approx(A(1) - p);
        log_p = log_short(p);
    } else {
        log_1mp = fx_log1p(-p);
        log_p = fx_log(p);
    }
    return w * ((y - A(1)) * clamp_log(log_1mp) - y * clamp_log(log_p));
}

template <class A, bool SHORT = false> FX_HD A bce_grad(A p, A y, A w, A scale) {
    const A floor = A(1e-12f);
    A d = p * (A(1) - p);
    d = d > floor ? d : floor;
    return fx_div<SHORT>(scale * w * (p - y), d);
}

/* kl_div: log_target false: xlogy(t, t) - t x, gradient -t;
 *         log_target true:  exp(t) (t - x),    gradient -exp(t). */
template <class A, bool SHORT = false> FX_HD A kl_loss(A x, A t, bool log_target) {
    if (log_target) return exp_for<SHORT>(t) * (t - x);
    A log_t;
    if constexpr (SHORT) log_t = log_short(t);
    else log_t = fx_log(t);
    const A xlogx = fx_isnan(t) ? t : (t == A(0) ? A(0) : t * log_t);
    return xlogx - t * x;
}

template <class A, bool SHORT = false> FX_HD A kl_grad(A t, bool log_target, A scale) {
    return -(log_target ? exp_for<SHORT>(t) : t) * scale;
}

}  // namespace fx

#endif  /* FX_DEVICE_CUH */
