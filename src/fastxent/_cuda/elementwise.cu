/* Element-wise kernels: binary_cross_entropy, binary_cross_entropy_with_logits and kl_div,
 * loss and fused gradient, on (d0, d1, d2) views with any element strides per operand
 * (stride 0 broadcasts: weights, pos_weight, a scalar gradient scale), as on the CPU
 * (_cpu/_binary.pyx, _kldiv.pyx).
 *
 * A grid-stride loop over the elements, by 16-byte groups where the operands' layout allows
 * (elem_split). For a reduced loss the kernel is the two stages of
 * fx_device.cuh: each block adds its threads' losses in double in a fixed order and writes
 * one partial sum, and the last block to finish adds the partials in index order and
 * writes the sum or mean, so a reduced call needs no second kernel. Deterministic for a
 * given grid, no float atomics. A binary_cross_entropy input or target outside [0, 1] sets
 * bit 0 of *err (an integer atomic), which the host raises as a ValueError. The gradient
 * may be the input itself (each element is read before it is written, by the same thread).
 * elem_thread is host+device: the CI host test runs it, thread by thread.
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

/* One element's loss, and its gradient into *gv when wanted, in A arithmetic (SHORT: results
 * rounded to 16 bits, fx_device.cuh). `log_target`: kl_div's, a.log_target. */
template <int OP, class T, class A> FX_HD A elem_values(const ElemArgs<T>& a, A xv, A yv, A wv,
                                                       A pv, A scale, bool log_target, A* gv) {
    constexpr bool SHORT = sizeof(T) == 2;
    const bool has_pw = OP == BCE_LOGITS && a.has_pw;
    /* binary_cross_entropy's input and target must lie in [0, 1]; NaN fails too */
    if (OP == BCE && !(xv >= A(0) && xv <= A(1) && yv >= A(0) && yv <= A(1))) raise_flag(a.err);
    if (a.want_grad)
        *gv = OP == KL_DIV ? kl_grad<A, SHORT>(yv, log_target, scale)
            : OP == BCE    ? bce_grad<A, SHORT>(xv, yv, wv, scale)
                           : bce_logits_grad<A, SHORT>(xv, yv, wv, has_pw, pv, scale);
    return OP == KL_DIV ? kl_loss<A, SHORT>(xv, yv, log_target)
         : OP == BCE    ? bce_loss<A, SHORT>(xv, yv, wv)
                        : bce_logits_loss<A, SHORT>(xv, yv, wv, has_pw, pv);
}

/* Element (i0, i1, i2) of the (d0, d1, d2) view; an operand's element is at(its strides).
 * Pos<false> is for a view of one merged axis (d0 = d1 = 1), where i2 alone moves and a
 * position needs no division: a division costs about 20 instructions on the device even in
 * 32 bits, a third of the loss's own. */
template <bool INDEXED> struct Pos {
    long long i0, i1, i2;
    FX_HD long long at(long long s0, long long s1, long long s2) const {
        return INDEXED ? i0 * s0 + i1 * s1 + i2 * s2 : i2 * s2;
    }
    /* the next element in C order */
    FX_HD void next(long long d1, long long d2) {
        if (++i2 != d2 || !INDEXED) return;
        i2 = 0;
        if (++i1 != d1) return;
        i1 = 0;
        ++i0;
    }
    /* `by` elements further on, given as pos_of(by): digits added with their carries
     * (INDEXED only: on one axis the position is the element's index itself) */
    FX_HD void advance(const Pos by, long long d1, long long d2) {
        if (!INDEXED) return;
        i2 += by.i2;
        if (i2 >= d2) {
            i2 -= d2;
            ++i1;
        }
        i1 += by.i1;
        if (i1 >= d1) {
            i1 -= d1;
            ++i0;
        }
        i0 += by.i0;
    }
};

/* The position of element k (C order over d0, d1, d2). */
template <bool INDEXED, class T> FX_HD Pos<INDEXED> pos_of(const ElemArgs<T>& a, long long k) {
    Pos<INDEXED> p = {0, 0, k};
    if (!INDEXED) return p;
    if (a.d0 != 1) {
        const long long d12 = a.d1 * a.d2, r = k - (p.i0 = k / d12) * d12;
        p.i2 = r - (p.i1 = r / a.d2) * a.d2;
    } else if (a.d1 != 1) {
        p.i2 = k - (p.i1 = k / a.d2) * a.d2;
    }
    return p;
}

/* The element at position p: writes its loss and gradient when wanted, returns its loss in
 * double for the block's partial sum. `u`: uniform_operands(a). */
template <int OP, class T, bool INDEXED>
FX_HD double elem_work(const ElemArgs<T>& a, const Uniform<typename acc_of<T>::type>& u,
                       const Pos<INDEXED> p) {
    typedef typename acc_of<T>::type A;
    const A xv = widen(a.x[p.at(a.xs0, a.xs1, a.xs2)]);
    const A yv = widen(a.y[p.at(a.ys0, a.ys1, a.ys2)]);
    const A wv = OP == KL_DIV ? A(1)
               : u.w_one      ? u.w
                              : A(a.w[p.at(a.ws0, a.ws1, a.ws2)]);
    const A pv = !(OP == BCE_LOGITS && a.has_pw) ? A(1)
               : u.pw_one ? u.pw
                          : A(a.pw[p.at(a.ps0, a.ps1, a.ps2)]);
    const A scale = !a.want_grad ? A(0)
                  : u.scale_one  ? u.scale
                                 : A(a.gscale[p.at(a.gss0, a.gss1, a.gss2)] * a.gmul);
    A gv = A(0);
    const A lv = elem_values<OP>(a, xv, yv, wv, pv, scale, a.log_target != 0, &gv);
    if (a.want_loss) a.loss[p.at(a.ls0, a.ls1, a.ls2)] = narrow_to<T>::from(lv);
    if (a.want_grad) a.g[p.at(a.gs0, a.gs1, a.gs2)] = narrow_to<T>::from(gv);
    return (double)lv;
}

/* Element k, anywhere: a view of more than one axis finds its position by division. */
template <int OP, class T> FX_HD double elem_work(const ElemArgs<T>& a,
                                                 const Uniform<typename acc_of<T>::type>& u,
                                                 long long k) {
    return elem_work<OP>(a, u, pos_of<true>(a, k));
}

/* Where x, y and the outputs hold the view's elements densely in C order (each at unit
 * stride, the outer axes following on), all at the same offset from a 16-byte boundary, the
 * elements go as rows.cu's rows do: `head` one at a time up to the first boundary, then
 * `groups` groups of GROUP<T> (one vector access per operand), then the tail. The weights,
 * pos_weight and gradient scale are read element by element at their own strides: without
 * INDEXED only along one merged axis, with it along all three (a per-class pos_weight over
 * (N, C) keeps two). Element by element, a thread kept 2 bytes per operand of a 16-bit loss
 * in flight (4 of float32): about 8 KB per multiprocessor at full occupancy, a fraction of
 * what HBM's latency asks. {0, 0}: every element one at a time. */
template <bool INDEXED, class T> FX_HD Split<long long> elem_split(const ElemArgs<T>& a,
                                                                 long long n) {
    const Split<long long> r = {0, 0};
    auto dense = [&](long long s0, long long s1, long long s2) {
        return s2 == 1 && (a.d1 == 1 || s1 == a.d2) && (a.d0 == 1 || s0 == a.d1 * a.d2);
    };
    if ((!INDEXED && (a.d0 != 1 || a.d1 != 1)) || !dense(a.xs0, a.xs1, a.xs2) ||
        !dense(a.ys0, a.ys1, a.ys2) || (a.want_loss && !dense(a.ls0, a.ls1, a.ls2)) ||
        (a.want_grad && !dense(a.gs0, a.gs1, a.gs2)))
        return r;
    const unsigned long long mis = (unsigned long long)a.x % 16;
    auto same = [&](const void* p) { return (unsigned long long)p % 16 == mis; };
    if (!same(a.y) || (a.want_loss && !same(a.loss)) || (a.want_grad && !same(a.g))) return r;
    return split_row(a.x, n, 1);
}

/* A group to global memory in 16-byte stores. nvcc 13 (sm_90) split elem_group's aggregate
 * store into 32-bit ones, four a group (its loads stayed 16-byte); PTX's vector store keeps
 * one. */
template <class T> FX_HD void store_vec_global(T* p, const Vec<T>& v) {
#if defined(__CUDA_ARCH__)
    FX_UNROLL for (int i = 0; i < (int)(sizeof(Vec<T>) / 16); ++i) {
        const unsigned int* w = reinterpret_cast<const unsigned int*>(&v) + 4 * i;
        asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};"
                     :: "l"(reinterpret_cast<char*>(p) + 16 * i), "r"(w[0]), "r"(w[1]),
                        "r"(w[2]), "r"(w[3]) : "memory");
    }
#else
    store_vec(p, v);
#endif
}

/* The group of elements k.. at position p (a vector access per operand); returns their
 * losses' sum in double, added element by element as elem_work's callers add them. The
 * group lies in one row of the view (i2 to i2 + GROUP - 1), so each other operand's
 * elements step by its innermost stride from its element at p. LOG_TARGET is kl_div's
 * a.log_target, fixed per instantiation so that a group does not evaluate both forms. */
template <int OP, bool LOG_TARGET, bool INDEXED, class T>
FX_HD double elem_group(const ElemArgs<T>& a, const Uniform<typename acc_of<T>::type>& u,
                        long long k, const Pos<INDEXED> p) {
    typedef typename acc_of<T>::type A;
    const Vec<T> vx = load_vec(a.x + k), vy = load_vec(a.y + k);
    const double* w = a.w + p.at(a.ws0, a.ws1, a.ws2);
    const double* pw = a.pw + p.at(a.ps0, a.ps1, a.ps2);
    const double* gscale = a.gscale + p.at(a.gss0, a.gss1, a.gss2);
    Vec<T> vl, vg;
    double acc = 0.0;
    FX_UNROLL for (int e = 0; e < GROUP<T>; ++e) {
        const A wv = OP == KL_DIV ? A(1) : u.w_one ? u.w : A(w[e * a.ws2]);
        const A pv = !(OP == BCE_LOGITS && a.has_pw) ? A(1)
                   : u.pw_one ? u.pw : A(pw[e * a.ps2]);
        const A scale = !a.want_grad ? A(0)
                      : u.scale_one  ? u.scale : A(gscale[e * a.gss2] * a.gmul);
        A gv = A(0);
        const A lv = elem_values<OP>(a, A(widen(vx.v[e])), A(widen(vy.v[e])), wv, pv, scale,
                                     LOG_TARGET, &gv);
        vl.v[e] = narrow_to<T>::from(lv);
        vg.v[e] = narrow_to<T>::from(gv);
        acc += (double)lv;
    }
    if (a.want_loss) store_vec_global(a.loss + k, vl);
    if (a.want_grad) store_vec_global(a.g + k, vg);
    return acc;
}

/* Thread t of nt's groups, j = t, t + nt, ..., their losses added to `acc` in turn. With
 * INDEXED a thread's position moves by the digits of its stride (two divisions a thread,
 * none a group), and a group that crosses a row of the view (fewer than GROUP<T> elements
 * left in the row) goes one element at a time, not unrolled: its registers are the
 * kernel's. */
template <int OP, bool LOG_TARGET, bool INDEXED, class T>
FX_HD double elem_groups(const ElemArgs<T>& a, const Uniform<typename acc_of<T>::type>& u,
                         const Split<long long>& sp, long long t, long long nt, double acc) {
    if (t >= sp.groups) return acc;     /* no group: no division (an empty view may hold a 0) */
    Pos<INDEXED> p = pos_of<INDEXED>(a, sp.head + GROUP<T> * t);
    const Pos<INDEXED> stride = pos_of<INDEXED>(a, GROUP<T> * nt);
    for (long long j = t; j < sp.groups; j += nt) {
        const long long k = sp.head + GROUP<T> * j;
        if (!INDEXED) p = pos_of<INDEXED>(a, k);    /* k itself: no second induction variable */
        if (!INDEXED || p.i2 + GROUP<T> <= a.d2) {
            acc += elem_group<OP, LOG_TARGET>(a, u, k, p);
        } else {                        /* a group across rows: its elements one at a time */
            Pos<INDEXED> q = p;
            FX_NO_UNROLL for (int e = 0; e < GROUP<T>; ++e, q.next(a.d1, a.d2))
                acc += elem_work<OP>(a, u, q);
        }
        p.advance(stride, a.d1, a.d2);
    }
    return acc;
}

/* Thread t of nt: its elements' losses, summed in double in its own order (the head
 * element t, groups t, t + nt, ..., then the tail; or every nt-th element). INDEXED: the
 * view has more than one axis (the kernel's template argument). */
template <int OP, bool INDEXED, class T>
FX_HD double elem_thread(const ElemArgs<T>& a, const Uniform<typename acc_of<T>::type>& u,
                         long long t, long long nt) {
    const long long n = a.d0 * a.d1 * a.d2;
    const Split<long long> sp = elem_split<INDEXED>(a, n);
    double acc = 0.0;
    for (long long k = t; k < sp.head; k += nt) acc += elem_work<OP>(a, u, k);
    acc = OP == KL_DIV && a.log_target ? elem_groups<OP, true, INDEXED>(a, u, sp, t, nt, acc)
                                       : elem_groups<OP, false, INDEXED>(a, u, sp, t, nt, acc);
    for (long long k = sp.head + GROUP<T> * sp.groups + t; k < n; k += nt)
        acc += elem_work<OP>(a, u, k);
    return acc;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* finish: 0 for per-element losses (nothing is added), 1 for a reduced loss (mode REDUCE_SUM
 * or REDUCE_MEAN_BY_VALUE; partial, one per block; counter zeroed). INDEXED: the view keeps
 * more than one axis (elem_split); either instantiation is right for any view. The minimum
 * blocks a multiprocessor keep ptxas (nvcc 13) from its own register target, which spilled
 * in the 16-bit INDEXED kernels (at 64) and in float64 kl_div (at 63); with 0 the other
 * kernels keep their registers within a few of before. */
template <int OP, class T, int BLOCK, bool INDEXED>
__global__ void __launch_bounds__(BLOCK, INDEXED ? 2 : sizeof(T) == 8 ? 1 : 0) elementwise(
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
    const auto u = uniform_operands<OP>(a);
    const double acc = elem_thread<OP, INDEXED>(a, u,
                                                (long long)blockIdx.x * BLOCK + threadIdx.x,
                                                (long long)gridDim.x * BLOCK);
    if (finish)                                          /* uniform over the grid */
        finish_reduced<BLOCK>(acc, partial, counter, mode, nullptr, denominator, out,
                              out_dtype);
}

#endif

}  // namespace fx
