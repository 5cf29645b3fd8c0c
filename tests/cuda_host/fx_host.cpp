// The kernels' row and element bodies (row_work, elem_work) on the CPU: g++ compiles the
// CUDA sources' host+device code, and these entry points run it over every row / element,
// taking the very argument tuples the GPU launcher builds (fastxent._gpu_plan). Rows run
// with one lane, or with NL lanes as NL threads that meet at a barrier for every reduction
// (ThreadLanes: the warp / block mappings' striding, collective reductions and shared row
// cache). tests/test_cuda_sources.py loads this with ctypes.
#include <barrier>
#include <thread>
#include <vector>

#include "rows.cu"
#include "elementwise.cu"
#include "reduce.cu"

using namespace fx;

namespace {

/* NL threads on one row, like a block's lanes: a reduction posts every lane's value, waits,
 * and combines them in lane order, so every lane gets the same result. */
struct Meeting {
    explicit Meeting(int n) : values(n), barrier(n) {}
    std::vector<double> values;
    std::barrier<> barrier;
};

struct ThreadLanes {
    int NL_, id;
    Meeting* meet;
    int lanes() const { return NL_; }
    int lane() const { return id; }
    int first_class(int) const { return 0; }
    int end_class(int C) const { return C; }
    bool leader() const { return id == 0; }
    template <class A, bool MAX> A reduce(A v) const {
        meet->values[id] = (double)v;
        meet->barrier.arrive_and_wait();
        A r = A(meet->values[0]);
        for (int k = 1; k < NL_; ++k) r = MAX ? fx_max(r, A(meet->values[k])) : r + A(meet->values[k]);
        meet->barrier.arrive_and_wait();
        return r;
    }
    template <class A> A max(A v) const { return reduce<A, true>(v); }
    template <class A> A sum(A v) const { return reduce<A, false>(v); }
    void sync() const { meet->barrier.arrive_and_wait(); }
    void flag(int* err) const { __atomic_fetch_or(err, 1, __ATOMIC_RELAXED); }
};

/* A K-block cluster on one row (rows_cluster), each block one thread with one lane: it
 * visits its own slice of the classes, with its own row cache; reductions meet across the
 * blocks, in rank order. */
struct ClusterThreads : ThreadLanes {
    int lanes() const { return 1; }
    int lane() const { return 0; }
    int first_class(int C) const { return cluster_slice_begin(C, NL_, id); }
    int end_class(int C) const { return cluster_slice_begin(C, NL_, id + 1); }
    bool leader() const { return id == 0; }
};

int g_lanes = 1;      /* lanes per row for the next fx_host_rows call */
int g_cluster = 1;    /* blocks per row (a cluster) for the next fx_host_rows call */

/* f(T()) for the storage type of a dtype code (0 float32, 1 float64, 2 float16, 3 bfloat16),
 * and f(TI()) for a target code (0 int32, 1 int64): 0, or 1 for an unknown code. */
template <class F> int with_dtype(int dtype, F f) {
    switch (dtype) {
        case 0: f(float()); return 0;
        case 1: f(double()); return 0;
        case 2: f(f16()); return 0;
        case 3: f(bf16()); return 0;
    }
    return 1;
}

template <class F> int with_target(int target, F f) {
    switch (target) {
        case 0: f(int()); return 0;
        case 1: f((long long)0); return 0;
    }
    return 1;
}

template <int OP, bool CACHED, class T, class TI>
void run_rows(const RowArgs<T, TI>& a) {
    std::vector<T> cache(CACHED ? row_cache_elems<T>(a.C) : 1);
    const long long nrows = a.outer * a.inner;
    if (g_lanes == 1 && g_cluster == 1) {
        const HostLanes lanes;
        for (long long r = 0; r < nrows; ++r) row_work<OP, CACHED>(lanes, a, r, true, cache.data());
        return;
    }
    const int n = g_cluster > 1 ? g_cluster : g_lanes;
    Meeting meet(n);
    std::vector<std::thread> threads;
    for (int id = 0; id < n; ++id) {
        threads.emplace_back([&, id] {
            const ThreadLanes lanes{n, id, &meet};
            std::vector<T> own(cache.size());        /* a cluster block's own cache */
            for (long long r = 0; r < nrows; ++r) {
                if (g_cluster > 1)
                    row_work<OP, CACHED>(ClusterThreads{lanes}, a, r, true, own.data());
                else
                    row_work<OP, CACHED>(lanes, a, r, true, cache.data());
                meet.barrier.arrive_and_wait();      /* the next row overwrites the cache */
            }
        });
    }
    for (auto& t : threads) t.join();
}

template <int OP, class T, class TI>
void rows_cached(int cached, const RowArgs<T, TI>& a) {
    if (cached) run_rows<OP, true>(a);
    else run_rows<OP, false>(a);
}

template <class T, class TI>
int rows_op(int op, int cached, const RowArgs<T, TI>& a) {
    switch (op) {
        case CE_INDEX: rows_cached<CE_INDEX>(cached, a); return 0;
        case CE_PROB: rows_cached<CE_PROB>(cached, a); return 0;
        case NLL: rows_cached<NLL>(cached, a); return 0;
        case LSE: rows_cached<LSE>(cached, a); return 0;
        case SOFTMAX: rows_cached<SOFTMAX>(cached, a); return 0;
        case LOG_SOFTMAX: rows_cached<LOG_SOFTMAX>(cached, a); return 0;
    }
    return 1;
}

/* Each block's partial of a reduced row loss, as finish_rows adds it: every thread of the
 * block sums the rows it led (led_rows), and the block adds its threads' sums. */
void rows_partials(const double* rows_out, long long nrows, long long grid, int block_threads,
                   int nl, double* partial) {
    for (long long b = 0; b < grid; ++b) {
        partial[b] = 0.0;
        for (long long t = 0; t < block_threads; ++t) {
            const LedRows led = led_rows(block_threads, nl, g_cluster, b, t, grid);
            if (!led.leader) continue;
            for (long long row = led.first; row < nrows; row += led.step)
                partial[b] += rows_out[row];
        }
    }
}

/* Every thread of the grid in turn, with the elements elem_thread gives it; with `partial`
 * (a reduced loss), each block's partial is the sum of its threads' losses. */
template <int OP, bool INDEXED, class T>
void run_elementwise(const ElemArgs<T>& a, long long grid, long long block, double* partial) {
    const auto u = uniform_operands<OP>(a);
    for (long long b = 0; b < grid; ++b) {
        double sum = 0.0;
        for (long long t = 0; t < block; ++t)
            sum += elem_thread<OP, INDEXED>(a, u, b * block + t, grid * block);
        if (partial) partial[b] = sum;
    }
}

template <bool INDEXED, class T>
void elementwise_op(int op, const ElemArgs<T>& a, long long grid, long long block,
                    double* partial) {
    if (op == BCE) run_elementwise<BCE, INDEXED>(a, grid, block, partial);
    else if (op == BCE_LOGITS) run_elementwise<BCE_LOGITS, INDEXED>(a, grid, block, partial);
    else run_elementwise<KL_DIV, INDEXED>(a, grid, block, partial);
}

/* A reduce.cu kernel's blocks one after another, then its last block's step. */
template <class Args, class Part, class Last>
void run_reduce(const Args& a, long long grid, Part part, Last last) {
    const HostLanes lanes;
    for (long long b = 0; b < grid; ++b) a.partials[b] = part(lanes, a, grid, b);
    last(lanes, a, grid);
}

}  // namespace

extern "C" {

/* op, dtype (0 float32, 1 float64, 2 float16, 3 bfloat16), target (0 int32, 1 int64),
 * cached, the kernel's grid, block and lanes per row (a cluster: its block), then fx::rows's
 * arguments (the counter unused). Returns 0, or 1 for an unknown code. */
int fx_host_rows(int op, int dtype, int target, int cached, long long grid, int block,
                 int lanes, const void* x, long long outer,
                 int C, long long inner, long long so, long long sc, long long si,
                 const void* t, long long tso, long long tsi, long long ignore_index,
                 const void* q, long long qso, long long qsc, long long qsi, const double* w,
                 int has_w, double eps, const double* gscale, long long gss_o,
                 long long gss_i, double gmul, double* rows_out, void* g, long long gso,
                 long long gsc, long long gsi, int want_grad, int* err, double* partial,
                 unsigned int*, int finish, int mode, const double* denominator,
                 double denominator_value, void* out, int out_dtype) {
    int unknown = 0;
    unknown |= with_target(target, [&](auto ti) {
        unknown |= with_dtype(dtype, [&](auto tag) {
            typedef decltype(tag) T;
            typedef decltype(ti) TI;
            const RowArgs<T, TI> a = {(const T*)x, outer, C, inner, so, sc, si, (const TI*)t,
                                      tso, tsi, ignore_index, (const T*)q, qso, qsc, qsi, w,
                                      has_w, eps, gscale, gss_o, gss_i, gmul, rows_out,
                                      (T*)g, gso, gsc, gsi, want_grad, err};
            unknown |= rows_op(op, cached, a);
        });
    });
    if (finish && !unknown) {   /* the last block's step, once every block's partial is written */
        rows_partials(rows_out, outer * inner, grid, block, lanes, partial);
        write_reduced(HostLanes(), partial, grid, mode, denominator, denominator_value, out,
                      out_dtype);
    }
    return unknown;
}

/* op, dtype, the kernel's INDEXED, grid and block, then fx::elementwise's arguments; for a
 * reduced loss a partial per block and the result (the counter unused). */
int fx_host_elementwise(int op, int dtype, int indexed, long long grid, long long block,
                        const void* x,
                        long long d0, long long d1, long long d2, long long xs0,
                        long long xs1, long long xs2,
                        const void* y, long long ys0, long long ys1, long long ys2,
                        const double* w, long long ws0, long long ws1, long long ws2,
                        const double* pw, long long ps0, long long ps1, long long ps2,
                        int has_pw, int log_target, const double* gscale, long long gss0,
                        long long gss1, long long gss2, double gmul, void* loss, long long ls0,
                        long long ls1, long long ls2, int want_loss, void* g, long long gs0,
                        long long gs1, long long gs2, int want_grad, int* err,
                        double* partial, unsigned int*, int finish, int mode,
                        double denominator, void* out, int out_dtype) {
    return with_dtype(dtype, [&](auto tag) {
        typedef decltype(tag) T;
        const ElemArgs<T> a = {(const T*)x, d0, d1, d2, xs0, xs1, xs2, (const T*)y, ys0, ys1,
                               ys2, w, ws0, ws1, ws2, pw, ps0, ps1, ps2, has_pw, log_target,
                               gscale, gss0, gss1, gss2, gmul, (T*)loss, ls0, ls1, ls2, want_loss,
                               (T*)g, gs0, gs1, gs2, want_grad, err};
        if (indexed) elementwise_op<true>(op, a, grid, block, finish ? partial : nullptr);
        else elementwise_op<false>(op, a, grid, block, finish ? partial : nullptr);
        if (finish)     /* the last block's step, once every block's partial is written */
            write_reduced(HostLanes(), partial, grid, mode, nullptr, denominator, out,
                          out_dtype);
    });
}

/* target (0 int32, 1 int64), grid, then fx::mean_scale's arguments (the counter unused). */
int fx_host_mean_scale(int target, long long grid, const void* t, long long n, long long inner,
                       long long tso, long long tsi, long long ignore_index, int C,
                       const double* w, int has_w, const double* grad_output,
                       double grad_output_mul, double* partials, int*, double* out) {
    return with_target(target, [&](auto ti) {
        typedef decltype(ti) TI;
        const MeanScaleArgs<TI> a = {(const TI*)t, n, inner, tso, tsi, ignore_index, C, w,
                                     has_w, grad_output, grad_output_mul, partials, out};
        run_reduce(a, grid, [](auto& L, auto& a, long long G, long long b) {
            return mean_scale_part(L, a, G, b); },
                   [](auto& L, auto& a, long long G) { mean_scale_last(L, a, G); });
    });
}

/* fx::store_double_as (through narrow_double), for the rounding test: the double rounded to
 * the coded dtype, as its bits (32 of float32, 16 of a 16-bit type). */
unsigned int fx_host_narrow_double(int dtype, double v) {
    float f;
    unsigned short h;
    if (dtype == 0) {
        store_double_as(dtype, &f, v);
        return bits_from_f32(f);
    }
    store_double_as(dtype, &h, v);
    return h;
}

/* rows.cu's row cache for C classes of the coded dtype, in bytes (row_cache_elems), for the
 * test that _gpu_plan.row_cache_bytes asks for as much shared memory; -1 for an unknown
 * code. */
long long fx_host_row_cache_bytes(int dtype, int C) {
    long long bytes = -1;
    with_dtype(dtype, [&](auto tag) {
        bytes = row_cache_elems<decltype(tag)>(C) * (long long)sizeof(tag);
    });
    return bytes;
}

/* Lanes per row for the following fx_host_rows calls (1 by default). */
void fx_host_set_lanes(int n) { g_lanes = n > 0 ? n : 1; }

/* Blocks of a cluster per row for the following fx_host_rows calls (1: no cluster). */
void fx_host_set_cluster(int k) { g_cluster = k > 0 ? k : 1; }

/* The 16-bit conversions, for the round-trip test against NumPy / ml_dtypes. */
unsigned short fx_host_to_f16(float v) { return to_f16(v).bits; }
float fx_host_from_f16(unsigned short b) { f16 h = {b}; return widen(h); }
unsigned short fx_host_to_bf16(float v) { return to_bf16(v).bits; }
float fx_host_from_bf16(unsigned short b) { bf16 h = {b}; return widen(h); }

}
