/* The float-lane output pass (fx_simd.h: fx_split; fx_block.inc: fx_blk_scalef; fx_row.inc:
 * fx_row_axpw) against the double product it replaces, (float)(a * (double)e).
 *
 *   1. fx_split accepts a scale exactly when it is zero or within [2^-100, 2^100] (NaN,
 *      inf, 0x1p100 * (1 + 2^-52), 0x1p-100 * (1 - 2^-53) refused), ah + al lies within
 *      2^-48 |a| of a, and fx_blk_scalef's vector-wide split gives fx_split's products; a
 *      lane whose scale is refused gets the double product's float exactly, and the lanes
 *      beside it their split products all the same.
 *   2. For scales across that range and float exponentials e in [0, 1] (subnormals, 0 and 1
 *      included), both passes give the double product's float, but for one ulp where a e
 *      lies within 2^-46 of the midpoint between two floats (counted: there must be almost
 *      none) or below 2^-100, where al e is rounded to float's subnormal grid first.
 *
 * Built by tests/test_output_pass.py for one instruction set at a time (-march=...,
 * -fopenmp-simd as the extension's omp simd loops get). For the baseline set (FX_FMA()
 * false: no FMA), fx_row_axpw takes the double path and must be exact; fx_blk_scalef is not
 * reached there (its callers test FX_FMA() first). Prints ok and exits 0, or the first
 * failure and exits 1. */
#include "fx_simd.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>

#include "check_random.h"


/* A scale: sign, a random 53-bit mantissa and an exponent in [lo, hi]. */
static double scale(int lo, int hi) {
    const double a = ldexp(1.0 + uniform(), lo + (int)(next() % (uint64_t)(hi - lo + 1)));
    return next() & 1 ? -a : a;
}

/* An exponential as the kernels keep it: a float in [0, 1], down to the subnormals. */
static float expo(void) {
    const uint64_t r = next() % 64;
    if (r == 0) return 0.0f;
    if (r == 1) return 1.0f;
    if (r == 2) return ldexpf((float)uniform(), -126 - (int)(next() % 24));
    return (float)ldexp(uniform(), -(int)(next() % 100));
}

static void fail(void) {
    fflush(stdout);
    _Exit(1);
}

static long near_midpoint = 0;
static int exact = 0;    /* the double path: no difference allowed */

/* got against the double product's float; a difference must be one of the two allowed. */
static void compare(double a, float e, float got, const char* what) {
    const float want = (float)(a * (double)e);
    if (got == want) return;    /* a zero's sign may differ: it shows in no sum */
    const float up = nextafterf(want, got);
    if (exact || got != up) {
        printf("%s: a=%a e=%a got %a want %a\n", what, a, (double)e, (double)got,
               (double)want);
        fail();
    }
    if (fabsf(want) < 0x1p-100f) return;
    const double mid = ((double)got + (double)want) / 2;
    if (fabs(fma(a, (double)e, -mid)) > 0x1p-46 * fabs(mid)) {
        printf("%s: a=%a e=%a got %a want %a, not near a midpoint\n", what, a, (double)e,
               (double)got, (double)want);
        fail();
    }
    ++near_midpoint;
}

/* A float block's lanes (the build's register), a[0..BL) as fx_blk_scalef takes them. */
enum { BL = 2 * FX_ND };
static void halves(const double* a, fx_nd* a0, fx_nd* a1) {
    memcpy(a0, a, sizeof *a0);
    memcpy(a1, a + FX_ND, sizeof *a1);
}

static int same_float(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y || (a != a && b != b);
}

static void check_split(void) {
    const double refused[] = {NAN, INFINITY, -INFINITY, 0x1p100 * (1 + 0x1p-52), 0x1p101,
                              0x1p-100 * (1 - 0x1p-53), 0x1p-101, 5e-324, DBL_MAX};
    const double accepted[] = {0.0, -0.0, 0x1p100, -0x1p100, 0x1p-100, 1.0, 1.0 / 3.0};
    float ah, al;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; ++i) {
        if (fx_split(refused[i], &ah, &al)) {
            printf("fx_split accepted %a\n", refused[i]);
            fail();
        }
        if (!FX_FMA()) continue;    /* fx_blk_scalef's callers need FMA */
        double lanes[BL];
        float e[BL];
        fx_nd a0, a1;
        for (int k = 0; k < BL; ++k) {
            lanes[k] = k == BL - 1 ? refused[i] : 0.5;
            e[k] = 0.25f;
        }
        halves(lanes, &a0, &a1);
        fx_blk_scalef_f32(e, BL, 1, a0, a1);
        for (int k = 0; k < BL; ++k) {
            const float want = (float)(lanes[k] * 0.25);
            if (!same_float(e[k], want)) {
                printf("fx_blk_scalef with %a in the last lane: lane %d %a, want %a\n",
                       refused[i], k, (double)e[k], (double)want);
                fail();
            }
        }
    }
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; ++i) {
        if (!fx_split(accepted[i], &ah, &al)) {
            printf("fx_split refused %a\n", accepted[i]);
            fail();
        }
    }
    for (int n = 0; n < 200000; ++n) {
        const double a = scale(-100, 99);
        if (!fx_split(a, &ah, &al) || fabs(((double)ah - a) + (double)al) > 0x1p-48 * fabs(a)) {
            printf("split of %a: ah %a al %a\n", a, (double)ah, (double)al);
            fail();
        }
    }
}

/* fx_blk_scalef over C classes of a block, each lane its own scale: fx_split's products,
 * and in every fourth block one lane with a scale out of range (tiny, huge or NaN) and its
 * double products. */
static void check_block(int n) {
    enum { C = 7 };
    const double odd[] = {0x1p-101, -0x1p-120, 0x1.8p101, NAN};
    double a[BL];
    float e[C * BL], g[C * BL];
    fx_nd a0, a1;
    for (int k = 0; k < BL; ++k) a[k] = scale(-100, 99);
    const int lane = n % 4 == 0 ? (int)(next() % BL) : -1;
    if (lane >= 0) a[lane] = odd[(n / 4) % 4];
    for (int i = 0; i < C * BL; ++i) g[i] = e[i] = expo();
    halves(a, &a0, &a1);
    fx_blk_scalef_f32(g, BL, C, a0, a1);
    for (int i = 0; i < C * BL; ++i) {
        float ah, al;
        if (i % BL == lane) {
            if (!same_float(g[i], (float)(a[lane] * (double)e[i]))) {
                printf("fx_blk_scalef: lane %d of a=%a, e=%a: %a, not the double product\n",
                       lane, a[lane], (double)e[i], (double)g[i]);
                fail();
            }
            continue;
        }
        fx_split(a[i % BL], &ah, &al);
        if (g[i] != fmaf(ah, e[i], al * e[i])) {
            printf("fx_blk_scalef: lane %d of a=%a differs from fx_split's\n", i % BL,
                   a[i % BL]);
            fail();
        }
        compare(a[i % BL], e[i], g[i], "fx_blk_scalef");
    }
}

/* fx_row_axpw over a row of 203 classes, one scale, b = 0. */
static void check_row(void) {
    enum { ROW = 203 };
    const double a = scale(-100, 99);
    float e[ROW], g[ROW];
    for (int i = 0; i < ROW; ++i) g[i] = e[i] = expo();
    fx_row_axpw_f32(g, ROW, 1, a, 0.0, NULL);
    for (int i = 0; i < ROW; ++i) compare(a, e[i], g[i], "fx_row_axpw");
}

int main(void) {
    exact = !FX_FMA();
    check_split();
    for (int n = 0; n < 20000; ++n) {
        if (!exact) check_block(n);
        check_row();
    }
    /* 20000 * (7 * 16 + 203) products at most: near-midpoint cases come at about 2^-23
     * each. */
    fprintf(stderr, "%ld near a midpoint\n", near_midpoint);
    if (near_midpoint > 20) {
        printf("%ld results off by one ulp near a midpoint\n", near_midpoint);
        return 1;
    }
    printf("ok\n");
    return 0;
}
