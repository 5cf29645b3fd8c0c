/* Class-axis kernels: cross_entropy (class indices, probabilities), nll_loss, logsumexp,
 * softmax and log_softmax, forward and fused gradient, on an (outer, C, inner) view with
 * any element strides (the CPU kernels' layout, _cpu/_xent.pyx).
 *
 * One row body (row_work), three mappings of lanes to rows (NL lanes per row, BLOCK threads):
 *   NL = 1            a thread per row: class stride != 1 ((N, C, d1..dK), Fortran views,
 *                     where neighbouring threads read neighbouring rows) or tiny C;
 *   NL = 32           a warp per row, shuffle reductions (BLOCK / 32 rows per block);
 *   NL = BLOCK        a block per row, shared-memory reductions; with CACHED the row is kept
 *                     in dynamic shared memory, so the logits are read once from HBM
 *                     (1 read + 1 write when fused).
 * Passes per row: with the row cached, (1) the max, the row copied into shared memory,
 * (2) from there exp(x - max) with the sums (kept in the cache for float32 and float64, so
 * the exponential is evaluated once per logit; the 16-bit types cache their raw logits,
 * half the shared memory, and evaluate it again in pass 3); otherwise (1) one streaming
 * pass for the max and the sum of exp(x - max) (online softmax: the sum is rescaled when
 * the max grows), plus a pass for the sums relative to the max when label smoothing or
 * probability targets need them. Then (3) the outputs. Every pass over a row of unit stride
 * moves 16 bytes per access (a group: 4 classes of float32, 8 of a 16-bit type; float64
 * takes 4 classes in two accesses) from its first vector boundary on (split_row), with
 * several loads in flight per lane (visit_row, write_row): a block alone on its
 * multiprocessor would otherwise wait on memory latency. Reductions run in a
 * fixed order (butterfly shuffles, then warp slots in index order) and every row's loss goes
 * to its own slot in `rows_out` (double). For a reduced loss the kernel adds them itself, as
 * the two stages of fx_device.cuh (finish_rows): no float atomics, and repeats are
 * bit-identical for a given grid.
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
    /* d total / d loss of a row: gscale[o gss_o + i gss_i] * gmul. gmul is a factor the
     * host knows (1 / n for a "mean" over a count it knows), passed by value so that the
     * default grad_output needs no device scalar made in each call. */
    const double* gscale; long long gss_o, gss_i; double gmul;
    double* rows_out;
    T* g; long long gso, gsc, gsi; int want_grad;
    int* err;
};

/* Two launch knobs. The backend compiles the values below; benchmarks/gpu_sweep.py compiles
 * others with -D (_cuda_sources.tuning_options) and times them on a device.
 * FX_IN_FLIGHT: vector loads a lane keeps in flight in a pass that reads HBM. One at a time
 * leaves a 512-thread block, alone on its multiprocessor, waiting on memory latency.
 * FX_MIN_BLOCKS: the blocks per multiprocessor the register allocation must allow
 * (__launch_bounds__); two 512-thread blocks cap a thread at 64 registers. */
#ifndef FX_IN_FLIGHT
#define FX_IN_FLIGHT 4
#endif
#ifndef FX_MIN_BLOCKS
#define FX_MIN_BLOCKS 1
#endif
/* FX_PREFETCH 1: a block that caches its row asks L2 for the next row it will take as soon
 * as the current one is in shared memory, so that HBM reads it while the block computes and
 * writes. A block alone on its multiprocessor otherwise leaves the reads idle through two of
 * its three passes. Off until gpu_sweep.py measures it. */
#ifndef FX_PREFETCH
#define FX_PREFETCH 0
#endif
enum { IN_FLIGHT = FX_IN_FLIGHT };

/* A row splits into vector accesses as fx_device.cuh's split_row says. Lane l owns head
 * class l, groups l, l + NL, ... and tail classes head + GROUP groups + l, ... */
typedef Split<int> RowSplit;

/* The group of classes c.. as one vector: one load where the row lines up with the split
 * (`vec`), one per class otherwise. */
template <class T> FX_HD Vec<T> load_group(const T* p, long long s, int c, bool vec) {
    if (vec) return load_vec(p + c);
    Vec<T> r;
    FX_UNROLL for (int e = 0; e < GROUP<T>; ++e) r.v[e] = p[(c + e) * s];
    return r;
}

/* Visit a row's classes as a lane owns them under `sp` (a split of p's own layout, or of a
 * row p is written to), calling f(c, v, k) for the k = GROUP<T> consecutive classes c.. of a
 * group, or k = 1; IN_FLIGHT groups are loaded before the first is used. `vec`: p lines up
 * with sp, so a group is one vector load. */
template <class T, class Lanes, class F>
FX_HD void visit_row(const Lanes& L, const T* p, long long s, int n, RowSplit sp, F f,
                     bool vec = true) {
    constexpr int G = GROUP<T>;
    const int NL = L.lanes(), lane = L.lane();
    for (int c = lane; c < sp.head; c += NL) {
        const T v = p[c * s];
        f(c, &v, 1);
    }
    int j = lane;
    for (; j + (IN_FLIGHT - 1) * NL < sp.groups; j += IN_FLIGHT * NL) {
        Vec<T> v[IN_FLIGHT];
        FX_UNROLL for (int u = 0; u < IN_FLIGHT; ++u)
            v[u] = load_group(p, s, sp.head + G * (j + u * NL), vec);
        FX_UNROLL for (int u = 0; u < IN_FLIGHT; ++u) f(sp.head + G * (j + u * NL), v[u].v, G);
    }
    for (; j < sp.groups; j += NL) {
        const Vec<T> v = load_group(p, s, sp.head + G * j, vec);
        f(sp.head + G * j, v.v, G);
    }
    for (int c = sp.head + G * sp.groups + lane; c < n; c += NL) {
        const T v = p[c * s];
        f(c, &v, 1);
    }
}

/* Whether this lane visits class c of a row of T split as `sp` (visit_row's order): a head
 * class one at a time, a group as one, then the tail. */
template <class T, class Lanes> FX_HD bool visits(const Lanes& L, RowSplit sp, int c) {
    const int NL = L.lanes(), body = sp.head + GROUP<T> * sp.groups;
    const int slot = c < sp.head ? c : (c < body ? (c - sp.head) / GROUP<T> : c - body);
    return slot % NL == L.lane();
}

/* k values from v to p's classes c..: one vector store for a group. */
template <class T> FX_HD void put_values(T* p, long long s, int c, const T* v, int k) {
    if (k == GROUP<T>) {
        Vec<T> w;
        FX_UNROLL for (int e = 0; e < GROUP<T>; ++e) w.v[e] = v[e];
        store_vec(p + c, w);
    } else {
        p[c * s] = v[0];
    }
}

/* Write g[c] = fn(c, src value) for a row, in g's vector split: vector stores wherever g
 * allows them, vector loads of src where src lines up with g (same head, unit stride). */
template <class S, class T, class Lanes, class F>
FX_HD void write_row(const Lanes& L, const S* src, long long ss, RowSplit ssp, T* g,
                     long long gs, int n, F fn) {
    static_assert(GROUP<S> == GROUP<T>, "a group of src is a group of g");
    const RowSplit gsp = split_row(g, n, gs);
    const bool vec_src = ss == 1 && ssp.head == gsp.head && ssp.groups == gsp.groups;
    visit_row(L, src, ss, n, gsp, [&](int c, const S* v, int k) {
        T out[GROUP<T>];
        FX_UNROLL for (int e = 0; e < GROUP<T>; ++e) {
            if (e < k) out[e] = narrow_to<T>::from(fn(c + e, widen(v[e])));
        }
        put_values(g, gs, c, out, k);
    }, vec_src);
}

/* Elements of the row cache for C classes of T: GROUP - 1 more, so that the cache can start
 * at the same offset from a vector boundary as the row. */
template <class T> FX_HD long long row_cache_elems(int C) {
    return (long long)C + GROUP<T> - 1;
}

/* k logits (a group, or one) into the streaming pass: the running max and the sum
 * of exp(x - max), rescaled once when the group's max exceeds it (a NaN never raises it);
 * logsumexp also counts NaN logits. Rescaling logit by logit cost a second exponential per
 * logit, both evaluated whichever the branch (ptxas if-converts it): 35 instructions a logit
 * against 15 (float32, sm_90). While the max is -inf every logit so far was -inf or NaN, and
 * exp(x - 0) gives those 0 and NaN, where x - max would be NaN for -inf too. */
template <int OP, class T, class A> FX_HD void online_add(const T* v, int k, A& m,
                                                          RowSums<A>& s) {
    constexpr bool SHORT = sizeof(T) == 2;      /* exp_for: 16-bit storage takes exp_short */
    const A inf = A(inf_f());
    A x[GROUP<T>], g = m;
    for (int e = 0; e < k; ++e) {
        x[e] = A(widen(v[e]));
        g = fx_max(g, x[e]);
    }
    if (g > m) {
        s.total *= exp_for<SHORT>(m - g);
        m = g;
    }
    const A base = m == -inf ? A(0) : m;
    for (int e = 0; e < k; ++e) {
        s.total += exp_for<SHORT>(x[e] - base);
        if (OP == LSE && fx_isnan(x[e])) s.a += A(1);
    }
}

/* Ask L2 for the classes [c0, c0 + n) of row `row` (unit class stride): each lane one
 * 128-byte line in NL. A hint: nothing waits for it, and nothing is computed from it. */
template <class T, class TI, class Lanes>
FX_HD void prefetch_row(const Lanes& L, const RowArgs<T, TI>& a, long long row, int c0,
                        int n) {
#if defined(__CUDA_ARCH__) && FX_PREFETCH
    const long long o = row / a.inner, i = row - o * a.inner;
    const unsigned long long first = (unsigned long long)(a.x + o * a.so + i * a.si + c0);
    const unsigned long long end = first + (unsigned long long)n * sizeof(T);
    for (unsigned long long p = (first & ~127ull) + 128ull * (unsigned)L.lane(); p < end;
         p += 128ull * (unsigned)L.lanes())
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
    (void)L, (void)a, (void)row, (void)c0, (void)n;
#endif
}

/* `next`: the row these lanes take after `row` (-1 for none), which a cached row with
 * FX_PREFETCH asks L2 for. */
template <int OP, bool CACHED, class T, class TI, class Lanes>
FX_HD void row_work(const Lanes& L, const RowArgs<T, TI>& a, long long row, bool active,
                    T* cache, long long next = -1) {
    typedef typename acc_of<T>::type A;
    constexpr bool SHORT = sizeof(T) == 2;      /* exp_for: 16-bit storage takes exp_short */
    /* The row cache holds the row as stored. After pass 2 it holds exp(x - max) instead for
     * float32 and float64 (evaluated once per logit), except for log_softmax, which needs
     * the logits. The 16-bit types keep their raw logits, half the shared memory of a
     * float cache, and evaluate the exponential again in pass 3. */
    const bool KEEP_E = sizeof(T) == sizeof(A) && OP != LOG_SOFTMAX && OP != LSE;
    const int NL = L.lanes(), lane = L.lane(), C = a.C;
    const long long o = active ? row / a.inner : 0, i = active ? row - o * a.inner : 0;
    const T* xr = a.x + o * a.so + i * a.si;
    /* These lanes visit classes [c0, c0 + n): the whole row, except in a cluster, where each
     * block holds its own slice (the class index below is c0 + the slice's c). */
    const int c0 = L.first_class(C);
    const int n = active ? L.end_class(C) - c0 : 0;    /* inactive lanes join every reduction */
    const T* xs = xr + c0 * a.sc;
    T* gs = a.g + o * a.gso + i * a.gsi + c0 * a.gsc;
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
        if (active && L.leader()) {
            a.rows_out[row] = invalid ? (double)nan : (y >= 0 ? (double)(-wy * xy) : 0.0);
            if (invalid) L.flag(a.err);
        }
        if (active && a.want_grad) {
            const A scale = A(a.gscale[o * a.gss_o + i * a.gss_i] * a.gmul);
            const A fill = invalid ? nan : A(0);
            for (int c = lane; c < n; c += NL) {
                gs[c * a.gsc] = narrow_to<T>::from(c0 + c == y ? -scale * wy : fill);
            }
        }
        return;
    }

    const T* qr = a.q + o * a.qso + i * a.qsi;
    const RowSplit sx = split_row(xs, n, a.sc);
    /* the cache starts where the row's first full vector lines up with a vector boundary */
    T* kc = cache + ((GROUP<T> - sx.head) & (GROUP<T> - 1));
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
        /* pass 1: the maximum (NaN skipped; it reaches the sum through exp), the row copied
         * into the cache on the way */
        visit_row(L, xs, a.sc, n, sx, [&](int c, const T* v, int k) {
            for (int e = 0; e < k; ++e) m = fx_max(m, A(widen(v[e])));
            put_values(kc, 1, c, v, k);
        });
        m = L.max(m);
        if (next >= 0 && a.sc == 1) prefetch_row(L, a, next, c0, n);   /* FX_PREFETCH */
        if (OP == LSE && m == -inf) m = A(0);   /* a row of -inf: exp(-inf) = 0, lse = -inf */
        /* pass 2, from shared memory: exp(x - m) once per logit, kept for the outputs */
        visit_row(L, (const T*)kc, 1, n, sx, [&](int c, const T* v, int k) {
            T kept[GROUP<T>];
            for (int e = 0; e < k; ++e) {
                const A x = A(widen(v[e])), ex = exp_for<SHORT>(x - m);
                s.total += ex;
                add_relative(c0 + c + e, x);
                kept[e] = narrow_to<T>::from(ex);
            }
            if (KEEP_E) put_values(kc, 1, c, kept, k);
        });
    } else {
        /* pass 1, streaming: the running max and sum of exp(x - max), rescaled when the max
         * grows (online softmax), so the logits are read once here. A -inf logit adds 0
         * (exp(-inf - max) for any finite max); a row without a finite or +inf max is
         * NaN below, as exp(-inf - -inf) makes it in the two-pass form. */
        visit_row(L, xs, a.sc, n, sx, [&](int, const T* v, int k) {
            online_add<OP>(v, k, m, s);
        });
        const A M = L.max(m);
        if (m < M) s.total *= exp_for<SHORT>(m - M);    /* this lane's sum, to the row's max */
        m = M;
        if (m == -inf) {
            if (OP == LSE) { m = A(0); s.total = A(0); }   /* lse = -inf, or NaN (below) */
            else s.total = nan;
        }
        /* pass 2 (smoothing, probabilities): the sums relative to the max */
        if ((OP == CE_INDEX && eps > A(0)) || OP == CE_PROB) {
            visit_row(L, xs, a.sc, n, sx, [&](int c, const T* v, int k) {
                for (int e = 0; e < k; ++e) add_relative(c0 + c + e, A(widen(v[e])));
            });
        }
    }
    s.total = L.sum(s.total);
    if (OP == CE_INDEX || OP == CE_PROB || OP == LSE) s.a = L.sum(s.a);
    if (OP == CE_INDEX || OP == CE_PROB) s.b = L.sum(s.b);
    if (!active) return;

    /* pass 3: the row's loss and its outputs, from the cache or the logits; e_of(v) is
     * exp(x - m) of the value read (the cached exponential itself, or from the logit). The
     * class index of the slice's c is c0 + c. */
    auto e_of = [&](A v) { return (CACHED && KEEP_E) ? v : exp_for<SHORT>(v - m); };
    auto write = [&](auto fn) {
        if (CACHED) write_row(L, (const T*)kc, 1, sx, gs, a.gsc, n, fn);
        else write_row(L, xs, a.sc, sx, gs, a.gsc, n, fn);
    };
    /* sum_c w_c, which add_relative sums only with smoothing: without it no weight enters */
    const A W = a.has_w ? s.a : A(C);
    const double scale_wide = (OP == CE_INDEX || OP == CE_PROB) && a.want_grad
                                  ? a.gscale[o * a.gss_o + i * a.gss_i] * a.gmul : 0.0;
    const A scale = A(scale_wide);
    /* An infinite upstream gradient: PyTorch's backward in two steps (then the softmax's
     * g - p sum(g)) makes inf - inf, NaN at the target, and across the row with label
     * smoothing or probability targets (docs/nonfinite.md). A scale that overflows only
     * A keeps the fused formula's infinities, as the CPU path does. */
    const bool infinite = fx_isinf(scale_wide);
    if (OP == CE_INDEX) {
        if (L.leader()) {
            const A loss = invalid ? nan : (y < 0 ? A(0) : index_row_loss(m, s, xy, wy, W, eps, C));
            a.rows_out[row] = (double)loss;
            if (invalid) L.flag(a.err);
        }
        if (a.want_grad && y < 0) {
            /* PyTorch's ignored row: zero, or NaN where the softmax is NaN, or where label
             * smoothing meets a weight that is not finite (its backward's 0 * inf) */
            const A fill = invalid || fx_isnan(s.total) || (eps > A(0) && !(W - W == A(0)))
                               ? nan : A(0);
            write([&](int, A) { return fill; });
        } else if (a.want_grad) {
            IndexGrad<A> k = index_row_grad(s, wy, W, eps, C, scale);
            if (infinite && eps > A(0)) k.kb = nan;         /* every entry NaN */
            const A gy = infinite ? nan : index_target_grad(k, m, s, xy, wy, eps, C, scale);
            /* Every class by one formula, and the target's entry written over its own by the
             * lane that wrote it (program order): a test per class cost a branch, or a
             * 64-bit compare and a select, per logit. Without smoothing no weight but the
             * target's enters (0 * an infinite weight would be NaN; PyTorch gives a number). */
            write([&](int c, A v) {
                const A g = k.ka * e_of(v);
                return eps > A(0) ? g - k.kb * (a.has_w ? A(a.w[c0 + c]) : A(1)) : g;
            });
            const long long yc = y - c0;        /* the target's class in this slice */
            if (yc >= 0 && yc < n && visits<T>(L, split_row(gs, n, a.gsc), (int)yc))
                gs[yc * a.gsc] = narrow_to<T>::from(gy);
        }
    } else if (OP == CE_PROB) {
        if (L.leader()) a.rows_out[row] = (double)prob_row_loss(s);
        if (a.want_grad) {
            const A k = infinite ? nan : scale * s.a / s.total;     /* every entry NaN */
            write([&](int c, A v) {
                const A wq = (a.has_w ? A(a.w[c0 + c]) : A(1)) *
                             smoothed(A(widen(qr[(c0 + c) * a.qsc])), eps, C);
                return k * e_of(v) - scale * wq;
            });
        }
    } else if (OP == LSE) {
        if (L.leader()) {
            A lse = m + fx_log(s.total);
            if (s.a > A(0)) lse = nan;                  /* any NaN logit */
            else if (m == inf) lse = inf;
            a.rows_out[row] = (double)lse;
        }
    } else if (OP == SOFTMAX) {
        const A r = A(1) / s.total;
        write([&](int, A v) { return e_of(v) * r; });
    } else if (OP == LOG_SOFTMAX) {
        const A ls = fx_log(s.total);
        /* from the logit, not an exponential: (x - m) - log(sum) */
        write([&](int, A v) { return (v - m) - ls; });
    }
}

/* The rows whose results thread `thread` of block `block` wrote, in a grid of `grid`
 * blocks of `block_threads` (the row loops of `rows` and `rows_cluster` below): rows first,
 * first + step, ..., if it is a leader. A row's leader is lane 0 of its NL lanes, or with a
 * cluster of K > 1 blocks a row, thread 0 of the cluster's first block (rank 0 of a
 * one-dimensional cluster). Host+device: the host test adds a reduced loss's partials by
 * it, as finish_rows does. */
struct LedRows {
    long long first, step;
    bool leader;
};

FX_HD LedRows led_rows(int block_threads, int nl, int k, long long block, long long thread,
                       long long grid) {
    if (k > 1) return {block / k, grid / k, block % k == 0 && thread == 0};
    const long long per_block = block_threads / nl;
    return {block * per_block + thread / nl, grid * per_block, thread % nl == 0};
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

/* The row kernels' parameters, in _gpu_plan.row_args's order, and the RowArgs they make. */
#define FX_ROW_PARAMS                                                                       \
    const T *x, long long outer, int C, long long inner, long long so, long long sc,        \
        long long si, const TI *t, long long tso, long long tsi, long long ignore_index,    \
        const T *q, long long qso, long long qsc, long long qsi, const double *w, int has_w, \
        double eps, const double *gscale, long long gss_o, long long gss_i, double gmul,     \
        double *rows_out, T *g, long long gso, long long gsc, long long gsi, int want_grad, \
        int *err, double *partial, unsigned int *counter, int finish, int mode,             \
        const double *denominator, double denominator_value, void *out, int out_dtype
#define FX_ROW_ARGS                                                                         \
    {x, outer, C, inner, so, sc, si, t, tso, tsi, ignore_index, q, qso, qsc, qsi, w, has_w, \
     eps, gscale, gss_o, gss_i, gmul, rows_out, g, gso, gsc, gsi, want_grad, err}

/* finish (uniform over the grid): 0, or 1 for a reduced loss. Then each block adds the
 * losses its rows' leading lanes wrote (each lane reads back only its own writes) into one
 * partial, and the block that finishes last adds the grid's partials in index order and
 * writes the sum or mean (`mode`, over *denominator or denominator_value) to `out`, rounded
 * once to the dtype coded out_dtype; `counter` is zeroed by the host. That spares a reduced
 * call a second kernel. Called after the row loop and not inlined, so that it takes none
 * of the loop's registers (inlined, a float32 thread-per-row kernel took 120, not 96; with
 * the lanes' rows passed as arguments, a bfloat16 warp-per-row one 104, not 93). */
template <int BLOCK, int NL, int K>
__device__ __noinline__ void finish_rows(const double* rows_out, long long nrows,
                                         double* partial, unsigned int* counter, int mode,
                                         const double* denominator, double denominator_value,
                                         void* out, int out_dtype) {
    const LedRows led = led_rows(BLOCK, NL, K, blockIdx.x, threadIdx.x, gridDim.x);
    double acc = 0.0;
    if (led.leader)
        for (long long row = led.first; row < nrows; row += led.step) acc += rows_out[row];
    finish_reduced<BLOCK>(acc, partial, counter, mode, denominator, denominator_value, out,
                          out_dtype);
}

/* FX_MIN_BLOCKS (default 1) lets a 512-thread block use up to 128 registers a thread.
 * Capped at 64 for two such blocks, the row body spills (ptxas) in most ops and dtypes. */
template <int OP, class T, class TI, int NL, int BLOCK, bool CACHED>
__global__ void __launch_bounds__(BLOCK, FX_MIN_BLOCKS) rows(FX_ROW_PARAMS) {
    typedef typename acc_of<T>::type A;
    const RowArgs<T, TI> a = FX_ROW_ARGS;
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
        const long long next = row + (long long)gridDim.x * rows_per_block;
        row_work<OP, CACHED>(lanes, a, row, row < nrows, reinterpret_cast<T*>(fx_dynamic),
                             next < nrows ? next : -1);
        if (CACHED) __syncthreads();        /* the next row overwrites the cache */
    }
    if constexpr (OP == CE_INDEX || OP == CE_PROB || OP == NLL)     /* the losses reduce */
        if (finish)
            finish_rows<BLOCK, NL, 1>(rows_out, nrows, partial, counter, mode, denominator,
                                      denominator_value, out, out_dtype);
}

#endif

/* ---- a cluster per row (sm_90) ------------------------------------------------------------
 * A row too long for one multiprocessor's shared memory is split over the K blocks of a
 * thread-block cluster: each caches its own slice of the classes, so the logits are read
 * once from HBM where the streamed kernel reads them twice. A reduction combines the
 * blocks' values through distributed shared memory, every block in rank order (the same
 * bits in each). Not yet chosen by the backend: benchmarks/gpu_sweep.py times it against
 * the streamed kernel (issue 4's 128256-class rows). */

/* The first class of block `rank`'s slice of C over K blocks (rank K: C). Slices are a
 * multiple of 8 classes, so each starts on a vector boundary where the row does. */
FX_HD int cluster_slice_begin(int C, int K, int rank) {
    const long long per = ((C + K - 1) / K + 7) / 8 * 8;
    return per * rank < C ? (int)(per * rank) : C;
}

#if (defined(__CUDACC__) || defined(__CUDACC_RTC__)) && \
    (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)

__device__ unsigned int cluster_rank() {
    unsigned int r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

/* Every thread of the cluster arrives (its shared-memory writes released) and waits for
 * the others (theirs acquired). */
__device__ void cluster_barrier() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\t"
                 "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

/* The distributed-shared-memory address of this block's shared `p` in the block of cluster
 * rank `rank`, and the values there. */
__device__ unsigned int cluster_address(const void* p, unsigned int rank) {
    unsigned long long shared;
    unsigned int remote;
    asm volatile("cvta.to.shared.u64 %0, %1;" : "=l"(shared) : "l"((unsigned long long)p));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
                 : "=r"(remote) : "r"((unsigned int)shared), "r"(rank));
    return remote;
}

__device__ float cluster_load(const float* p, unsigned int rank) {
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];"
                 : "=f"(v) : "r"(cluster_address(p, rank)) : "memory");
    return v;
}

__device__ double cluster_load(const double* p, unsigned int rank) {
    double v;
    asm volatile("ld.shared::cluster.f64 %0, [%1];"
                 : "=d"(v) : "r"(cluster_address(p, rank)) : "memory");
    return v;
}

/* The BLOCK threads of each of a cluster's K blocks on one row, each block on its slice.
 * A reduction: BlockLanes within the block, the block's value into one of two slots
 * (alternating: a slot is written again two reductions later, after the next barrier has
 * seen every block finish reading it), a cluster barrier, then the K blocks' slots. */
template <int K, int BLOCK, class A> struct ClusterLanes {
    static const int NL = BLOCK;
    BlockLanes<BLOCK, A> block;
    A* pair;                        /* this block's two cluster slots */
    unsigned int rank;
    mutable unsigned int phase;
    __device__ int lanes() const { return BLOCK; }
    __device__ int lane() const { return (int)threadIdx.x; }
    __device__ int first_class(int C) const { return cluster_slice_begin(C, K, rank); }
    __device__ int end_class(int C) const { return cluster_slice_begin(C, K, rank + 1); }
    __device__ bool leader() const { return rank == 0 && threadIdx.x == 0; }
    template <bool MAX> __device__ A reduce(A v) const {
        v = block.template reduce<MAX>(v);
        A* mine = pair + (phase++ & 1u);
        if (threadIdx.x == 0) *mine = v;
        cluster_barrier();
        A r = cluster_load(mine, 0);
#pragma unroll
        for (int k = 1; k < K; ++k) {
            const A u = cluster_load(mine, k);
            r = MAX ? fx_max(r, u) : r + u;
        }
        return r;
    }
    __device__ A max(A v) const { return reduce<true>(v); }
    __device__ A sum(A v) const { return reduce<false>(v); }
    __device__ void sync() const { cluster_barrier(); }
    __device__ void flag(int* err) const { raise_flag(err); }
};

/* K consecutive blocks (a cluster) per row; the grid is a multiple of K. Blocks smaller
 * than 512 threads are held to 512 threads' registers per multiprocessor (at most 128 a
 * thread, which the row body fits without spilling), so that two or four of them, each on
 * a slice of another row, can share a multiprocessor: one block's arithmetic and
 * reductions then overlap another's memory traffic, which a 512-thread block alone on its
 * multiprocessor cannot. */
template <int OP, class T, class TI, int K, int BLOCK, bool CACHED>
__global__ void __cluster_dims__(K, 1, 1)
__launch_bounds__(BLOCK, BLOCK < 512 ? 512 / BLOCK : 1)
rows_cluster(FX_ROW_PARAMS) {
    typedef typename acc_of<T>::type A;
    const RowArgs<T, TI> a = FX_ROW_ARGS;
    __shared__ A slots[BLOCK / 32];
    __shared__ A pair[2];
    extern __shared__ __align__(16) unsigned char fx_dynamic[];
    ClusterLanes<K, BLOCK, A> lanes;
    lanes.block.slots = slots;
    lanes.pair = pair;
    lanes.rank = cluster_rank();
    lanes.phase = 0;
    const long long nrows = outer * inner;
    /* the loop bound is uniform over the cluster: every block reaches every barrier */
    for (long long row = blockIdx.x / K; row < nrows; row += gridDim.x / K) {
        const long long next = row + gridDim.x / K;
        row_work<OP, CACHED>(lanes, a, row, true, reinterpret_cast<T*>(fx_dynamic),
                             next < nrows ? next : -1);
        if (CACHED) __syncthreads();        /* the next row overwrites the cache */
    }
    cluster_barrier();          /* no block exits while another may still read its slots */
    if constexpr (OP == CE_INDEX || OP == CE_PROB || OP == NLL)
        if (finish)
            finish_rows<BLOCK, BLOCK, K>(rows_out, nrows, partial, counter, mode,
                                         denominator, denominator_value, out, out_dtype);
}

#endif

}  // namespace fx
