/* fx_simd.h's exponentials: the vector forms against the scalar ones, bit for bit, and the
 * float one against exp in double.
 *
 *   1. fx_vexpf_nonpos (the build's float vector) equals fx_expf_nonpos on every float in
 *      [-106, -86] (subnormal results, the clamp at -105, zeros below it), on every 64th
 *      float of [-86, 0], and on -0, -inf and NaN; each result is within 0.89 ulp of exp in
 *      double where FMA contracts the polynomial (the AVX2 and AVX-512 builds; 0.8822 at
 *      most over every float of [-105, 0]), 1.18 ulp without (the baseline: 1.1764), and
 *      below -105 it is +0.
 *   2. fx_vexp_nonpos (double lanes, the full polynomial) equals fx_exp_nonpos on 4 million
 *      arguments in [-750, 0] (a uniform exponent, so tiny ones too; every subnormal result
 *      and the clamp at -746 included) and on -0, -inf and NaN.
 *   3. fx_vlog_pos is within 2 ulp of log on positive doubles from 2^-1022 to 2^1023 and
 *      on 1 and its neighbours, and passes +inf and NaN through.
 *   4. It prints a hash of the vector results of 1 and 2, of the short double exponential
 *      (FX_FOR_FLOAT) on the same arguments and of the logarithms: tests/test_exp_lanes.py
 *      requires the AVX2 and AVX-512 builds to agree, though only the AVX-512 one scales by
 *      vscalefps and zeroes by its mask (the baseline has no FMA and rounds differently).
 *
 * Built by tests/test_exp_lanes.py for one instruction set at a time (-march=...). Prints ok
 * on stdout and the hash on stderr, exits 0; or prints the first failure and exits 1. */
#include "fx_simd.h"

#include <stdio.h>
#include <stdlib.h>

#include "check_random.h"

static uint64_t hash = 0xcbf29ce484222325ULL;    /* FNV-1a over the results' bits */

static void mix(uint64_t bits) {
    for (int i = 0; i < 8; ++i) {
        hash ^= (bits >> (8 * i)) & 0xff;
        hash *= 0x100000001b3ULL;
    }
}

static int same_float(float a, float b) {
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y || (a != a && b != b);
}

static int same_double(double a, double b) {
    uint64_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y || (a != a && b != b);
}

/* |v - exp(d)| in units of the float spacing at exp(d) (subnormal spacing below 2^-126). */
static double ulps(float v, float d) {
    const double ref = exp((double)d);
    int e;
    frexp(ref, &e);
    const double spacing = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)v - ref) / spacing;
}

static float args_f[16];
static int nargs_f = 0;

static const double max_ulps = FX_FMA() ? 0.89 : 1.18;

static int flush_f(void) {
    float d[16], v[16];
    for (int k = 0; k < 16; ++k) d[k] = k < nargs_f ? args_f[k] : 0.0f;
    for (int k0 = 0; k0 < 16; k0 += 2 * FX_ND) {
        fx_nf dn;
        memcpy(&dn, d + k0, sizeof dn);
        const fx_nf vn = fx_vexpf_nonpos(dn);
        memcpy(v + k0, &vn, sizeof vn);
    }
    for (int k = 0; k < nargs_f; ++k) {
        const float s = fx_expf_nonpos(args_f[k]);
        uint32_t bits;
        memcpy(&bits, &v[k], sizeof bits);
        mix(bits);
        if (!same_float(v[k], s)) {
            printf("float exp(%a): vector %a, scalar %a\n", args_f[k], v[k], s);
            return 1;
        }
        const float a = args_f[k];
        if (a == a && a >= -105.0f && ulps(v[k], a) > max_ulps) {
            printf("float exp(%a) = %a: %.3f ulp from exp in double\n", a, v[k], ulps(v[k], a));
            return 1;
        }
        if (a < -105.0f && !same_float(v[k], 0.0f)) {
            printf("float exp(%a) = %a, not +0\n", a, v[k]);
            return 1;
        }
    }
    nargs_f = 0;
    return 0;
}

static int push_f(float d) {
    args_f[nargs_f++] = d;
    return nargs_f == 16 ? flush_f() : 0;
}

/* The bits of -|f| for f from `from` down to `to` (both <= 0) in steps of `step` patterns. */
static int sweep_f(float from, float to, uint32_t step) {
    uint32_t b, end;
    memcpy(&b, &from, sizeof b);
    memcpy(&end, &to, sizeof end);
    for (; b <= end; b += step) {
        float d;
        memcpy(&d, &b, sizeof d);
        if (push_f(d)) return 1;
    }
    return 0;
}

static int check_double(const double* d) {
    double v[8], f[8];
    for (int k0 = 0; k0 < 8; k0 += FX_ND) {
        fx_nd dn;
        memcpy(&dn, d + k0, sizeof dn);
        const fx_nd vn = fx_vexp_nonpos(dn), fn = fx_vexp_nonpos_to(dn, FX_FOR_FLOAT);
        memcpy(v + k0, &vn, sizeof vn);
        memcpy(f + k0, &fn, sizeof fn);
    }
    for (int k = 0; k < 8; ++k) {
        const double s = fx_exp_nonpos(d[k]);
        uint64_t bits;
        memcpy(&bits, &v[k], sizeof bits);
        mix(bits);
        memcpy(&bits, &f[k], sizeof bits);
        mix(bits);
        if (!same_double(v[k], s)) {
            printf("double exp(%a): vector %a, scalar %a\n", d[k], v[k], s);
            return 1;
        }
    }
    return 0;
}

/* The vector logarithm against log, within 2 ulp; +inf and NaN pass through. */
static int check_log(const double* x) {
    for (int k = 0; k < 8; k += FX_ND) {
        fx_nd xn;
        memcpy(&xn, x + k, sizeof xn);
        const fx_nd ln = fx_vlog_pos(xn);
        for (int j = 0; j < FX_ND; ++j) {
            const double lane = ln[j];   /* Clang takes no vector element's address */
            uint64_t bits;
            memcpy(&bits, &lane, sizeof bits);
            mix(bits);
            const double want = log(x[k + j]);
            const double ulp = nextafter(fabs(want), INFINITY) - fabs(want);
            if (!(same_double(ln[j], want) || fabs(ln[j] - want) <= 2 * ulp)) {
                printf("log(%a): vector %a, libm %a\n", x[k + j], ln[j], want);
                return 1;
            }
        }
    }
    return 0;
}

int main(void) {
    const float special_f[] = {-0.0f, -INFINITY, NAN, -105.0f, -0x1.a3fffep6f, 0.0f};
    for (size_t i = 0; i < sizeof special_f / sizeof *special_f; ++i)
        if (push_f(special_f[i])) return 1;
    if (sweep_f(-86.0f, -106.0f, 1) || sweep_f(-0.0f, -86.0f, 64)) return 1;
    while (nargs_f) {
        if (flush_f()) return 1;
    }

    double d[8];
    const double special_d[8] = {-0.0, -INFINITY, NAN, -746.0, -745.5, -708.5, -1e-300, 0.0};
    if (check_double(special_d)) return 1;
    for (int n = 0; n < 500000; ++n) {
        for (int k = 0; k < 8; ++k) {
            /* half uniform in [-750, 0], half with a uniform exponent down to 2^-60 */
            const double u = uniform();
            d[k] = n % 2 ? -750.0 * u : -ldexp(1.0 + u, 9 - (int)(next() % 70));
        }
        if (check_double(d)) return 1;
    }
    const double special_l[8] = {1.0, 0x1.fffffffffffffp-1, 0x1.0000000000001p0, 0x1p-1022,
                                 0x1.fffffffffffffp1023, INFINITY, NAN, 0x1.6a09e667f3bcdp0};
    if (check_log(special_l)) return 1;
    for (int n = 0; n < 200000; ++n) {
        for (int k = 0; k < 8; ++k) d[k] = ldexp(1.0 + uniform(), 1023 - (int)(next() % 2046));
        if (check_log(d)) return 1;
    }
    printf("ok\n");
    fprintf(stderr, "hash %016llx\n", (unsigned long long)hash);
    return 0;
}
