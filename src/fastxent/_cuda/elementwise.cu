/* Element-wise kernels: binary_cross_entropy, binary_cross_entropy_with_logits and kl_div,
 * loss and fused gradient, on (d0, d1, d2) views with any element strides per operand
 * (stride 0 broadcasts: weights, pos_weight, a scalar gradient scale), as on the CPU
 * (_cpu/_binary.pyx, _kldiv.pyx).
 *
 * A grid-stride loop over the elements. For a reduced loss the kernel is the two stages of
 * fx_device.cuh: each block adds its threads' losses in double in a fixed order and writes
 * one partial sum, and the last block to finish adds the partials in index order and
 * writes the sum or mean, so a reduced call needs no second kernel. Deterministic for a
 * given grid, no float atomics. A binary_cross_entropy input or target outside [0, 1] sets
 * bit 0 of *err (an integer atomic), which the host raises as a ValueError. The gradient
 * may be the input itself (each element is read before it is written, by the same thread).
 * elem_work is host+device: the CI host test runs it.
 */
#include "fx_device.cuh"

namespace fx {

enum { BCE = 0, BCE_LOGITS = 1, KL_DIV = 2 };

template <class T> struct ElemArgs {
    const T* x; long long d0, d1, d2, xs0, xs1, xs2;
    const T* y; long long ys0, ys1, ys2;
    const double* w; long long ws0, ws1, ws2;
    const double* pw; long long ps0, ps1, ps2; int has_pw;
    int log_target;
    const double* gscale; long long gss0, gss1, gss2; double gmul;   /* as rows.cu's */
    T* loss; long long ls0, ls1, ls2; int want_loss;
    T* g; long long gs0, gs1, gs2; int want_grad;
    int* err;
};

/* The operands every element reads at one address (no stride over an axis longer than
 * one: no weight, no pos_weight or a scalar one, a scalar gradient scale), read and converted
 * once per thread. Per element, each cost a 64-bit load and a float64 conversion, which the
 * device runs at a quarter of its rate (sm_80 and sm_90): three of them for a plain
 * binary_cross_entropy_with_logits, whose element takes about a hundred instructions. */
template <class A> struct Uniform {
    A w, pw, scale;
    bool w_one, pw_one, scale_one;
};

template <int OP, class T> FX_HD Uniform<typename acc_of<T>::type> uniform_operands(
        const ElemArgs<T>& a) {
    typedef typename acc_of<T>::type A;
    auto one = [&](long long s0, long long s1, long long s2) {
        return (s0 == 0 || a.d0 == 1) && (s1 == 0 || a.d1 == 1) && (s2 == 0 || a.d2 == 1);
    };
    Uniform<A> u = {A(1), A(1), A(0), false, false, false};
    u.w_one = OP != KL_DIV && one(a.ws0, a.ws1, a.ws2);
    if (u.w_one) u.w = A(a.w[0]);
    u.pw_one = OP == BCE_LOGITS && a.has_pw && one(a.ps0, a.ps1, a.ps2);
    if (u.pw_one) u.pw = A(a.pw[0]);
    u.scale_one = a.want_grad && one(a.gss0, a.gss1, a.gss2);
    if (u.scale_one) u.scale = A(a.gscale[0] * a.gmul);
    return u;
}

/* Element k (C order over d0, d1, d2): writes its loss and gradient when wanted, returns
 * its loss in double for the block's partial sum. `u`: uniform_operands(a). */
template <int OP, class T> FX_HD double elem_work(const ElemArgs<T>& a,
                                                 const Uniform<typename acc_of<T>::type>& u,
                                                 long long k) {
    typedef typename acc_of<T>::type A;
    constexpr bool SHORT = sizeof(T) == 2;  /* results rounded to 16 bits */
    /* Operands of one layout merge into one axis (_validate.elementwise_views), which needs
     * no division; a division costs about 20 instructions on the device even in 32 bits,
     * a third of the loss's own. */
    long long i0 = 0, i1 = 0, i2 = k;
    if (a.d0 != 1) {
        const long long d12 = a.d1 * a.d2, r = k - (i0 = k / d12) * d12;
        i2 = r - (i1 = r / a.d2) * a.d2;
    } else if (a.d1 != 1) {
        i2 = k - (i1 = k / a.d2) * a.d2;
    }
    const A xv = widen(a.x[i0 * a.xs0 + i1 * a.xs1 + i2 * a.xs2]);
    const A yv = widen(a.y[i0 * a.ys0 + i1 * a.ys1 + i2 * a.ys2]);
    const A wv = OP == KL_DIV ? A(1)
               : u.w_one      ? u.w
                              : A(a.w[i0 * a.ws0 + i1 * a.ws1 + i2 * a.ws2]);
    const bool has_pw = OP == BCE_LOGITS && a.has_pw;
    const A pv = !has_pw ? A(1)
               : u.pw_one ? u.pw
                          : A(a.pw[i0 * a.ps0 + i1 * a.ps1 + i2 * a.ps2]);
    const bool log_target = a.log_target != 0;
    /* binary_cross_entropy's input and target must lie in [0, 1]; NaN fails too */
    if (OP == BCE && !(xv >= A(0) && xv <= A(1) && yv >= A(0) && yv <= A(1))) raise_flag(a.err);
    const A lv = OP == KL_DIV ? kl_loss<A, SHORT>(xv, yv, log_target)
               : OP == BCE    ? bce_loss<A, SHORT>(xv, yv, wv)
                              : bce_logits_loss<A, SHORT>(xv, yv, wv, has_pw, pv);
    if (a.want_loss) a.loss[i0 * a.ls0 + i1 * a.ls1 + i2 * a.ls2] = narrow_to<T>::from(lv);
    if (a.want_grad) {
        const long long gk = i0 * a.gss0 + i1 * a.gss1 + i2 * a.gss2;
        const A scale = u.scale_one ? u.scale : A(a.gscale[gk] * a.gmul);
        const A gv = OP == KL_DIV ? kl_grad<A, SHORT>(yv, log_target, scale)
                   : OP == BCE    ? bce_grad<A, SHORT>(xv, yv, wv, scale)
                                  : bce_logits_grad<A, SHORT>(xv, yv, wv, has_pw, pv, scale);
        a.g[i0 * a.gs0 + i1 * a.gs1 + i2 * a.gs2] = narrow_to<T>::from(gv);
    }
    return (double)lv;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* finish: 0 for per-element losses (nothing is added), 1 for a reduced loss (mode REDUCE_SUM
 * or REDUCE_MEAN_BY_VALUE; partial, one per block; counter zeroed). */
template <int OP, class T, int BLOCK>
__global__ void __launch_bounds__(BLOCK) elementwise(
        const T* x, long long d0, long long d1, long long d2,
        long long xs0, long long xs1, long long xs2,
        const T* y, long long ys0, long long ys1, long long ys2,
        const double* w, long long ws0, long long ws1, long long ws2,
        const double* pw, long long ps0, long long ps1, long long ps2, int has_pw,
        int log_target,
        const double* gscale, long long gss0, long long gss1, long long gss2, double gmul,
        T* loss, long long ls0, long long ls1, long long ls2, int want_loss,
        T* g, long long gs0, long long gs1, long long gs2, int want_grad,
        int* err, double* partial, unsigned int* counter, int finish, int mode,
        double denominator, void* out, int out_dtype) {
    const ElemArgs<T> a = {x, d0, d1, d2, xs0, xs1, xs2, y, ys0, ys1, ys2, w, ws0, ws1, ws2,
                           pw, ps0, ps1, ps2, has_pw, log_target, gscale, gss0, gss1, gss2,
                           gmul, loss, ls0, ls1, ls2, want_loss, g, gs0, gs1, gs2, want_grad,
                           err};
    const long long n = d0 * d1 * d2;
    const auto u = uniform_operands<OP>(a);
    double acc = 0.0;
    for (long long k = (long long)blockIdx.x * BLOCK + threadIdx.x; k < n;
         k += (long long)gridDim.x * BLOCK) {
        acc += elem_work<OP>(a, u, k);
    }
    if (finish)                                          /* uniform over the grid */
        finish_reduced<BLOCK>(acc, partial, counter, mode, nullptr, denominator, out,
                              out_dtype);
}

#endif

}  // namespace fx
