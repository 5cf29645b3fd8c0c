/* "mean"'s denominator and gradient scale over class-index targets, in one kernel before
 * the row kernel (mean_scale), which then writes the reduced loss itself: a reduced call is
 * two launches. This kernel replaces a handful of CuPy operations, each of which costs the
 * host more than it costs the device at any but the largest shapes.
 *
 * A two-stage reduction (fx_device.cuh): each lane strides through its block's slice of the
 * targets, BlockLanes combines the lanes, and the last block to finish adds the blocks'
 * partials in index order and writes the result.
 *
 * The block body is host+device: g++ runs it block after block in the CI host test
 * (tests/cuda_host), and the kernel below runs it with device lanes.
 */
#include "fx_device.cuh"

namespace fx {

/* mean_scale: "mean"'s denominator over class-index targets t (outer, inner) and the
 * gradient scale grad_output / denominator, written to out[0] and out[1]. grad_output is
 * *grad_output times grad_output_mul: one of the two is 1.0, so the product is exact, and a
 * number the caller passed needs no device scalar made for it. A target counts
 * its class weight (1 without weights); ignore_index and an index outside [0, C) count
 * nothing (the row kernel makes that row NaN, and the call raises). */
template <class TI> struct MeanScaleArgs {
    const TI* t; long long n, inner, tso, tsi, ignore_index;
    int C; const double* w; int has_w;
    const double* grad_output; double grad_output_mul;
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
        a.out[1] = mean_of(*a.grad_output * a.grad_output_mul, denominator);
    }
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

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
        const double* grad_output, double grad_output_mul, double* partials,
        unsigned int* counter, double* out) {
    const MeanScaleArgs<TI> a = {t, n, inner, tso, tsi, ignore_index, C, w, has_w,
                                 grad_output, grad_output_mul, partials, out};
    two_stage<BLOCK>(a, counter,
                     [](const auto& L, const auto& a, long long G, long long b) {
                         return mean_scale_part(L, a, G, b); },
                     [](const auto& L, const auto& a, long long G) { mean_scale_last(L, a, G); });
}

#endif

}  // namespace fx
