"""Which launch shape of the fused row kernel is fastest on this GPU: one run, kernel times.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_sweep.py --out OUTDIR [--budget-s 420]

gpu_check.py times whole calls against torch. This script times the kernel that decides
issue 4's large shapes: ``fx::rows`` for cross_entropy with class indices, fused loss and
gradient (into an existing buffer, scaled as "mean" scales it), launched directly with the
backend's own argument tuples (``_gpu_plan.row_args``). It varies what the backend fixes:

- lanes and block: a warp per row in blocks of 128 or 256 threads (C <= 8192), or a block
  per row of 256, 512 or 1024 threads, with the row cached in shared memory (where it fits)
  or streamed;
- ``FX_IN_FLIGHT``: the 16-byte groups each lane keeps in flight (2, 4, 8);
- ``FX_MIN_BLOCKS``: the blocks per multiprocessor the register allocation must allow;
- ``FX_PREFETCH``: a block caching its row asks L2 for its next row once the current one
  is in shared memory, so that HBM reads it during the exponentials and the writes;
- on sm_90, a cluster of 2, 4 or 8 blocks of 512 or 256 threads per row
  (``fx::rows_cluster``), each block caching its slice of the row, so that rows too long
  for one multiprocessor's shared memory are read once from HBM (the backend streams them,
  reading them twice), and so that two 256-thread blocks on slices of different rows share
  a multiprocessor where one 512-thread block holds it alone (16384 x 32000 float32: the
  backend's one block per multiprocessor cannot overlap its arithmetic and reductions with
  its memory traffic).

Each variant gets the median of CUDA-event-timed launches, ``floor bytes / time`` as a % of
the copy bandwidth measured in the same run, its registers per thread, spilled bytes and
resident blocks per multiprocessor, and a check of its output against the backend's own
kernel. Per shape, the whole backend call (``grad_out=``) and torch eager's loss + backward
are timed too, and the call time the best variant would give is estimated (the call's
host time is unchanged). The table is printed last; results.json goes to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from fastxent import _cuda_sources as S
from fastxent import _gpu_plan as P
# run as a script, this folder is on sys.path
from gpu_check import _median_ms, _relative_error, copy_bandwidth, logger

OP, TARGET = "ce_index", "int64"
# issue 4's shapes first: --budget-s may stop the sweep before the last
SHAPES = ((16384, 32000), (16384, 128256), (16384, 1000))
DTYPES = ("float32", "bfloat16")
KNOBS = (dict(S.TUNING_DEFAULTS),                        # the backend's own, first
         {"FX_IN_FLIGHT": 8, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 0},
         {"FX_IN_FLIGHT": 2, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 0},
         {"FX_IN_FLIGHT": 2, "FX_MIN_BLOCKS": 2, "FX_PREFETCH": 0},
         {"FX_IN_FLIGHT": 4, "FX_MIN_BLOCKS": 2, "FX_PREFETCH": 0},
         {"FX_IN_FLIGHT": 4, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 1},
         {"FX_IN_FLIGHT": 8, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 1})
CONFIGS = ((32, 128, False), (32, 256, False),
           (256, 256, True), (256, 256, False),
           (512, 512, True), (512, 512, False),
           (1024, 1024, True), (1024, 1024, False))
WARP_MAX_C = 8192
# (K * block lanes, block threads, cached): K blocks of a cluster per row, compiled on
# sm_90 only, with the backend's knobs, as a module of their own (one that fails to compile
# leaves the others). Blocks of 256 threads are held to 128 registers, so that two share a
# multiprocessor (rows.cu): at 16384 x 32000 float32, K = 2 gives each a 64 KB slice.
CLUSTER_CONFIGS = ((1024, 512, True), (2048, 512, True), (4096, 512, True),
                   (512, 256, True), (1024, 256, True), (2048, 256, True))
# What a variant's output may differ from the backend's kernel by, relative to the largest
# |value|: a block of another size adds a row's terms in another order.
TOLERANCE = {"float32": 1e-5, "bfloat16": 2.0 ** -7}


def module_configs(knobs):
    """The configs compiled under `knobs`: those that leave a thread at least 64 of the
    multiprocessor's 65536 registers with FX_MIN_BLOCKS blocks resident."""
    return [c for c in CONFIGS if c[1] * knobs["FX_MIN_BLOCKS"] <= 1024]


def modules():
    """Every module the sweep compiles: ``(dtype, knobs, options, names)``."""
    out = []
    for dtype in DTYPES:
        for knobs in KNOBS:
            names = [S.row_kernel(OP, dtype, TARGET, c) for c in module_configs(knobs)]
            out.append((dtype, knobs, S.tuning_options(**knobs), names))
    return out


def cluster_modules():
    """The sm_90 modules of cluster configs: ``(dtype, options, names)``."""
    return [(dtype, S.OPTIONS, [S.row_kernel(OP, dtype, TARGET, c) for c in CLUSTER_CONFIGS])
            for dtype in DTYPES]


def runs_at(C, itemsize, knobs, smem_limit):
    """The configs timed at C classes: warps only up to WARP_MAX_C, a cache only where the
    row (a cluster block: its slice) fits the device's shared memory per block. Clusters
    with the backend's knobs only (those not compiled are skipped)."""
    configs = module_configs(knobs) + (list(CLUSTER_CONFIGS) if knobs == S.TUNING_DEFAULTS
                                       else [])
    return [c for c in configs
            if not (c[0] == 32 and C > WARP_MAX_C)
            and not P.row_shared_bytes(C, c, itemsize) > smem_limit]


def min_blocks(knobs, config):
    """The blocks per multiprocessor the kernel's registers allow for: FX_MIN_BLOCKS, or a
    cluster kernel's own (rows.cu: 512 threads' worth)."""
    lanes, block, _ = config
    return max(1, 512 // block) if lanes > block else knobs["FX_MIN_BLOCKS"]


def is_backend_choice(C, itemsize, knobs, config):
    return knobs == S.TUNING_DEFAULTS and config == P.row_config(C, 1, itemsize)


def _attr(fn, name):
    try:
        return int(getattr(fn, name))
    except Exception:
        return None


def _blocks_per_sm(cp, fn, block, smem):
    try:
        return int(cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.ptr, block,
                                                                             smem))
    except Exception:
        return None


SAMPLE_ROWS = 64     # gradient rows compared with the backend's (all rows' losses are)


def _bits(a):
    """`a`'s elements as unsigned integers of the same width (CuPy has no bfloat16 maths)."""
    return a.view({2: "uint16", 4: "uint32", 8: "uint64"}[a.itemsize])


def fused_args(cp, x, t, g):
    """``(args, rows)``: fx::rows's arguments for cross_entropy with class indices `t` over
    (N, C) logits `x`, fused, the gradient into `g` scaled as "mean" scales it, no reduced
    loss; `rows` takes the rows' losses."""
    N, C = x.shape
    rows = cp.empty(N, cp.float64)
    scale = cp.broadcast_to(cp.full((), 1.0 / N, cp.float64), (N, 1))
    return P.row_args(x.reshape(N, C, 1), t2=t.reshape(N, 1), gscale2=scale, rows_out=rows,
                      g3=g.reshape(N, C, 1), err=cp.zeros(1, cp.int32)), rows


def launcher(cp, fn, config, x, args):
    """``(launch, smem)``: a launch of `fn` over `x`'s rows with `config`'s block, the
    backend's grid and dynamic shared memory (the function's limit raised here where that
    is over 48 KB)."""
    N, C = x.shape
    smem = P.row_shared_bytes(C, config, x.itemsize)
    grid = P.row_grid(N, config, cp.cuda.Device().attributes["MultiProcessorCount"])
    if smem > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = smem

    def launch():
        fn((grid,), (config[1],), args, shared_mem=smem)
    return launch, smem


def sweep_shape(cp, compiled, N, C, dtype, copy_gbs, smem_limit, log):
    """Time every variant at (N, C); the backend's own runs first and is the reference."""
    import ml_dtypes
    np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    itemsize = np_dtype.itemsize
    rng = np.random.default_rng(1)
    x = cp.asarray((rng.standard_normal((N, C)) * 3).astype(np_dtype))
    t = cp.asarray(rng.integers(0, C, N))
    g = cp.empty_like(x)
    args, rows = fused_args(cp, x, t, g)
    sample = np.linspace(0, N - 1, SAMPLE_ROWS).astype(np.int64)
    floor = 2 * N * C * itemsize
    runs = sorted(((knobs, config) for knobs in KNOBS
                   for config in runs_at(C, itemsize, knobs, smem_limit)),
                  key=lambda kc: not is_backend_choice(C, itemsize, *kc))
    assert is_backend_choice(C, itemsize, *runs[0]), "the backend's own kernel is not swept"
    results, reference = [], None
    for knobs, config in runs:
        fn = compiled[dtype, tuple(sorted(knobs.items()))].get(config)
        if fn is None:
            continue                           # its module did not compile (logged)
        poison = ~_bits(g).dtype.type(0)       # all ones: NaN in every float dtype
        _bits(g).fill(poison)
        rows.fill(np.nan)
        try:
            launch, smem = launcher(cp, fn, config, x, args)
            launch()
        except Exception as exc:               # e.g. too many resources for this launch
            if reference is None:
                raise
            log(f"{N}x{C} {dtype} {config} {knobs}: not launched: {exc}")
            continue
        unwritten = int((_bits(g) == poison).sum())
        out = (cp.asnumpy(rows), cp.asnumpy(_bits(g)[cp.asarray(sample)]).view(np_dtype))
        reference = reference or out
        ms = _median_ms(cp, launch, warmup=2, repeat=15, budget_s=1.0)
        gbs = floor / (ms * 1e-3) / 1e9
        rows_err = _relative_error(out[0], reference[0])
        grad_err = _relative_error(out[1], reference[1])
        results.append(dict(
            N=N, C=C, dtype=dtype, lanes=config[0], block=config[1], cached=config[2],
            **knobs, backend=is_backend_choice(C, itemsize, knobs, config), ms=ms, gbs=gbs,
            pct_copy=100 * gbs / copy_gbs, regs=_attr(fn, "num_regs"),
            spill_bytes=_attr(fn, "local_size_bytes"),
            blocks_per_sm=_blocks_per_sm(cp, fn, config[1], smem),
            unwritten=unwritten, rows_err=rows_err, grad_err=grad_err,
            agrees=bool(unwritten == 0 and rows_err <= 1e-5
                        and grad_err <= TOLERANCE[dtype])))
        log(f"{N}x{C} {dtype} {config} {knobs}: {ms:.3f} ms, "
            f"{100 * gbs / copy_gbs:.0f}% of copy, agrees {results[-1]['agrees']}")
    call = whole_calls(cp, x, t, g)
    del x, g
    cp.get_default_memory_pool().free_all_blocks()
    if "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()
    return results, call


def whole_calls(cp, x, t, g):
    """The backend's whole call with grad_out=, and torch eager's loss + backward."""
    import fastxent as fx
    out = {"call_ms": _median_ms(cp, lambda: fx.cross_entropy(x, t, return_grad=True,
                                                              grad_out=g))}
    try:
        import torch
    except ImportError:
        return out
    xt = torch.from_dlpack(x).detach().clone().requires_grad_(True)
    tt = torch.from_dlpack(t)

    def torch_fb():
        xt.grad = None
        torch.nn.functional.cross_entropy(xt, tt).backward()
    out["torch_eager_ms"] = _median_ms(cp, torch_fb)
    xt.grad = None
    return out


def compile_all(cp, dtypes, log):
    """{(dtype, knobs items): {config: Function}}; NVRTC, as the backend compiles."""
    compiled = {}
    for dtype, knobs, options, names in modules():
        if dtype not in dtypes:
            continue
        t0 = time.perf_counter()
        try:
            mod = cp.RawModule(code=S.source("rows.cu"), options=options,
                               name_expressions=names)
            functions = {c: mod.get_function(n) for c, n in zip(module_configs(knobs), names)}
        except Exception as exc:
            if knobs == S.TUNING_DEFAULTS:
                raise                          # the backend's own: nothing to compare with
            log(f"{dtype} {knobs} did not compile: {str(exc)[:2000]}")
            functions = {}
        compiled[dtype, tuple(sorted(knobs.items()))] = functions
        log(f"compiled {dtype} {knobs}: {time.perf_counter() - t0:.1f} s")
    if int(cp.cuda.Device().compute_capability) < 90:
        log("no clusters before sm_90: cluster variants not swept")
        return compiled
    for dtype, options, names in cluster_modules():
        if dtype not in dtypes:
            continue
        try:
            mod = cp.RawModule(code=S.source("rows.cu"), options=options,
                               name_expressions=names)
            compiled[dtype, tuple(sorted(S.TUNING_DEFAULTS.items()))].update(
                {c: mod.get_function(n) for c, n in zip(CLUSTER_CONFIGS, names)})
        except Exception as exc:
            log(f"{dtype} clusters did not compile: {str(exc)[:2000]}")
    return compiled


def table(results, calls):
    """Per shape and dtype: the whole calls, then the variants, fastest first."""
    header = ["| lanes/block | cached | in flight | min blocks | prefetch | ms | % of copy "
              "| regs | spill B | blocks/SM | agrees |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines = []
    for key in sorted({(r["N"], r["C"], r["dtype"]) for r in results}):
        mine = sorted((r for r in results if (r["N"], r["C"], r["dtype"]) == key),
                      key=lambda r: r["ms"])
        lines.append(f"\n{key[0]} x {key[1]} {key[2]}")
        call = calls.get(key)
        ours = [r for r in mine if r["backend"]]
        best = next((r for r in mine if r["agrees"]), None)
        if call and ours and best:
            est = call["call_ms"] - ours[0]["ms"] + best["ms"]
            summary = (f"backend call {call['call_ms']:.3f} ms; with the fastest agreeing "
                       f"variant about {est:.3f} ms")
            torch_ms = call.get("torch_eager_ms")
            if torch_ms:
                summary += (f"; torch eager {torch_ms:.3f} ms: x {torch_ms / call['call_ms']:.2f}"
                            f" now, x {torch_ms / est:.2f} with that variant")
            lines.append(summary + "\n")
        lines += header
        for r in mine:
            mark = " (backend)" if r["backend"] else ""
            mapping = (f"cluster of {r['lanes'] // r['block']} x {r['block']}"
                       if r["lanes"] > r["block"] else f"{r['lanes']}/{r['block']}")
            least = min_blocks(r, (r["lanes"], r["block"], r["cached"]))
            lines.append(
                f"| {mapping}{mark} | {r['cached']} | {r['FX_IN_FLIGHT']} | {least} | "
                f"{r['FX_PREFETCH']} | {r['ms']:.3f} | {r['pct_copy']:.0f}% | {r['regs']} | "
                f"{r['spill_bytes']} | {r['blocks_per_sm']} | "
                f"{'yes' if r['agrees'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_sweep_out")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no shape after this many seconds from the start")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log, lines = logger()

    import cupy as cp
    dev = cp.cuda.runtime.getDeviceProperties(0)
    log(f"device: {dev['name'].decode()}, {dev['multiProcessorCount']} SMs, "
        f"L2 {dev['l2CacheSize'] / 2 ** 20:.0f} MiB, CuPy {cp.__version__}")
    t0 = time.perf_counter()
    smem_limit = int(cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])
    copy_gbs = copy_bandwidth(cp)
    log(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    compiled = compile_all(cp, args.dtypes, log)
    results, calls = [], {}
    for N, C in SHAPES:
        for dtype in args.dtypes:
            if time.perf_counter() - t0 > args.budget_s:
                log(f"budget spent: {N}x{C} {dtype} not swept")
                continue
            rs, call = sweep_shape(cp, compiled, N, C, dtype, copy_gbs, smem_limit, log)
            results += rs
            calls[N, C, dtype] = call
    text = table(results, calls)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(dict(copy_gbs=copy_gbs, results=results,
                       calls={f"{k[0]}x{k[1]} {k[2]}": v for k, v in calls.items()}),
                  fh, indent=1)
    with open(os.path.join(args.out, "log.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n\n" + text + "\n")
    print("\n" + text)
    return 0 if all(r["agrees"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
