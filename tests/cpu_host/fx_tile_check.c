/* fx_block.inc's tile (C-ordered rows in, transposed) and untile (back out) against the plain
 * element-by-element transposition, for float and double, every C the tile takes (1..64),
 * blocks of 1 to FX_BL rows (the build's register: 16 floats with AVX-512, 8 with AVX2, 4
 * at the baseline), and three row layouts: packed (each row right after the one before),
 * gapped (rows 3 elements apart) and reversed (packed, the last row first); and the copy of
 * a whole block of consecutive lanes (Fortran order, the (N, C, d) layout) for C up to 256.
 *
 * Built by tests/test_block_tile.py for one instruction set at a time (-march=...), under
 * AddressSanitizer: every array is allocated to exactly the span of its block's rows, so a
 * vector load or store that reached past the block's first or last element is reported.
 * Prints ok and exits 0 when every case matches; exits 1 after printing the first failure. */
#include "fx_simd.h"

#include <stdio.h>
#include <stdlib.h>

enum { PACKED, GAPPED, REVERSED, NLAYOUTS };

/* A mismatch ends the run at once (the leak check would only add noise). */
static void fail(void) {
    fflush(stdout);
    _Exit(1);
}

/* Row k's offset from the kernel's base pointer, which lies *base elements from the start
 * of an array spanning exactly the block's rows (*span elements). As for a block in the
 * middle of a NumPy array, the base pointer is the array's first row, outside the block:
 * before it (offsets from 5 rows on), or after it for reversed rows (a negative stride,
 * offsets from -5 rows down). */
static void layout(int kind, int nrows, Py_ssize_t C, Py_ssize_t* off, Py_ssize_t* base,
                   Py_ssize_t* span) {
    const Py_ssize_t step = kind == GAPPED ? C + 3 : C;
    for (int k = 0; k < nrows; ++k) off[k] = (kind == REVERSED ? -(k + 5) : k + 5) * step;
    *base = kind == REVERSED ? (nrows - 1 + 5) * step : -5 * step;
    *span = (nrows - 1) * step + C;
}

#define CHECK_BODY(T, BL, SUF)                                                                  \
    static void check_##SUF(void) {                                                             \
        for (Py_ssize_t C = 1; C <= 64; ++C)                                                    \
            for (int nrows = 1; nrows <= BL; ++nrows)                                           \
                for (int kind = 0; kind < NLAYOUTS; ++kind) {                                   \
                    Py_ssize_t off[BL], base, span;                                             \
                    layout(kind, nrows, C, off, &base, &span);                                  \
                    for (int k = nrows; k < BL; ++k) off[k] = 0;                                \
                    T* x = malloc(sizeof(T) * span);                                            \
                    T* out = malloc(sizeof(T) * span);                                          \
                    T tile[64 * BL], back[64 * BL];                                             \
                    for (Py_ssize_t i = 0; i < span; ++i) {                                     \
                        x[i] = (T)(i + 1);                                                      \
                        out[i] = (T)-1;                                                         \
                    }                                                                           \
                    fx_blk_tile_##SUF(tile, x + base, off, nrows, C, 1, 0);                      \
                    for (Py_ssize_t c = 0; c < C; ++c)                                          \
                        for (int k = 0; k < BL; ++k) {                                          \
                            const T want = k < nrows ? x[base + off[k] + c] : (T)0;             \
                            if (tile[c * BL + k] != want) {                                     \
                                printf(#T " tile C=%zd nrows=%d layout=%d c=%zd k=%d\n",        \
                                       C, nrows, kind, c, k);                                   \
                                fail();                                                         \
                            }                                                                   \
                            back[c * BL + k] = (T)(1000 * c + k);                               \
                        }                                                                       \
                    fx_blk_untile_##SUF(out + base, off, nrows, C, 1, back, 0);                  \
                    for (Py_ssize_t i = 0; i < span; ++i) x[i] = (T)-1;                         \
                    for (int k = 0; k < nrows; ++k)                                             \
                        for (Py_ssize_t c = 0; c < C; ++c) x[base + off[k] + c] = back[c * BL + k]; \
                    for (Py_ssize_t i = 0; i < span; ++i)                                       \
                        if (out[i] != x[i]) {                                                   \
                            printf(#T " untile C=%zd nrows=%d layout=%d i=%zd\n", C,            \
                                   nrows, kind, i);                                             \
                            fail();                                                             \
                        }                                                                       \
                    free(x);                                                                    \
                    free(out);                                                                  \
                }                                                                               \
    }

/* A whole block of consecutive lanes (`lanes`: a vector copy per class), classes sc
 * elements apart, for C = 1..256 (the crowded blocks' tile) and strides just above a block,
 * of a power of two, and reversed. */
#define CHECK_LANES(T, BL, SUF)                                                                 \
    static void check_lanes_##SUF(void) {                                                       \
        const Py_ssize_t strides[] = {BL, BL + 3, 512, -(BL + 5)};                              \
        for (Py_ssize_t C = 1; C <= 256; ++C)                                                   \
            for (int j = 0; j < 4; ++j) {                                                       \
                const Py_ssize_t sc = strides[j], a = sc < 0 ? -sc : sc;                        \
                const Py_ssize_t span = (C - 1) * a + BL;                                       \
                const Py_ssize_t base = sc < 0 ? (C - 1) * a : 0;                               \
                Py_ssize_t off[BL];                                                             \
                for (int k = 0; k < BL; ++k) off[k] = k;                                        \
                T* x = malloc(sizeof(T) * span);                                                \
                T* out = malloc(sizeof(T) * span);                                              \
                T* tile = malloc(sizeof(T) * C * BL);                                           \
                for (Py_ssize_t i = 0; i < span; ++i) {                                         \
                    x[i] = (T)(i + 1);                                                          \
                    out[i] = (T)-1;                                                             \
                }                                                                               \
                fx_blk_tile_##SUF(tile, x + base, off, BL, C, sc, 1);                           \
                for (Py_ssize_t c = 0; c < C; ++c)                                              \
                    for (int k = 0; k < BL; ++k)                                                \
                        if (tile[c * BL + k] != x[base + c * sc + k]) {                         \
                            printf(#T " lanes tile C=%zd sc=%zd c=%zd k=%d\n", C, sc, c, k);    \
                            fail();                                                             \
                        }                                                                       \
                fx_blk_untile_##SUF(out + base, off, BL, C, sc, tile, 1);                       \
                for (Py_ssize_t i = 0; i < span; ++i) x[i] = (T)-1;                             \
                for (Py_ssize_t c = 0; c < C; ++c)                                              \
                    for (int k = 0; k < BL; ++k) x[base + c * sc + k] = tile[c * BL + k];       \
                for (Py_ssize_t i = 0; i < span; ++i)                                           \
                    if (out[i] != x[i]) {                                                       \
                        printf(#T " lanes untile C=%zd sc=%zd i=%zd\n", C, sc, i);              \
                        fail();                                                                 \
                    }                                                                           \
                free(x);                                                                        \
                free(out);                                                                      \
                free(tile);                                                                     \
            }                                                                                   \
    }

CHECK_BODY(float, 2 * FX_ND, f32)
CHECK_BODY(double, FX_ND, f64)
CHECK_LANES(float, 2 * FX_ND, f32)
CHECK_LANES(double, FX_ND, f64)

int main(void) {
    check_f32();
    check_f64();
    check_lanes_f32();
    check_lanes_f64();
    puts("ok");
    return 0;
}
