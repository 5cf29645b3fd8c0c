/* Class-axis kernels: cross_entropy (class indices, probabilities), nll_loss, logsumexp,
 * softmax and log_softmax, forward and fused gradient, on an (outer, C, inner) view with
 * any element strides (the CPU kernels' layout, _cpu/_xent.pyx).
 *
 * One row body (row_work), three mappings of lanes to rows (NL lanes per row, BLOCK threads):
 *   NL = 1            a thread per row: class stride != 1 ((N, C, d1..dK), Fortran views,
 *                     where neighbouring threads read neighbouring rows) or tiny C;
 *   NL = 32           a warp per row, shuffle reductions (BLOCK / 32 rows per block);
 *   NL = BLOCK        a block per row, shared-memory reductions; with CACHED the row is kept
 *                     in dynamic shared memory, so the logits are read once from HBM and the
 *                     exponential is evaluated once per logit (1 read + 1 write when fused).
 * Passes per row: with the row cached, (1) max into shared memory, (2) exp(x - max) once
 * per logit, kept, with the sums; otherwise (1) one streaming pass for the max and the sum
 * of exp(x - max) (online softmax: the sum is rescaled when the max grows), plus a pass for
 * the sums relative to the max when label smoothing or probability targets need them.
 * Then (3) the outputs. Pass 1, the one that reads the logits from HBM, loads four elements at
 * a time (16 bytes of float32) wherever a row of unit stride starts on a vector boundary
 * (vec_groups); the later passes, served by the row cache or by L2, keep one element per
 * load (vectorising them made the 512-thread kernels spill registers). Reductions run in a
 * fixed order (butterfly shuffles, then warp slots in index order) and every row's loss goes
 * to its own slot in `rows_out` (double), which the host sums deterministically: no float
 * atomics, and repeats are bit-identical.
 *
 * Targets are validated on the device: a class index outside [0, C) that is not
 * ignore_index sets bit 0 of *err (an integer atomic) and gives a NaN loss and NaN gradient
 * row; the host raises IndexError when it reads the flag. Nothing asserts on the device.
 * The gradient may be the logits themselves (grad_out=input): every lane reads the target's
 * logit before the reductions (a barrier) and afterwards writes only elements it read.
 *
 * row_work is a host+device function: g++ runs it with one lane per row (HostLanes) in the
 * CI host test, against the CPU backend; the kernels below run it with device lanes.
 */
#include "fx_device.cuh"

namespace fx {

enum { CE_INDEX = 0, CE_PROB = 1, NLL = 2, LSE = 3, SOFTMAX = 4, LOG_SOFTMAX = 5 };

/* Everything a row needs, as the kernel's arguments describe it (element strides). */
template <class T, class TI> struct RowArgs {
    const T* x; long long outer; int C; long long inner; long long so, sc, si;
    const TI* t; long long tso, tsi, ignore_index;
    const T* q; long long qso, qsc, qsi;
    const double* w; int has_w; double eps;
    const double* gscale; long long gss_o, gss_i;
    double* rows_out;
    T* g; long long gso, gsc, gsi; int want_grad;
    int* err;
};

/* One lane per row, on the host (the CI test) or in a thread-per-row kernel. */
struct HostLanes {
    static const int NL = 1;
    FX_HD int lanes() const { return 1; }
    FX_HD int lane() const { return 0; }
    template <class A> FX_HD A max(A v) const { return v; }
    template <class A> FX_HD A sum(A v) const { return v; }
    FX_HD void sync() const {}
    FX_HD void flag(int* err) const {
#if defined(__CUDA_ARCH__)
        atomicOr(err, 1);
#else
        *err |= 1;
#endif
    }
};

/* Four elements of T as one vector load reads them: 16 bytes of float32, 8 of the 16-bit
 * types, 32 of float64 (two 16-byte loads). */
template <class T> struct alignas(4 * sizeof(T) < 16 ? 4 * sizeof(T) : 16) Vec4 {
    T v[4];
};

template <class T> FX_HD Vec4<T> load4(const T* p) {
    Vec4<T> r;
#if defined(__CUDA_ARCH__)
    r = *reinterpret_cast<const Vec4<T>*>(p);          /* ld.global.v4 / v2 */
#else
    /* the host test stands in for the device: a misaligned vector load would fault there */
    if (((unsigned long long)p % alignof(Vec4<T>)) != 0) __builtin_trap();
    __builtin_memcpy(&r, p, sizeof r);
#endif
    return r;
}

/* Groups of four classes a lane reads with one load each: rows of unit stride that start on
 * a vector boundary (every row when C is a multiple of 4 and the array is aligned). Lane l
 * then owns groups l, l + NL, ... and the last C % 4 classes c = 4 * groups + l, ...;
 * otherwise classes l, l + NL, ... (vec_groups returns 0). */
template <class T> FX_HD int vec_groups(const T* x, int n, long long s) {
    return s == 1 && (unsigned long long)x % alignof(Vec4<T>) == 0 ? n / 4 : 0;
}

/* One logit into the streaming pass: the running max and the sum of exp(x - max), rescaled
 * when the max grows (a NaN never raises it); logsumexp also counts NaN logits. */
template <int OP, class A> FX_HD void online_add(A v, A& m, RowSums<A>& s) {
    const A inf = A(inf_f());
    if (v > m) {
        s.total *= fx_exp(m - v);
        m = v;
    }
    s.total += v == -inf ? A(0) : fx_exp(v - m);
    if (OP == LSE && fx_isnan(v)) s.a += A(1);
}

template <int OP, bool CACHED, class T, class TI, class Lanes>
FX_HD void row_work(const Lanes& L, const RowArgs<T, TI>& a, long long row, bool active,
                    typename acc_of<T>::type* cache) {
    typedef typename acc_of<T>::type A;
    const int NL = L.lanes(), lane = L.lane(), C = a.C;
    const long long o = active ? row / a.inner : 0, i = active ? row - o * a.inner : 0;
    const T* xr = a.x + o * a.so + i * a.si;
    T* gr = a.g + o * a.gso + i * a.gsi;
    const int n = active ? C : 0;           /* inactive lanes still join every reduction */
    const A eps = A(a.eps);
    const A nan = A(nan_f()), inf = A(inf_f());

    long long y = -1;
    bool invalid = false;
    A xy = A(0), wy = A(1);
    if (OP == CE_INDEX || OP == NLL) {
        if (active) {
            const long long tv = (long long)a.t[o * a.tso + i * a.tsi];
            if (tv != a.ignore_index) {
                if (tv < 0 || tv >= C) invalid = true;
                else y = tv;
            }
        }
        if (y >= 0) {
            xy = widen(xr[y * a.sc]);
            if (a.has_w) wy = A(a.w[y]);
        }
    }

    if (OP == NLL) {
        L.sync();                           /* x[y] is read by every lane before any write */
        if (active && lane == 0) {
            a.rows_out[row] = invalid ? (double)nan : (y >= 0 ? (double)(-wy * xy) : 0.0);
            if (invalid) L.flag(a.err);
        }
        if (active && a.want_grad) {
            const A scale = A(a.gscale[o * a.gss_o + i * a.gss_i]);
            const A fill = invalid ? nan : A(0);
            for (int c = lane; c < n; c += NL) {
                gr[c * a.gsc] = narrow_to<T>::from(c == y ? -scale * wy : fill);
            }
        }
        return;
    }

    const T* qr = a.q + o * a.qso + i * a.qsi;
    RowSums<A> s = {A(0), A(0), A(0)};
    A m = -inf;
    /* The op's sums relative to the row's max, once the max is known. */
    auto add_relative = [&](int c, A v) {
        if (OP == CE_INDEX && eps > A(0)) {
            const A wc = a.has_w ? A(a.w[c]) : A(1);
            s.a += wc;                      /* W = sum_c w_c, for the smoothing terms */
            s.b += wc * (m - v);
        }
        if (OP == CE_PROB) {
            const A wq = (a.has_w ? A(a.w[c]) : A(1)) * smoothed(A(widen(qr[c * a.qsc])), eps, C);
            s.a += wq;
            s.b += wq * (m - v);
        }
        if (OP == LSE && fx_isnan(v)) s.a += A(1);
    };
    if (CACHED) {
        /* pass 1: the maximum (NaN skipped; it reaches the sum through exp) */
        const int groups = vec_groups(xr, n, a.sc);
        for (int j = lane; j < groups; j += NL) {
            const Vec4<T> v = load4(xr + 4 * j);
            const A v0 = widen(v.v[0]), v1 = widen(v.v[1]), v2 = widen(v.v[2]), v3 = widen(v.v[3]);
            cache[4 * j] = v0;
            cache[4 * j + 1] = v1;
            cache[4 * j + 2] = v2;
            cache[4 * j + 3] = v3;
            m = fx_max(m, fx_max(fx_max(v0, v1), fx_max(v2, v3)));
        }
        for (int c = 4 * groups + lane; c < n; c += NL) {
            const A v = widen(xr[c * a.sc]);
            cache[c] = v;
            m = fx_max(m, v);
        }
        m = L.max(m);
        if (OP == LSE && m == -inf) m = A(0);   /* a row of -inf: exp(-inf) = 0, lse = -inf */
        /* pass 2, from shared memory: exp(x - m) once per logit, kept for the outputs */
        for (int c = lane; c < n; c += NL) {
            const A v = cache[c];
            const A e = fx_exp(v - m);
            s.total += e;
            add_relative(c, v);
            cache[c] = e;
        }
    } else {
        /* pass 1, streaming: the running max and sum of exp(x - max), rescaled when the max
         * grows (online softmax), so the logits are read once here. A -inf logit adds 0
         * (exp(-inf - max) for any finite max); a row without a finite or +inf max is
         * NaN below, as exp(-inf - -inf) makes it in the two-pass form. */
        const int groups = vec_groups(xr, n, a.sc);
        for (int j = lane; j < groups; j += NL) {
            const Vec4<T> v = load4(xr + 4 * j);
            for (int e = 0; e < 4; ++e) online_add<OP>(A(widen(v.v[e])), m, s);
        }
        for (int c = 4 * groups + lane; c < n; c += NL) online_add<OP>(A(widen(xr[c * a.sc])), m, s);
        const A M = L.max(m);
        if (m < M) s.total *= fx_exp(m - M);   /* this lane's sum, relative to the row's max */
        m = M;
        if (m == -inf) {
            if (OP == LSE) { m = A(0); s.total = A(0); }   /* lse = -inf, or NaN (below) */
            else s.total = nan;
        }
        /* pass 2 (smoothing, probabilities): the sums relative to the max */
        if ((OP == CE_INDEX && eps > A(0)) || OP == CE_PROB) {
            for (int c = lane; c < n; c += NL) add_relative(c, A(widen(xr[c * a.sc])));
        }
    }
    s.total = L.sum(s.total);
    if (OP == CE_INDEX || OP == CE_PROB || OP == LSE) s.a = L.sum(s.a);
    if (OP == CE_INDEX || OP == CE_PROB) s.b = L.sum(s.b);
    if (!active) return;

    /* pass 3: the row's loss and its outputs */
    const A W = a.has_w ? s.a : A(C);
    const A scale = (OP == CE_INDEX || OP == CE_PROB) && a.want_grad
                        ? A(a.gscale[o * a.gss_o + i * a.gss_i]) : A(0);
    if (OP == CE_INDEX) {
        if (lane == 0) {
            const A loss = invalid ? nan : (y < 0 ? A(0) : index_row_loss(m, s, xy, wy, W, eps, C));
            a.rows_out[row] = (double)loss;
            if (invalid) L.flag(a.err);
        }
        if (a.want_grad && y < 0) {
            /* PyTorch's ignored row: zero, or NaN where the softmax is NaN */
            const T fill = narrow_to<T>::from(invalid || fx_isnan(s.total) ? nan : A(0));
            for (int c = lane; c < n; c += NL) gr[c * a.gsc] = fill;
        } else if (a.want_grad) {
            const IndexGrad<A> k = index_row_grad(s, wy, W, eps, C, scale);
            const A gy = index_target_grad(k, m, s, xy, wy, eps, C, scale);
            for (int c = lane; c < n; c += NL) {
                const A e = CACHED ? cache[c] : fx_exp(A(widen(xr[c * a.sc])) - m);
                const A v = c == y ? gy : k.ka * e - k.kb * (a.has_w ? A(a.w[c]) : A(1));
                gr[c * a.gsc] = narrow_to<T>::from(v);
            }
        }
    } else if (OP == CE_PROB) {
        if (lane == 0) a.rows_out[row] = (double)prob_row_loss(s);
        if (a.want_grad) {
            const A k = scale * s.a / s.total;
            for (int c = lane; c < n; c += NL) {
                const A e = CACHED ? cache[c] : fx_exp(A(widen(xr[c * a.sc])) - m);
                const A wq = (a.has_w ? A(a.w[c]) : A(1)) * smoothed(A(widen(qr[c * a.qsc])), eps, C);
                gr[c * a.gsc] = narrow_to<T>::from(k * e - scale * wq);
            }
        }
    } else if (OP == LSE) {
        if (lane == 0) {
            A lse = m + fx_log(s.total);
            if (s.a > A(0)) lse = nan;                  /* any NaN logit */
            else if (m == inf) lse = inf;
            a.rows_out[row] = (double)lse;
        }
    } else if (OP == SOFTMAX) {
        const A r = A(1) / s.total;
        for (int c = lane; c < n; c += NL) {
            const A e = CACHED ? cache[c] : fx_exp(A(widen(xr[c * a.sc])) - m);
            gr[c * a.gsc] = narrow_to<T>::from(e * r);
        }
    } else if (OP == LOG_SOFTMAX) {
        const A ls = fx_log(s.total);
        for (int c = lane; c < n; c += NL) {
            /* from the logit, not the cached exponential: (x - m) - log(sum) */
            gr[c * a.gsc] = narrow_to<T>::from((A(widen(xr[c * a.sc])) - m) - ls);
        }
    }
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* NL lanes of one warp per row (NL <= 32, a power of two): butterfly shuffles, so every lane
 * ends with the same bits. */
template <int NL_> struct WarpLanes {
    static const int NL = NL_;
    __device__ int lanes() const { return NL; }
    __device__ int lane() const { return (int)(threadIdx.x % NL); }
    template <class A> __device__ A max(A v) const {
#pragma unroll
        for (int o = NL / 2; o > 0; o >>= 1) v = fx_max(v, __shfl_xor_sync(0xffffffffu, v, o, NL));
        return v;
    }
    template <class A> __device__ A sum(A v) const {
#pragma unroll
        for (int o = NL / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, NL);
        return v;
    }
    __device__ void sync() const { __syncwarp(); }
    __device__ void flag(int* err) const { atomicOr(err, 1); }
};

/* All BLOCK threads on one row: warp butterflies, then the warps' slots in index order. */
template <int BLOCK, class A> struct BlockLanes {
    static const int NL = BLOCK;
    A* slots;
    __device__ int lanes() const { return NL; }
    __device__ int lane() const { return (int)threadIdx.x; }
    template <bool MAX> __device__ A reduce(A v) const {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const A u = __shfl_xor_sync(0xffffffffu, v, o);
            v = MAX ? fx_max(v, u) : v + u;
        }
        if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
        __syncthreads();
        A r = slots[0];
        for (int k = 1; k < BLOCK / 32; ++k) r = MAX ? fx_max(r, slots[k]) : r + slots[k];
        __syncthreads();
        return r;
    }
    __device__ A max(A v) const { return reduce<true>(v); }
    __device__ A sum(A v) const { return reduce<false>(v); }
    __device__ void sync() const { __syncthreads(); }
    __device__ void flag(int* err) const { atomicOr(err, 1); }
};

template <int NL, int BLOCK, class A> struct LanesFor { typedef BlockLanes<BLOCK, A> type; };
template <int BLOCK, class A> struct LanesFor<1, BLOCK, A> { typedef HostLanes type; };
template <int BLOCK, class A> struct LanesFor<32, BLOCK, A> { typedef WarpLanes<32> type; };

template <int OP, class T, class TI, int NL, int BLOCK, bool CACHED>
__global__ void __launch_bounds__(BLOCK) rows(
        const T* x, long long outer, int C, long long inner,
        long long so, long long sc, long long si,
        const TI* t, long long tso, long long tsi, long long ignore_index,
        const T* q, long long qso, long long qsc, long long qsi,
        const double* w, int has_w, double eps,
        const double* gscale, long long gss_o, long long gss_i,
        double* rows_out,
        T* g, long long gso, long long gsc, long long gsi, int want_grad,
        int* err) {
    typedef typename acc_of<T>::type A;
    const RowArgs<T, TI> a = {x, outer, C, inner, so, sc, si, t, tso, tsi, ignore_index,
                              q, qso, qsc, qsi, w, has_w, eps, gscale, gss_o, gss_i,
                              rows_out, g, gso, gsc, gsi, want_grad, err};
    __shared__ A slots[BLOCK / 32];
    extern __shared__ __align__(16) unsigned char fx_dynamic[];
    typename LanesFor<NL, BLOCK, A>::type lanes;
    if constexpr (NL == BLOCK && NL > 32) lanes.slots = slots;
    const int rows_per_block = BLOCK / NL;
    const long long nrows = outer * inner;
    /* the loop bound is uniform over the block, so every lane reaches every reduction */
    for (long long base = (long long)blockIdx.x * rows_per_block; base < nrows;
         base += (long long)gridDim.x * rows_per_block) {
        const long long row = base + threadIdx.x / NL;
        row_work<OP, CACHED>(lanes, a, row, row < nrows, reinterpret_cast<A*>(fx_dynamic));
        if (CACHED) __syncthreads();        /* the next row overwrites the cache */
    }
}

#endif

}  // namespace fx
