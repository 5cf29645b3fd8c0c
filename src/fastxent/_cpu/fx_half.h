/* float32 <-> float16 and bfloat16 conversions of whole buffers, bit for bit NumPy's and
 * ml_dtypes' casts (round to nearest even; NaN payloads kept as those casts keep them).
 *
 * NumPy converts each float32 that becomes a float16 subnormal or zero in software and
 * raises the underflow flag for it: about 60 ns an element, 20x its normal speed. A
 * softmax over thousands of classes is mostly such values, so the casts, not the kernels,
 * set the time of a float16 call. These are branch-free integer and float operations that
 * GCC vectorises, the same speed for every value.
 */
#ifndef FX_HALF_H
#define FX_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fx_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float fx_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fx_pick(int c, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

/* float32 -> float16, round to nearest even. Below the smallest normal float16 (2^-14) the
 * addition of 0.5 aligns the 10 kept bits at the bottom of the sum, and the float unit's
 * own rounding (nearest even) rounds them. */
static inline uint16_t fx_f32_to_f16(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t nan = 0x7c00u | ((a >> 13) & 0x3ffu);
    nan |= (nan == 0x7c00u);                        /* a payload shifted out: still NaN */
    uint32_t tiny = fx_bits(fx_float(a) + 0.5f) - 0x3f000000u;
    uint32_t normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;   /* rebias, round */
    /* selections by masks, which GCC vectorises (it keeps a ?: beside a float operation
     * as a branch) */
    uint32_t h = fx_pick(a < 0x38800000u, tiny, normal);
    h = fx_pick(a >= 0x47800000u, 0x7c00u, h);      /* 65536 and up: infinity */
    h = fx_pick(a > 0x7f800000u, nan, h);
    return (uint16_t)(h | sign);
}

static inline float fx_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t a = h & 0x7fffu;
    uint32_t e = a & 0x7c00u;
    uint32_t normal = (a << 13) + 0x38000000u;
    uint32_t special = (a << 13) | 0x7f800000u;     /* infinity, NaN with its payload */
    uint32_t tiny = fx_bits(fx_float(a | 0x4b000000u) - 8388608.0f) - 0x0c000000u;
    uint32_t f = fx_pick(e == 0x7c00u, special, normal);
    f = fx_pick(e == 0, fx_pick(a != 0, tiny, 0u), f);
    return fx_float(f | sign);
}

/* float32 -> bfloat16, round to nearest even; NaN becomes the quiet NaN 0x7fc0 with its
 * sign, as ml_dtypes gives. */
static inline uint16_t fx_f32_to_bf16(uint32_t u)
{
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = ((u >> 16) & 0x8000u) | 0x7fc0u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

static inline float fx_bf16_to_f32(uint16_t h) { return fx_float((uint32_t)h << 16); }

static inline void fx_narrow_f16(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = fx_f32_to_f16(fx_bits(src[i]));
}

static inline void fx_narrow_bf16(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = fx_f32_to_bf16(fx_bits(src[i]));
}

static inline void fx_widen_f16(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = fx_f16_to_f32(src[i]);
}

static inline void fx_widen_bf16(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = fx_bf16_to_f32(src[i]);
}

#endif
