/* The C checks' random numbers: splitmix64, from a fixed seed (every run sees the same
 * arguments). */
#ifndef FASTXENT_CHECK_RANDOM_H
#define FASTXENT_CHECK_RANDOM_H

#include <stdint.h>

static uint64_t state = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1), 53 random bits. */
static double uniform(void) { return (double)(next() >> 11) * 0x1p-53; }

#endif
