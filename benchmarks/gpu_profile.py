"""Where a CuPy call's time goes: host work against device work, per call.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_profile.py [--calls 200]

For a few calls of ``fastxent.cross_entropy`` on the device it prints
- the host time per call and the device time between events around one call
  (``cupyx.profiler.benchmark``), and the time per call of back-to-back calls, the
  rate a training loop sees;
- the kernels one call launches, with their device time (``torch.profiler``, which sees
  CuPy's launches through CUPTI), when torch with CUDA is importable;
- the host functions that take the most time over the calls (``cProfile``).

A call whose back-to-back time is near its host time is bound by the Python side; one near
its device time, by the kernels.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

import numpy as np


def cases(cp, fx):
    import ml_dtypes
    out = []
    for (N, C), dt in (((16, 10), np.float32), ((65536, 10), np.float32),
                       ((16384, 1000), np.float32), ((16384, 1000), ml_dtypes.bfloat16),
                       ((4096, 32000), np.float32)):
        rng = np.random.default_rng(0)
        x = cp.asarray((rng.standard_normal((N, C)) * 3).astype(dt))
        t = cp.asarray(rng.integers(0, C, N))
        g = cp.empty_like(x)
        tag = f"{N}x{C} {np.dtype(dt).name}"
        out += [(f"{tag} loss", lambda x=x, t=t: fx.cross_entropy(x, t)),
                (f"{tag} fused", lambda x=x, t=t: fx.cross_entropy(x, t, return_grad=True)),
                (f"{tag} fused grad_out", lambda x=x, t=t, g=g: fx.cross_entropy(
                    x, t, return_grad=True, grad_out=g))]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args(argv)
    import cupy as cp
    from cupyx.profiler import benchmark

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import fastxent as fx

    rows = []
    all_cases = cases(cp, fx)
    for name, fn in all_cases:
        for _ in range(5):
            fn()
        cp.cuda.Device().synchronize()
        res = benchmark(fn, n_repeat=args.calls, n_warmup=5)
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        for _ in range(args.calls):
            fn()
        b.record()
        b.synchronize()
        loop_us = cp.cuda.get_elapsed_time(a, b) * 1e3 / args.calls
        rows.append((name, float(np.median(res.cpu_times)) * 1e6,
                     float(np.median(res.gpu_times[0])) * 1e6, loop_us))
        print(f"{name}: host {rows[-1][1]:.1f} us, device {rows[-1][2]:.1f} us, "
              f"back-to-back {loop_us:.1f} us per call", flush=True)

    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
        have_torch = torch.cuda.is_available()
    except Exception:                                  # no torch with CUDA
        have_torch = False
    for name, fn in all_cases:
        if not name.startswith(("65536x10 float32 fused", "4096x32000 float32 fused")):
            continue
        if have_torch:
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    fn()
                cp.cuda.Device().synchronize()
            print(f"\n--- kernels of 20 calls: {name}")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14,
                                            max_name_column_width=70))
        stats = cProfile.Profile()
        stats.enable()
        for _ in range(args.calls):
            fn()
        stats.disable()
        cp.cuda.Device().synchronize()
        buf = io.StringIO()
        pstats.Stats(stats, stream=buf).sort_stats("tottime").print_stats(18)
        print(f"\n--- host functions over {args.calls} calls: {name}")
        print(buf.getvalue()[-6000:])

    print("\n| call | host us | device us (one call) | back-to-back us per call |")
    print("| --- | --- | --- | --- |")
    for name, host, dev, loop in rows:
        print(f"| {name} | {host:.1f} | {dev:.1f} | {loop:.1f} |")


if __name__ == "__main__":
    main()
