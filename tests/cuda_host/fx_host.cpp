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

int g_lanes = 1;      /* lanes per row for the next fx_host_rows call */

template <int OP, bool CACHED, class T, class TI>
void run_rows(const RowArgs<T, TI>& a) {
    std::vector<T> cache(CACHED ? row_cache_elems(a.C) : 1);
    const long long nrows = a.outer * a.inner;
    if (g_lanes == 1) {
        const HostLanes lanes;
        for (long long r = 0; r < nrows; ++r) row_work<OP, CACHED>(lanes, a, r, true, cache.data());
        return;
    }
    Meeting meet(g_lanes);
    std::vector<std::thread> threads;
    for (int id = 0; id < g_lanes; ++id) {
        threads.emplace_back([&, id] {
            const ThreadLanes lanes{g_lanes, id, &meet};
            for (long long r = 0; r < nrows; ++r) {
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

#define FX_ROW_ARGS(T, TI)                                                                  \
    RowArgs<T, TI> a = {(const T*)x, outer, C, inner, so, sc, si, (const TI*)t, tso, tsi,    \
                        ignore_index, (const T*)q, qso, qsc, qsi, w, has_w, eps, gscale,    \
                        gss_o, gss_i, rows_out, (T*)g, gso, gsc, gsi, want_grad, err}

template <class TI>
int rows_dtype(int op, int dtype, int cached, const void* x, long long outer, int C,
               long long inner, long long so, long long sc, long long si, const void* t,
               long long tso, long long tsi, long long ignore_index, const void* q,
               long long qso, long long qsc, long long qsi, const double* w, int has_w,
               double eps, const double* gscale, long long gss_o, long long gss_i,
               double* rows_out, void* g, long long gso, long long gsc, long long gsi,
               int want_grad, int* err) {
    if (dtype == 0) { FX_ROW_ARGS(float, TI); return rows_op(op, cached, a); }
    if (dtype == 1) { FX_ROW_ARGS(double, TI); return rows_op(op, cached, a); }
    if (dtype == 2) { FX_ROW_ARGS(f16, TI); return rows_op(op, cached, a); }
    if (dtype == 3) { FX_ROW_ARGS(bf16, TI); return rows_op(op, cached, a); }
    return 1;
}

template <int OP, class T>
double run_elementwise(const ElemArgs<T>& a) {
    double total = 0.0;
    for (long long k = 0; k < a.d0 * a.d1 * a.d2; ++k) total += elem_work<OP>(a, k);
    return total;
}

template <class T>
double elementwise_op(int op, const ElemArgs<T>& a) {
    if (op == BCE) return run_elementwise<BCE>(a);
    if (op == BCE_LOGITS) return run_elementwise<BCE_LOGITS>(a);
    return run_elementwise<KL_DIV>(a);
}

}  // namespace

extern "C" {

/* op, dtype (0 float32, 1 float64, 2 float16, 3 bfloat16), target (0 int32, 1 int64),
 * cached, then fx::rows's arguments. Returns 0, or 1 for an unknown code. */
int fx_host_rows(int op, int dtype, int target, int cached, const void* x, long long outer,
                 int C, long long inner, long long so, long long sc, long long si,
                 const void* t, long long tso, long long tsi, long long ignore_index,
                 const void* q, long long qso, long long qsc, long long qsi, const double* w,
                 int has_w, double eps, const double* gscale, long long gss_o,
                 long long gss_i, double* rows_out, void* g, long long gso, long long gsc,
                 long long gsi, int want_grad, int* err) {
    if (target == 0)
        return rows_dtype<int>(op, dtype, cached, x, outer, C, inner, so, sc, si, t, tso,
                               tsi, ignore_index, q, qso, qsc, qsi, w, has_w, eps, gscale,
                               gss_o, gss_i, rows_out, g, gso, gsc, gsi, want_grad, err);
    return rows_dtype<long long>(op, dtype, cached, x, outer, C, inner, so, sc, si, t, tso,
                                 tsi, ignore_index, q, qso, qsc, qsi, w, has_w, eps, gscale,
                                 gss_o, gss_i, rows_out, g, gso, gsc, gsi, want_grad, err);
}

/* op, dtype, then fx::elementwise's arguments; the total goes to partial[0]. */
int fx_host_elementwise(int op, int dtype, const void* x, long long d0, long long d1,
                        long long d2, long long xs0, long long xs1, long long xs2,
                        const void* y, long long ys0, long long ys1, long long ys2,
                        const double* w, long long ws0, long long ws1, long long ws2,
                        const double* pw, long long ps0, long long ps1, long long ps2,
                        int has_pw, int log_target, const double* gscale, long long gss0,
                        long long gss1, long long gss2, void* loss, long long ls0,
                        long long ls1, long long ls2, int want_loss, void* g, long long gs0,
                        long long gs1, long long gs2, int want_grad, double* partial) {
#define FX_ELEM(T)                                                                          \
    {                                                                                      \
        ElemArgs<T> a = {(const T*)x, d0, d1, d2, xs0, xs1, xs2, (const T*)y, ys0, ys1,    \
                         ys2, w, ws0, ws1, ws2, pw, ps0, ps1, ps2, has_pw, log_target,      \
                         gscale, gss0, gss1, gss2, (T*)loss, ls0, ls1, ls2, want_loss,      \
                         (T*)g, gs0, gs1, gs2, want_grad};                                  \
        partial[0] = elementwise_op(op, a);                                                \
        return 0;                                                                          \
    }
    if (dtype == 0) FX_ELEM(float)
    if (dtype == 1) FX_ELEM(double)
    if (dtype == 2) FX_ELEM(f16)
    if (dtype == 3) FX_ELEM(bf16)
    return 1;
#undef FX_ELEM
}

/* Lanes per row for the following fx_host_rows calls (1 by default). */
void fx_host_set_lanes(int n) { g_lanes = n > 0 ? n : 1; }

/* The 16-bit conversions, for the round-trip test against NumPy / ml_dtypes. */
unsigned short fx_host_to_f16(float v) { return to_f16(v).bits; }
float fx_host_from_f16(unsigned short b) { f16 h = {b}; return widen(h); }
unsigned short fx_host_to_bf16(float v) { return to_bf16(v).bits; }
float fx_host_from_bf16(unsigned short b) { bf16 h = {b}; return widen(h); }

}
