/*
 * fx_simd.h -- the innermost row loops of fastxent's CPU kernels.
 *
 * Design
 * a) A "row" is the C logits of one sample: a base pointer, a length n and an element stride
 *    s (1 for class-contiguous rows). fx_row.inc walks one row at a time in vector blocks,
 *    a group of rows per call; fx_block.inc puts a row in each lane (short rows, Fortran
 *    order, the (N, C, d) layout), and fx_packed.inc runs its blocks over a whole run of
 *    short C-ordered rows per call; fx_binary.inc runs the binary losses and kl_div over
 *    contiguous element runs.
 * b) Storage is float or double (T). float rows use 16-lane float exponentials, double rows
 *    8-lane double ones; every sum is double, so float32 rows of 128k classes keep ~1e-7
 *    relative accuracy, and lane sums are added in a fixed order (thread-count and
 *    instruction-set independent). Where lanes are independent rows (fx_block.inc, the
 *    per-row finishes) the vectors are the build's own register width instead.
 * c) The functions trust their arguments (validation happens in Python) and never allocate.
 * d) Each .inc is a body instantiated twice: FX(name) becomes name_f32 / name_f64.
 *
 * Maths (docs/numerics.md has the derivations):
 *   m = max_c x_c (NaN ignored here; it reaches the sum through exp(NaN) and propagates),
 *   s = sum_c exp(x_c - m),   logsumexp = m + log(s),   p_c = exp(x_c - m) / s.
 */
#ifndef FASTXENT_FX_SIMD_H
#define FASTXENT_FX_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>   /* malloc (fx_block.inc's strips), getenv */
#include <string.h>
#include <Python.h>   /* Py_ssize_t */

#define FX_CAT2(a, b) a##_##b
#define FX_CAT(a, b) FX_CAT2(a, b)

/* Run-time instruction-set dispatch. The kernels (FX_KERNEL, named through FX_KNAME) are
 * compiled once per instruction set: fx_isa.c for AVX-512 (x86-64-v4) and AVX2+FMA
 * (x86-64-v3), each its own translation unit with its own -march (FX_ISA names it, and
 * suffixes its kernels: fx_block_index_f32_v4), and the including module for the baseline
 * (FX_MULTI_ISA: suffix _base). The module then calls each kernel through FX_PICK, which
 * reads the level found at load time (fx_find_isa) on every call, so a portable wheel still
 * runs at full width. Why not GCC's target_clones: one source compiled per instruction set
 * sees that set's macros (__AVX512F__, __FMA__), so it can use instructions that generic
 * vector code never gets (vscalefps, masks) and decide at compile time what the clones had
 * to test at run time. Without FX_MULTI_ISA (other
 * compilers and CPUs, a -march=native build, the C checks of tests/cpu_host) the kernels are
 * the including file's own static functions, for its one instruction set. */
#if defined(FX_ISA)
#define FX_KERNEL __attribute__((visibility("hidden")))
#define FX_KNAME(name) FX_CAT(name, FX_ISA)
#elif defined(FX_MULTI_ISA)
#define FX_KERNEL static
#define FX_KNAME(name) FX_CAT(name, base)
#else
#define FX_KERNEL static
#define FX_KNAME(name) name
#endif

#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* Whether fmaf is one instruction here: in the AVX-512 and AVX2 kernels and on aarch64, not
 * in the x86-64 baseline ones (there it is a libm call). */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define FX_FMA() 1
#else
#define FX_FMA() 0
#endif

/* a * x + y and a * x - y for doubles, the product a * x fused where FMA is one instruction
 * and y rounded on its own: the contraction is written out, so that no loop is left to GCC's
 * choice. Left to it, two of its choices broke bit-identity:
 * - a gradient pass's unit-stride loop and its strided one, a * g - b * z each: GCC 12 for
 *   aarch64 fused a different product in each, and a float64 gradient written into a
 *   Fortran-ordered grad_out differed in the last bit from a fresh one (.ci/cross_snapshot);
 * - a row's scalar tail summing products, acc += w * d: the AVX-512 build vectorised it as
 *   an in-order sum of rounded products, the AVX2 build fused each, and float64 losses with
 *   smoothing or probability targets differed in the last bit between the two for tails of
 *   4 to 7 classes (29 of 1040 calls at C = 68 to 79 and 100). */
#if FX_FMA()
#define FX_FMADD(a, x, y) __builtin_fma((a), (x), (y))
#else
#define FX_FMADD(a, x, y) ((a) * (x) + (y))
#endif
#define FX_FMS(a, x, y) FX_FMADD((a), (x), -(y))

/* Whether __builtin_shufflevector picks lanes (GCC 12 and later, Clang). GCC 11, still the
 * compiler of Ubuntu 22.04 and RHEL 9, has only __builtin_shuffle, whose result is as long as
 * its operands: there the generic halves and joins below (aarch64's) go through memory
 * (FX_PART, FX_PAIR) and fx_block.inc's transposes take __builtin_shuffle. */
#if defined(__clang__) || __GNUC__ >= 12
#define FX_SHUFFLEVECTOR 1
#else
#define FX_SHUFFLEVECTOR 0
/* Part h (0 or 1) of vector v as a vector of half its size, of type `type`; and vectors lo
 * and hi side by side as one of `type`. */
#define FX_PART(v, type, h)                                                                 \
    ({                                                                                      \
        type part_;                                                                         \
        memcpy(&part_, (const char*)&(v) + (h) * sizeof part_, sizeof part_);               \
        part_;                                                                              \
    })
#define FX_PAIR(lo, hi, type)                                                               \
    ({                                                                                      \
        type pair_;                                                                         \
        memcpy(&pair_, &(lo), sizeof(lo));                                                  \
        memcpy((char*)&pair_ + sizeof(lo), &(hi), sizeof(hi));                              \
        pair_;                                                                              \
    })
#endif

/* a * e for a double a and a float e, in float lanes and rounded once: a = ah + al with
 * ah = (float)a and al = (float)(a - ah) (a - ah is exact; al is within 2^-48 |a| of it), and
 * fmaf(ah, e, al * e) adds the exact ah e to al e (within 2^-24 of itself) and rounds once.
 * The result is the float of the double product unless a e lies within 2^-47 of a rounding
 * midpoint or below about 2^-100 (where al e falls to float's subnormal grid and is rounded
 * there first): then it may be one ulp off (tests/cpu_host/fx_mulf_check.c). Why: the
 * softmax and gradient passes scale each kept float exponential by a row's double; in double
 * lanes that takes two conversions each way per vector, here a multiply and an FMA (the fused
 * call 6-12% faster from C = 32 to 32000; docs/numerics.md, docs/performance.md).
 * fx_split returns whether a splits so: a zero, or within [2^-100, 2^100] (ah and al normal
 * floats or zero). The callers take this path where it does and FX_FMA() holds, and multiply
 * in double elsewhere. */
#define FX_SPLIT_LO 0x39b0000000000000ULL    /* the bits of 2^-100 */
#define FX_SPLIT_HI 0x4630000000000000ULL    /* 2^100; NaN's bits lie above */
static inline int fx_split(double a, float* ah, float* al) {
    *ah = (float)a;
    *al = (float)(a - (double)*ah);
    uint64_t b;
    memcpy(&b, &a, sizeof b);
    b &= INT64_MAX;
    /* b - 1 takes a zero past every other value */
    return b <= FX_SPLIT_HI && b - 1 >= FX_SPLIT_LO - 1;
}

/* How precise the double lanes must be. A result stored as float64 gets the full
 * polynomials below (about 1 ulp of a double); one stored as float32 is rounded to 2^-24
 * afterwards, so an intermediate error of e relative (1.3e-15 for the short exponential,
 * 2e-12 for the short logarithm) moves its rounding by at most e / 2^-24 ulp, unless the
 * result cancels, which multiplies that by the cancellation. The binary losses and kl_div,
 * which spend every element on an exponential or a logarithm, take the short exponential on
 * float32 storage, and the short logarithm where their result does not cancel
 * (fx_binary.inc; tests/test_float32_accuracy.py holds them to half an ulp). */
enum { FX_FOR_FLOAT = 0, FX_FULL = 1 };

/* exp(d) for d <= 0 (or NaN), exact to about 1 ulp and branch-free, in a scalar form and a
 * vector form (the build's own width) that run the same operations in the same order (so a
 * logit gets the same exponential on every path); glibc's exp only vectorises under
 * -ffast-math.
 *   1. Cody-Waite reduction: d = k ln2 + r with k = round(d / ln2) (adding 1.5 * 2^52
 *      rounds to nearest and leaves k in the low bits of t), |r| <= ln2 / 2; ln2 is split in
 *      a 42-bit head (k * head is exact for |k| < 2^11) and a tail.
 *   2. exp(r) by its degree-13 Taylor polynomial: truncation error below r^14/14! < 4e-18
 *      (FX_FULL); for FX_FOR_FLOAT a degree-10 polynomial 1 + r + r^2 q(r), q fitted to
 *      (exp(r) - 1 - r) / r^2 at Chebyshev nodes (mpmath's chebyfit): 1.3e-15 relative with
 *      its double coefficients (against expl on 2e7 arguments), three multiply-adds
 *      shorter.
 *   3. 2^k from the exponent bits, offset by 100 so the scale stays normal down to
 *      d = -746. The polynomial's coefficients carry the matching 2^-100 (a power of two:
 *      every step of the polynomial is exactly 2^-100 times the unscaled one, all normal),
 *      so one multiplication by the scale is the only rounding of a subnormal result and
 *      none is spent on undoing the offset. Below -746 (and at -inf) the result is exactly
 *      0; NaN stays NaN.
 *   The AVX-512 build runs the polynomial unscaled (u = 2^100 cancels the offset) and scales
 *   by vscalefpd, which multiplies by 2^k rounding once, subnormal results included; in place
 *   of the clamp, a compare beside each exponential's dependency chain masks the scaling to
 *   0 below -746: the same result bit for bit, three instructions fewer per vector
 *   (tests/cpu_host/fx_exp_check.c; the calls 5-16% faster, and the mask off the chain 3-4%
 *   more, docs/performance.md).
 * Precondition: d <= 0 or NaN (every caller passes x - max). */
#define FX_EXP_BODY(clamp, u, precision)                                                \
    const double shifter = 0x1.8p52;                                                    \
    d = clamp;                                                                          \
    const FX_EXP_T t = d * 0x1.71547652b82fep0 + shifter;                               \
    const FX_EXP_T k = t - shifter;                                                     \
    const FX_EXP_T r = (d - k * 0x1.62e42fefa3800p-1) - k * 0x1.ef35793c7673p-45;       \
    FX_EXP_T p;                                                                         \
    if ((precision) == FX_FULL) {                      /* 1/13! to 1/2!, times 2^-100 */\
        p = r * (0x1.6124613a86d09p-133 * (u)) + 0x1.1eed8eff8d898p-129 * (u);          \
        p = p * r + 0x1.ae64567f544e4p-126 * (u);                                       \
        p = p * r + 0x1.27e4fb7789f5cp-122 * (u);                                       \
        p = p * r + 0x1.71de3a556c734p-119 * (u);                                       \
        p = p * r + 0x1.a01a01a01a01ap-116 * (u);                                       \
        p = p * r + 0x1.a01a01a01a01ap-113 * (u);                                       \
        p = p * r + 0x1.6c16c16c16c17p-110 * (u);                                       \
        p = p * r + 0x1.1111111111111p-107 * (u);                                       \
        p = p * r + 0x1.5555555555555p-105 * (u);                                       \
        p = p * r + 0x1.5555555555555p-103 * (u);                                       \
        p = p * r + 0x1p-101 * (u);                                                     \
    } else {                               /* the fit: r^10 down to r^2, times 2^-100 */\
        p = r * (0x1.28803926c8ea8p-122 * (u)) + 0x1.72c720b2e07bfp-119 * (u);          \
        p = p * r + 0x1.a019c9ab213aap-116 * (u);                                       \
        p = p * r + 0x1.a019adabfb6abp-113 * (u);                                       \
        p = p * r + 0x1.6c16c1738ecf7p-110 * (u);                                       \
        p = p * r + 0x1.1111111c45d5bp-107 * (u);                                       \
        p = p * r + 0x1.5555555554cb8p-105 * (u);                                       \
        p = p * r + 0x1.5555555553b7dp-103 * (u);                                       \
        p = p * r + 0x1p-101 * (u);                                                     \
    }                                                                                   \
    p = p * r + 0x1p-100 * (u);                                                         \
    p = p * r + 0x1p-100 * (u);
/* 2^(k + 100) from t's bits (0x4338...: the shifter's) */
#define FX_EXP_SCALE_BITS(bits_of_t) (((bits_of_t) - 0x4338000000000000LL + 1023 + 100) << 52)

static inline double fx_exp_nonpos(double d) {
#define FX_EXP_T double
    uint64_t tb, bits;      /* unsigned: a NaN's bits shift left without undefined behaviour */
    double scale;
    FX_EXP_BODY(d < -746.0 ? -746.0 : d, 1.0, FX_FULL)
    memcpy(&tb, &t, sizeof tb);
    bits = FX_EXP_SCALE_BITS(tb);
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
#undef FX_EXP_T
}

/* The float32 exponential, for float storage: the same three steps in single precision (twice
 * the double form's lanes in its vector form). ln2 = 0x1.63p-1 + (-0x1.bd0106p-13) (Cephes'
 * split: k * head is exact for |k| < 2^8); exp(r) = 1 + r + r^2 q(r) with q of degree 4, fitted
 * for the least maximum relative error on |r| <= ln2 / 2 (3.6e-9 with its float coefficients:
 * below the 5e-9 truncation of the degree-7 Taylor polynomial it replaced, one FMA shorter);
 * 2^k offset by 30 for subnormal results, the 2^-30 carried by the coefficients as above;
 * d < -105 (and -inf) give 0, NaN stays NaN; the AVX-512 build scales and masks as the double
 * one does. Checked on every float in [-105, 0] against exp in double: at most 0.88 ulp (0.48% of
 * them above half an ulp) where FMA contracts the polynomial (the AVX2 and AVX-512 builds),
 * 1.18 ulp without (the baseline build: 0.86% above half an ulp). Sums of these terms stay in
 * double. */
#define FX_EXPF_BODY(clamp, u)                                                            \
    const float shifterf = 0x1.8p23f;                                                    \
    d = clamp;                                                                           \
    const FX_EXP_T t = d * 0x1.715476p0f + shifterf;                                    \
    const FX_EXP_T k = t - shifterf;                                                     \
    const FX_EXP_T r = (d - k * 0x1.63p-1f) - k * -0x1.bd0106p-13f;                      \
    FX_EXP_T p = r * (0x1.6a23cep-40f * (u)) + 0x1.123a2p-37f * (u);    /* times 2^-30 */\
    p = p * r + 0x1.5558f2p-35f * (u);                                                   \
    p = p * r + 0x1.555492p-33f * (u);                                                   \
    p = p * r + 0x1.fffffcp-32f * (u);                                                   \
    p = p * r + 0x1p-30f * (u);                                                          \
    p = p * r + 0x1p-30f * (u);
/* 2^(k + 30) from t's bits (0x4B400000: the shifter's) */
#define FX_EXPF_SCALE_BITS(bits_of_t) (((bits_of_t) - 0x4B400000 + 127 + 30) << 23)

static inline float fx_expf_nonpos(float d) {
#define FX_EXP_T float
    uint32_t tb, bits;
    float scale;
    FX_EXPF_BODY(d < -105.0f ? -105.0f : d, 1.0f)
    memcpy(&tb, &t, sizeof tb);
    bits = FX_EXPF_SCALE_BITS(tb);
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
#undef FX_EXP_T
}

#if defined(__GNUC__)
#define FX_HAVE_VECTOR 1
#define FX_VLEN 8
/* The build's own vector register: 64 bytes with AVX-512, 32 with AVX2, else 16 (SSE2, NEON
 * and the like); FX_ND doubles or 2 FX_ND floats (FX_IOTA: the lane numbers). Why not
 * 64 bytes everywhere: GCC 12 keeps a vector wider than the registers in memory, and turns
 * each of its lane masks into a compare and branch per lane, so the AVX2 and baseline builds
 * ran 3-10x slower than the AVX-512 one. */
#if defined(__AVX512F__)
#define FX_NB 64
#elif defined(__AVX2__)
#define FX_NB 32
#else
#define FX_NB 16
#endif
#define FX_ND (FX_NB / 8)
typedef double fx_nd __attribute__((vector_size(FX_NB)));
typedef int64_t fx_ni __attribute__((vector_size(FX_NB)));
typedef uint64_t fx_nu __attribute__((vector_size(FX_NB)));
typedef float fx_nf __attribute__((vector_size(FX_NB)));
typedef int32_t fx_nfi __attribute__((vector_size(FX_NB)));
typedef uint32_t fx_nfu __attribute__((vector_size(FX_NB)));
typedef float fx_nhf __attribute__((vector_size(FX_NB / 2)));   /* FX_ND floats */
/* Native vectors in 8 doubles (FX_DQ), 16 floats (FX_FQ) and 16 doubles (FX_SQ), as
 * literals for FX_EACH(n, S): S(0) S(1) ... S(n - 1). The row loops' steps go over their
 * vectors so, with constant indices, which GCC keeps in registers; with a loop, unrolled
 * or not, it kept the step's arrays on the stack (the AVX2 float rows ran 3x slower). */
#if FX_NB == 64
#define FX_DQ 1
#define FX_FQ 1
#define FX_SQ 2
#elif FX_NB == 32
#define FX_DQ 2
#define FX_FQ 2
#define FX_SQ 4
#else
#define FX_DQ 4
#define FX_FQ 4
#define FX_SQ 8
#endif
#define FX_EACH(n, S) FX_EACH_(n, S)
#define FX_EACH_(n, S) FX_EACH##n(S)
#define FX_EACH1(S) S(0)
#define FX_EACH2(S) S(0) S(1)
#define FX_EACH4(S) FX_EACH2(S) S(2) S(3)
#define FX_EACH8(S) FX_EACH4(S) S(4) S(5) S(6) S(7)

#if FX_ND == 8
#define FX_IOTA ((fx_ni){0, 1, 2, 3, 4, 5, 6, 7})
#elif FX_ND == 4
#define FX_IOTA ((fx_ni){0, 1, 2, 3})
#else
#define FX_IOTA ((fx_ni){0, 1})
#endif

/* The build's max, a > b ? a : b per lane (an unordered compare gives b, so fx_nmaxf(v, acc)
 * skips a NaN in v and fx_nmaxf(lo, d) keeps one in d): x86's max instruction, a select
 * elsewhere. FX_HAVE_NMAX marks the instruction, and with it the largest lane of a NaN-free
 * vector (fx_nhmaxf, fx_nhmaxd). */
#if FX_NB == 64
#define FX_HAVE_NMAX 1
#define fx_nmaxf(a, b) ((fx_nf)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define fx_nmaxd(a, b) ((fx_nd)_mm512_max_pd((__m512d)(a), (__m512d)(b)))
#define fx_nhmaxf(v) _mm512_reduce_max_ps((__m512)(v))
#define fx_nhmaxd(v) _mm512_reduce_max_pd((__m512d)(v))
#elif FX_NB == 32 || defined(__SSE2__)
#define FX_HAVE_NMAX 1
#if FX_NB == 32
#define fx_nmaxf(a, b) ((fx_nf)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define fx_nmaxd(a, b) ((fx_nd)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
/* The 128-bit halves' maximum first */
#define FX_H128F(v)                                                                             \
    _mm_max_ps(_mm256_castps256_ps128((__m256)(v)), _mm256_extractf128_ps((__m256)(v), 1))
#define FX_H128D(v)                                                                             \
    _mm_max_pd(_mm256_castpd256_pd128((__m256d)(v)), _mm256_extractf128_pd((__m256d)(v), 1))
#else
#define fx_nmaxf(a, b) ((fx_nf)_mm_max_ps((__m128)(a), (__m128)(b)))
#define fx_nmaxd(a, b) ((fx_nd)_mm_max_pd((__m128d)(a), (__m128d)(b)))
#define FX_H128F(v) ((__m128)(v))
#define FX_H128D(v) ((__m128d)(v))
#endif
__attribute__((always_inline)) static inline float fx_nhmaxf(fx_nf v) {
    __m128 h = FX_H128F(v);
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}
__attribute__((always_inline)) static inline double fx_nhmaxd(fx_nd v) {
    const __m128d h = FX_H128D(v);
    return _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h)));
}
#undef FX_H128F
#undef FX_H128D
#else
__attribute__((always_inline)) static inline fx_nf fx_nmaxf(fx_nf a, fx_nf b) {
    const fx_nfi gt = a > b;
    return (fx_nf)(((fx_nfi)a & gt) | ((fx_nfi)b & ~gt));
}
__attribute__((always_inline)) static inline fx_nd fx_nmaxd(fx_nd a, fx_nd b) {
    const fx_ni gt = a > b;
    return (fx_nd)(((fx_ni)a & gt) | ((fx_ni)b & ~gt));
}
#endif

/* exp(d) for d <= 0 or NaN (FX_EXP_BODY's steps) on the build's own vector. The clamp is
 * fx_nmaxd (a NaN d stays NaN); AVX-512 scales by vscalefpd and zeroes the lanes below the
 * clamp by its mask (an unordered compare keeps a NaN lane). Here and below,
 * always_inline: vectors wider than 16 bytes are passed only within one build. */
__attribute__((always_inline)) static inline fx_nd fx_vexp_nonpos_to(fx_nd d, int precision) {
#define FX_EXP_T fx_nd
#if FX_NB == 64
    const __mmask8 live = _mm512_cmp_pd_mask((__m512d)d, _mm512_set1_pd(-746.0), _CMP_NLT_UQ);
    FX_EXP_BODY(d, 0x1p100, precision)
    return (fx_nd)_mm512_maskz_scalef_pd(live, (__m512d)p, (__m512d)k);
#else
    FX_EXP_BODY(fx_nmaxd((fx_nd){0} - 746.0, d), 1.0, precision)
    return p * (fx_nd)FX_EXP_SCALE_BITS((fx_nu)t);
#endif
#undef FX_EXP_T
}

__attribute__((always_inline)) static inline fx_nd fx_vexp_nonpos(fx_nd d) {
    return fx_vexp_nonpos_to(d, FX_FULL);
}

/* The float exponential (FX_EXPF_BODY's steps), clamped and scaled as above. */
__attribute__((always_inline)) static inline fx_nf fx_vexpf_nonpos(fx_nf d) {
#define FX_EXP_T fx_nf
#if FX_NB == 64
    const __mmask16 live = _mm512_cmp_ps_mask((__m512)d, _mm512_set1_ps(-105.0f), _CMP_NLT_UQ);
    FX_EXPF_BODY(d, 0x1p30f)
    return (fx_nf)_mm512_maskz_scalef_ps(live, (__m512)p, (__m512)k);
#else
    FX_EXPF_BODY(fx_nmaxf((fx_nf){0} - 105.0f, d), 1.0f)
    return p * (fx_nf)FX_EXPF_SCALE_BITS((fx_nfu)t);
#endif
#undef FX_EXP_T
}

/* k ln2 + 2 atanh(z) for |z| <= 3 - 2 sqrt(2) = 0.1716 and a small integer k (as a double):
 * the series 2 (z + z^3/3 + ... + z^21/21) (truncation below 3e-17 relative; FX_FOR_FLOAT
 * stops at z^13/13, below 2e-12), with ln2 split as in the exponential. */
__attribute__((always_inline)) static inline fx_nd fx_vlog_series(fx_nd z, fx_nd kd,
                                                                  int precision) {
    const fx_nd u = z * z;
    fx_nd p;
    if (precision == FX_FULL) {
        p = u * 0x1.8618618618618p-5 + 0x1.af286bca1af28p-5;    /* 1/21, 1/19 */
        p = p * u + 0x1.e1e1e1e1e1e1ep-5;                        /* 1/17 */
        p = p * u + 0x1.1111111111111p-4;                        /* 1/15 */
        p = p * u + 0x1.3b13b13b13b14p-4;                        /* 1/13 */
    } else {
        p = (fx_nd){0} + 0x1.3b13b13b13b14p-4;
    }
    p = p * u + 0x1.745d1745d1746p-4;                            /* 1/11 */
    p = p * u + 0x1.c71c71c71c71cp-4;                            /* 1/9 */
    p = p * u + 0x1.2492492492492p-3;                            /* 1/7 */
    p = p * u + 0x1.999999999999ap-3;                            /* 1/5 */
    p = p * u + 0x1.5555555555555p-2;                            /* 1/3 */
    return kd * 0x1.62e42fefa3800p-1 + ((2.0 * z) * (p * u) + (kd * 0x1.ef35793c7673p-45
                                                                + 2.0 * z));
}

/* log(x) for positive normal x (sums of exponentials, the binary losses' probabilities and
 * targets; 0 and subnormals read as 2^-1023 f, a log near -709, which the callers clamp or
 * rescale); NaN and +inf pass through. x = 2^k f with f in [sqrt(1/2), sqrt(2)), then
 * log f = 2 atanh(z), z = (f - 1) / (f + 1), and log x = k ln2 + log f (fx_vlog_series).
 * Within about 2 ulp (FX_FULL). */
__attribute__((always_inline)) static inline fx_nd fx_vlog_pos_to(fx_nd x, int precision) {
    const fx_nu bits = (fx_nu)x;
    fx_nd f = (fx_nd)((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);   /* [1, 2) */
    const fx_ni big = f > 0x1.6a09e667f3bcdp+0;                                  /* sqrt(2) */
    f = (fx_nd)(((fx_ni)(f * 0.5) & big) | ((fx_ni)f & ~big));
    /* k = exponent - 1023 (+ 1 where f was halved) as a double, without 64-bit integer
     * shifts by sign or conversions, which only AVX-512 has: the biased exponent goes into
     * the low mantissa bits of 2^52, and 2^52 + 1023 (- 1) comes off in double. */
    const fx_nd kd = (fx_nd)((bits >> 52 & 0x7ff) | 0x4330000000000000ULL) -
                     (0x1p52 + 1023.0) + (fx_nd)((fx_ni)((fx_nd){0} + 1.0) & big);
    const fx_nd r = fx_vlog_series((f - 1.0) / (f + 1.0), kd, precision);
    /* NaN and +inf pass through: |x| not below +inf. */
    const fx_ni special = ~(fx_ni)((fx_nd)(bits & INT64_MAX) < INFINITY);
    return (fx_nd)(((fx_ni)x & special) | ((fx_ni)r & ~special));
}

__attribute__((always_inline)) static inline fx_nd fx_vlog_pos(fx_nd x) {
    return fx_vlog_pos_to(x, FX_FULL);
}

/* The low and high halves of a native float vector as native doubles (fx_nlo, fx_nhi), and
 * two native double vectors rounded to floats side by side (fx_njoin), in each build's own
 * instructions: one 8-lane conversion per half with AVX-512. GCC 12 turned the generic
 * vectors' shuffle-then-convert into two 4-lane conversions and an insert per half, which
 * cost the float row loops about 30% (C harness, C = 100 to 32000), and GCC 11's memory
 * round trip twice that. */
#if FX_NB == 64
__attribute__((always_inline)) static inline fx_nd fx_nlo(fx_nf v) {
    return (fx_nd)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
}
__attribute__((always_inline)) static inline fx_nd fx_nhi(fx_nf v) {
    return (fx_nd)_mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1)));
}
__attribute__((always_inline)) static inline fx_nf fx_njoin(fx_nd lo, fx_nd hi) {
    const __m256 l = _mm512_cvtpd_ps((__m512d)lo), h = _mm512_cvtpd_ps((__m512d)hi);
    return (fx_nf)_mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(l)), _mm256_castps_pd(h), 1));
}
#elif FX_NB == 32
__attribute__((always_inline)) static inline fx_nd fx_nlo(fx_nf v) {
    return (fx_nd)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
}
__attribute__((always_inline)) static inline fx_nd fx_nhi(fx_nf v) {
    return (fx_nd)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
}
__attribute__((always_inline)) static inline fx_nf fx_njoin(fx_nd lo, fx_nd hi) {
    return (fx_nf)_mm256_set_m128(_mm256_cvtpd_ps((__m256d)hi), _mm256_cvtpd_ps((__m256d)lo));
}
#elif defined(__SSE2__)
__attribute__((always_inline)) static inline fx_nd fx_nlo(fx_nf v) {
    return (fx_nd)_mm_cvtps_pd((__m128)v);
}
__attribute__((always_inline)) static inline fx_nd fx_nhi(fx_nf v) {
    return (fx_nd)_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v));
}
__attribute__((always_inline)) static inline fx_nf fx_njoin(fx_nd lo, fx_nd hi) {
    return (fx_nf)_mm_movelh_ps(_mm_cvtpd_ps((__m128d)lo), _mm_cvtpd_ps((__m128d)hi));
}
#else
#if FX_SHUFFLEVECTOR
__attribute__((always_inline)) static inline fx_nd fx_nlo(fx_nf v) {
    return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1), fx_nd);
}
__attribute__((always_inline)) static inline fx_nd fx_nhi(fx_nf v) {
    return __builtin_convertvector(__builtin_shufflevector(v, v, 2, 3), fx_nd);
}
#else
__attribute__((always_inline)) static inline fx_nd fx_nlo(fx_nf v) {
    return __builtin_convertvector(FX_PART(v, fx_nhf, 0), fx_nd);
}
__attribute__((always_inline)) static inline fx_nd fx_nhi(fx_nf v) {
    return __builtin_convertvector(FX_PART(v, fx_nhf, 1), fx_nd);
}
#endif
__attribute__((always_inline)) static inline fx_nf fx_njoin(fx_nd lo, fx_nd hi) {
    const fx_nhf lf = __builtin_convertvector(lo, fx_nhf), hf = __builtin_convertvector(hi, fx_nhf);
#if FX_SHUFFLEVECTOR
    return __builtin_shufflevector(lf, hf, 0, 1, 2, 3);
#else
    return FX_PAIR(lf, hf, fx_nf);
#endif
}
#endif

/* log(v) clamped at -100 as PyTorch does, for v in [0, 1]. fx_vlog_pos reads 0 and the
 * float64 subnormals as 2^-1023 f, a log near -709: clamped, that is the right answer. */
__attribute__((always_inline)) static inline fx_nd fx_clamped_log01(fx_nd v, int precision) {
    const fx_nd l = fx_vlog_pos_to(v, precision);
    const fx_ni low = l < -100.0;
    return (fx_nd)(((fx_ni)((fx_nd){0} - 100.0) & low) | ((fx_ni)l & ~low));
}

/* FX_ND doubles from p (step 1) or p[0] broadcast (step 0). */
__attribute__((always_inline)) static inline fx_nd fx_vstep_load(const double* p, Py_ssize_t step) {
    fx_nd v;
    if (step == 1) {
        memcpy(&v, p, sizeof v);
    } else {
        v = (fx_nd){0} + p[0];
    }
    return v;
}

/* The m < 8 values p[0], p[step], ... into dst, zero-padded to 8 (the tails of the binary
 * runs). */
__attribute__((always_inline)) static inline void fx_pad8(double* dst, const double* p,
                                                          Py_ssize_t step, int m) {
    for (int i = 0; i < 8; ++i) dst[i] = i < m ? p[i * step] : 0.0;
}

/* Unit weights for the row tails (up to 15 elements), read where w is NULL. */
static const double fx_ones16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Eight doubles l[o..o+8) added in a fixed tree: every 8-lane sum's order, on every build. */
#define FX_TREE8(l, o)                                                                          \
    ((((l)[(o) + 0] + (l)[(o) + 4]) + ((l)[(o) + 2] + (l)[(o) + 6])) +                          \
     (((l)[(o) + 1] + (l)[(o) + 5]) + ((l)[(o) + 3] + (l)[(o) + 7])))

/* Eight double lanes (the binary runs' sums, the double rows' steps) as FX_DQ native
 * vectors, q[j] holding lanes j FX_ND to (j + 1) FX_ND - 1; and their sum in FX_TREE8's
 * order. */
typedef struct {
    fx_nd q[FX_DQ];
} fx_d8;

__attribute__((always_inline)) static inline double fx_vsum8(fx_d8 v) {
    double l[8];
    memcpy(l, &v, sizeof l);
    return FX_TREE8(l, 0);
}

/* The gradient scale A of an ignored row whose sum is a number: 0, or NaN where label
 * smoothing meets a class weight that is not finite (W = sum_c w_c then is not). PyTorch's
 * backward gives such a row (eps / C) w_c * 0 per class, NaN for that class, and the softmax
 * backward spreads it over the row. Without smoothing the weights never reach the row. */
static inline double fx_ignored_scale(double eps, double W) {
    return eps > 0.0 && !(W - W == 0.0) ? NAN : 0.0;
}

/* The most lanes fx_index_finish takes at once. */
#define FX_FINISH_LANES 16

/* The per-row scalars of cross entropy with class-index targets for `lanes` rows (a multiple of
 * FX_ND, at most FX_FINISH_LANES), in native double vectors (a scalar log, exp or division per
 * row would cost as much as a 10-class row): m the row's maximum, sum = sum_c exp(x_c - m),
 * ws = sum_c w_c (m - x_c) (label smoothing only) and xy the target's logit, saved before an
 * in-place gradient overwrote it; lanes nrows to lanes - 1 hold placeholders (m = ws = xy = 0,
 * sum = 1). Writes, for every lane: loss; with scale non-NULL (the gradient's per-row scales)
 * the gradient's scale A and shift B (g_c = A e_c - B w_c, e_c = exp(x_c - m)) and the
 * target's entry gy, at full precision from xy. An ignored row (t < 0) gets loss 0, B = 0 and
 * A = 0, or NaN where its sum is NaN: PyTorch's backward zeroes an ignored row as
 * g - p * sum(g), NaN wherever p is (a NaN or +inf logit, or a row of -inf), and where
 * smoothing meets a weight that is not finite (fx_ignored_scale). Without smoothing, B = 0
 * and W holds no weight (_xent.pyx sums them only with smoothing), so such a weight of a
 * class no row targets leaves the rows finite, as in PyTorch (0 * inf would be NaN). The
 * maths is _xent.pyx's (design note e). The sum of a row with a finite maximum is at least 1, where
 * fx_vlog_pos holds; the others are NaN rows, or all -inf ones whose m - xy is NaN. */
__attribute__((always_inline)) static inline void
fx_index_finish(int lanes, int nrows, const int64_t* t, const double* w, double W, double eps,
                double spread, const double* m, const double* sum, const double* ws,
                const double* xy, const double* scale, double* loss, double* A, double* B,
                double* gy) {
    /* Row by row, and the rest zero: written as one loop over the lanes, GCC read t and
     * scale with masked loads, which stall for hundreds of cycles when the masked-off
     * addresses are unmapped -- scale is NULL for a loss without gradient (float64 C = 10
     * loss 0.8 -> 2.0 ms). */
    double wyk[FX_FINISH_LANES] = {0}, sk[FX_FINISH_LANES] = {0};
    const double ignored = fx_ignored_scale(eps, W);
    for (int k = 0; k < nrows; ++k) wyk[k] = t[k] >= 0 ? (w ? w[t[k]] : 1.0) : 0.0;
    /* A whole block's scales as a copy of constant size (vector moves): with nrows as the
     * size, GCC emits rep movsq, whose start-up stood out in the profile of the C = 10
     * fused call. */
    if (scale && nrows == lanes)
        memcpy(sk, scale, lanes * sizeof *sk);
    else if (scale)
        memcpy(sk, scale, nrows * sizeof *sk);
    for (int h = 0; h < lanes; h += FX_ND) {
        fx_nd wy, sc, xyv, mv, sv, av;
        memcpy(&wy, wyk + h, sizeof wy);
        memcpy(&sc, sk + h, sizeof sc);
        memcpy(&xyv, xy + h, sizeof xyv);
        memcpy(&mv, m + h, sizeof mv);
        memcpy(&sv, sum + h, sizeof sv);
        memcpy(&av, ws + h, sizeof av);
        const fx_nd lv = fx_vlog_pos(sv);
        const fx_nd nll = (mv - xyv) + lv;
        const fx_nd lo = eps > 0.0 ? (1.0 - eps) * wy * nll + spread * (av + W * lv) : wy * nll;
        memcpy(loss + h, &lo, sizeof lo);
        if (!scale) continue;
        const fx_nd K = (1.0 - eps) * wy + spread * W;
        const fx_nd Av = sc * K / sv, Bv = sc * spread;
        const fx_nd py = fx_vexp_nonpos(xyv - mv) / sv;
        const fx_nd gyv = sc * (K * py - (1.0 - eps) * wy - spread * wy);
        memcpy(A + h, &Av, sizeof Av);
        memcpy(B + h, &Bv, sizeof Bv);
        memcpy(gy + h, &gyv, sizeof gyv);
    }
    for (int k = 0; k < nrows; ++k) {
        if (t[k] >= 0) continue;
        loss[k] = 0.0;
        if (!scale) continue;
        A[k] = sum[k] == sum[k] ? ignored : NAN;
        B[k] = 0.0;
    }
}
#endif

/* What fx_block_transform computes. */
enum { FX_LSE = 0, FX_SOFTMAX = 1, FX_LOG_SOFTMAX = 2 };

#define T float
#define FX_F32 1
#define FX(name) FX_CAT(name, f32)
#include "fx_row.inc"
#if defined(FX_HAVE_VECTOR)
#include "fx_block.inc"
#include "fx_binary.inc"
#endif
#undef FX
#undef FX_F32
#undef T

#define T double
#define FX_F32 0
#define FX(name) FX_CAT(name, f64)
#include "fx_row.inc"
#if defined(FX_HAVE_VECTOR)
#include "fx_block.inc"
#include "fx_binary.inc"
#endif
#undef FX
#undef T

/* The smallest and largest of n >= 1 targets (the range check of _validate.py). */
FX_KERNEL void FX_KNAME(fx_index_range)(const int64_t* t, Py_ssize_t n, int64_t* lo, int64_t* hi) {
    int64_t a = t[0], b = t[0];
#if defined(_OPENMP)
#pragma omp simd reduction(min : a) reduction(max : b)
#endif
    for (Py_ssize_t i = 0; i < n; ++i) {
        a = t[i] < a ? t[i] : a;
        b = t[i] > b ? t[i] : b;
    }
    *lo = a;
    *hi = b;
}

#if defined(FX_MULTI_ISA) && !defined(FX_ISA)

/* The build FX_PICK takes, 2 (AVX-512), 1 (AVX2) or 0 (baseline): the widest this CPU runs,
 * found once, when the module is loaded, before any kernel can run. The environment variable
 * FASTXENT_CPU_KERNELS=avx2 or baseline lowers it (to run, test or time those builds on a
 * newer CPU; fastxent/_cpu/__init__.py warns about other values). */
static int fx_isa = 0;
__attribute__((constructor)) static void fx_find_isa(void) {
    /* A constructor may run before libgcc's, which fills what __builtin_cpu_supports reads. */
    __builtin_cpu_init();
    /* The psABI's x86-64-v3 and -v4 by their features, those -march=x86-64-v3 and -v4 let
     * the compiler use: GCC 11 does not know the levels' names. libgcc reports AVX and
     * AVX-512 only where the operating system saves their registers. */
#define FX_HAS(feature) __builtin_cpu_supports(feature)
    const int v2 = FX_HAS("cmpxchg16b") && FX_HAS("lahf_lm") && FX_HAS("popcnt") &&
                   FX_HAS("sse3") && FX_HAS("ssse3") && FX_HAS("sse4.1") && FX_HAS("sse4.2");
    const int v3 = v2 && FX_HAS("avx") && FX_HAS("avx2") && FX_HAS("bmi") && FX_HAS("bmi2") &&
                   FX_HAS("f16c") && FX_HAS("fma") && FX_HAS("lzcnt") && FX_HAS("movbe") &&
                   FX_HAS("osxsave");
    const int v4 = v3 && FX_HAS("avx512f") && FX_HAS("avx512bw") && FX_HAS("avx512cd") &&
                   FX_HAS("avx512dq") && FX_HAS("avx512vl");
#undef FX_HAS
    fx_isa = v4 ? 2 : v3 ? 1 : 0;
    const char* cap = getenv("FASTXENT_CPU_KERNELS");
    if (cap && strcmp(cap, "avx2") == 0 && fx_isa > 1) fx_isa = 1;
    if (cap && strcmp(cap, "baseline") == 0) fx_isa = 0;
}

static inline int fx_isa_level(void) { return fx_isa; }

/* The kernels the Cython modules call, each through FX_PICK: the AVX-512 or AVX2 build
 * (fx_isa.c, linked into every module) where fx_isa_level says so, else the baseline one
 * above. The other builds are declared where they are picked, so this list is the only
 * one. */
#define FX_PICK(name)                                                                        \
    ({                                                                                       \
        extern __attribute__((visibility("hidden"))) __typeof__(name##_base) name##_v3,      \
            name##_v4;                                                                       \
        const int level_ = fx_isa_level();                                                   \
        level_ == 2 ? name##_v4 : level_ == 1 ? name##_v3 : name##_base;                     \
    })
#define fx_rows_index_f32 FX_PICK(fx_rows_index_f32)
#define fx_rows_index_f64 FX_PICK(fx_rows_index_f64)
#define fx_rows_transform_f32 FX_PICK(fx_rows_transform_f32)
#define fx_rows_transform_f64 FX_PICK(fx_rows_transform_f64)
#define fx_rows_prob_f32 FX_PICK(fx_rows_prob_f32)
#define fx_rows_prob_f64 FX_PICK(fx_rows_prob_f64)
#define fx_block_index_f32 FX_PICK(fx_block_index_f32)
#define fx_block_index_f64 FX_PICK(fx_block_index_f64)
#define fx_block_index_loss_f32 FX_PICK(fx_block_index_loss_f32)
#define fx_block_index_loss_f64 FX_PICK(fx_block_index_loss_f64)
#define fx_packed_index_f32 FX_PICK(fx_packed_index_f32)
#define fx_packed_index_f64 FX_PICK(fx_packed_index_f64)
#define fx_packed_transform_f32 FX_PICK(fx_packed_transform_f32)
#define fx_packed_transform_f64 FX_PICK(fx_packed_transform_f64)
#define fx_packed_prob_f32 FX_PICK(fx_packed_prob_f32)
#define fx_packed_prob_f64 FX_PICK(fx_packed_prob_f64)
#define fx_block_transform_f32 FX_PICK(fx_block_transform_f32)
#define fx_block_transform_f64 FX_PICK(fx_block_transform_f64)
#define fx_block_prob_f32 FX_PICK(fx_block_prob_f32)
#define fx_block_prob_f64 FX_PICK(fx_block_prob_f64)
#define fx_bce_logits_run_f32 FX_PICK(fx_bce_logits_run_f32)
#define fx_bce_logits_run_f64 FX_PICK(fx_bce_logits_run_f64)
#define fx_bce_run_f32 FX_PICK(fx_bce_run_f32)
#define fx_bce_run_f64 FX_PICK(fx_bce_run_f64)
#define fx_kl_run_f32 FX_PICK(fx_kl_run_f32)
#define fx_kl_run_f64 FX_PICK(fx_kl_run_f64)
#define fx_index_range FX_PICK(fx_index_range)
#endif

/* The instruction set of the kernels the calls run: "avx512", "avx2" or "baseline" (a
 * build for one set names what it was compiled for); and the builds there are, widest
 * first. */
#if defined(__AVX512F__)
#define FX_SINGLE_BUILD "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define FX_SINGLE_BUILD "avx2"
#else
#define FX_SINGLE_BUILD "baseline"
#endif
static inline const char* fx_cpu_kernels(void) {
#if defined(FX_MULTI_ISA) && !defined(FX_ISA)
    static const char* const names[] = {"baseline", "avx2", "avx512"};
    return names[fx_isa_level()];
#else
    return FX_SINGLE_BUILD;
#endif
}
static inline const char* fx_cpu_builds(void) {
#if defined(FX_MULTI_ISA) && !defined(FX_ISA)
    return "avx512 avx2 baseline";
#else
    return FX_SINGLE_BUILD;
#endif
}

/* The logistic function, branching on the sign so exp never overflows. */
static inline double fx_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

#endif /* FASTXENT_FX_SIMD_H */
