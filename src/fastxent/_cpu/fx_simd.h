/*
 * fx_simd.h -- the innermost row loops of fastxent's CPU kernels.
 *
 * Design
 * a) A "row" is the C logits of one sample: a base pointer, a length n and an element stride
 *    s (1 for class-contiguous rows, `inner` for the (N, C, d1...dK) layout). Every function
 *    takes the stride and keeps a separate unit-stride loop, which is the one the compiler
 *    vectorises (`#pragma omp simd` where the reduction order does not matter for the result).
 * b) Storage is float or double (T); every accumulator is double, as in scikit-learn's
 *    `_loss` point functions, so float32 rows of 128k classes keep ~1e-7 relative accuracy.
 * c) The functions trust their arguments (validation happens in Python) and never allocate.
 * d) fx_row.inc is the body, instantiated twice: FX(name) becomes name_f32 / name_f64.
 *
 * Maths (docs/numerics.md has the derivations):
 *   m = max_c x_c (NaN ignored here; it reaches the sum through exp(NaN) and propagates),
 *   s = sum_c exp(x_c - m),   logsumexp = m + log(s),   p_c = exp(x_c - m) / s.
 */
#ifndef FASTXENT_FX_SIMD_H
#define FASTXENT_FX_SIMD_H

#include <math.h>
#include <stddef.h>
#include <Python.h>   /* Py_ssize_t */

#define FX_CAT2(a, b) a##_##b
#define FX_CAT(a, b) FX_CAT2(a, b)

#define T float
#define FX(name) FX_CAT(name, f32)
#include "fx_row.inc"
#undef FX
#undef T

#define T double
#define FX(name) FX_CAT(name, f64)
#include "fx_row.inc"
#undef FX
#undef T

/* log(1 + exp(x)) without overflow; the cutoffs follow scikit-learn's `log1pexp`
 * (Maechler 2012, "Accurately Computing log(1 - exp(-|a|))"): below -37 exp(x) is already
 * the double result, above 33.3 x + exp(-x) == x. */
static inline double fx_log1pexp(double x) {
    if (x <= -37.0) return exp(x);
    if (x <= -2.0) return log1p(exp(x));
    if (x <= 18.0) return log(1.0 + exp(x));
    if (x <= 33.3) return x + exp(-x);
    return x;
}

/* The logistic function, branching on the sign so exp never overflows. */
static inline double fx_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

#endif /* FASTXENT_FX_SIMD_H */
