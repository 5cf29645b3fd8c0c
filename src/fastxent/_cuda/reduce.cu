/* The reductions around a loss kernel, so that a reduced call is three launches: the
 * denominator of "mean" and the gradient scale before the row kernel (mean_scale), and the
 * reduced loss after it (total). Each replaces a handful of CuPy operations, each of which
 * costs the host more than these kernels cost the device at any but the largest shapes.
 *
 * Both read n items split into G contiguous slices, one per block. A block adds its slice in
 * a fixed order (each lane strides through it, then BlockLanes combines the lanes) and
 * writes one float64 partial; the block that finishes last (an integer ticket, counted in
 * memory the host zeroes) adds the G partials in index order and writes the result. So the
 * result is deterministic for a given grid, and no float atomics are used.
 *
 * The block bodies are host+device functions: g++ runs them block after block in the CI
 * host test (tests/cuda_host), and the kernels below run them with device lanes.
 */
#include "fx_device.cuh"

namespace fx {

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

/* The lanes' sum of partials[0, G), in a fixed order. */
template <class Lanes> FX_HD double sum_partials(const Lanes& L, const double* partials,
                                                 long long G) {
    return slice_sum(L, G, 1, 0, [&](long long j) { return load_from_other_block(partials + j); });
}

/* mean_scale: "mean"'s denominator over class-index targets t (outer, inner) and the
 * gradient scale grad_output / denominator, written to out[0] and out[1]. A target counts
 * its class weight (1 without weights); ignore_index and an index outside [0, C) count
 * nothing (the row kernel makes that row NaN, and the call raises). */
template <class TI> struct MeanScaleArgs {
    const TI* t; long long n, inner, tso, tsi, ignore_index;
    int C; const double* w; int has_w;
    const double* grad_output;
    double* partials; double* out;
};

template <class TI, class Lanes>
FX_HD double mean_scale_part(const Lanes& L, const MeanScaleArgs<TI>& a, long long G,
                             long long b) {
    return slice_sum(L, a.n, G, b, [&](long long k) {
        const long long o = k / a.inner, i = k - o * a.inner;
        const long long tv = (long long)a.t[o * a.tso + i * a.tsi];
        if (tv == a.ignore_index || tv < 0 || tv >= a.C) return 0.0;
        return a.has_w ? a.w[tv] : 1.0;
    });
}

template <class TI, class Lanes>
FX_HD void mean_scale_last(const Lanes& L, const MeanScaleArgs<TI>& a, long long G) {
    const double denominator = sum_partials(L, a.partials, G);
    if (L.lane() == 0) {
        a.out[0] = denominator;
        a.out[1] = mean_of(*a.grad_output, denominator);
    }
}

/* total: the sum of n float64 values (per-row losses, or an element-wise kernel's block
 * partials), or their mean, as one T in out[0]. */
template <class T> struct TotalArgs {
    const double* values; long long n;
    int mode; const double* denominator; double denominator_value;
    double* partials; T* out;
};

template <class T, class Lanes>
FX_HD double total_part(const Lanes& L, const TotalArgs<T>& a, long long G, long long b) {
    return slice_sum(L, a.n, G, b, [&](long long k) { return a.values[k]; });
}

template <class T, class Lanes>
FX_HD void total_last(const Lanes& L, const TotalArgs<T>& a, long long G) {
    const double total = sum_partials(L, a.partials, G);
    if (L.lane() == 0) {
        const double r = a.mode == REDUCE_SUM ? total
                       : mean_of(total, a.mode == REDUCE_MEAN_BY_POINTER ? *a.denominator
                                                                          : a.denominator_value);
        a.out[0] = narrow_double<T>(r);
    }
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

/* A reduce.cu kernel: this block's part(lanes, G, b), and in the last block last(lanes, G). */
template <int BLOCK, class Args, class Part, class Last>
__device__ void two_stage(const Args& a, unsigned int* counter, Part part, Last last) {
    __shared__ double slots[BLOCK / 32];
    const BlockLanes<BLOCK, double> lanes = {slots};
    if (publish_partial(part(lanes, a, gridDim.x, blockIdx.x), a.partials, counter))
        last(lanes, a, gridDim.x);
}

template <class TI, int BLOCK>
__global__ void __launch_bounds__(BLOCK) mean_scale(
        const TI* t, long long n, long long inner, long long tso, long long tsi,
        long long ignore_index, int C, const double* w, int has_w,
        const double* grad_output, double* partials, unsigned int* counter, double* out) {
    const MeanScaleArgs<TI> a = {t, n, inner, tso, tsi, ignore_index, C, w, has_w,
                                 grad_output, partials, out};
    two_stage<BLOCK>(a, counter,
                     [](const auto& L, const auto& a, long long G, long long b) {
                         return mean_scale_part(L, a, G, b); },
                     [](const auto& L, const auto& a, long long G) { mean_scale_last(L, a, G); });
}

template <class T, int BLOCK>
__global__ void __launch_bounds__(BLOCK) total(
        const double* values, long long n, int mode, const double* denominator,
        double denominator_value, double* partials, unsigned int* counter, T* out) {
    const TotalArgs<T> a = {values, n, mode, denominator, denominator_value, partials, out};
    two_stage<BLOCK>(a, counter,
                     [](const auto& L, const auto& a, long long G, long long b) {
                         return total_part(L, a, G, b); },
                     [](const auto& L, const auto& a, long long G) { total_last(L, a, G); });
}

#endif

}  // namespace fx
