"""One run on a GPU machine: device, copy bandwidth, correctness, and every kernel's time
against torch CUDA (eager and torch.compile, Liger-Kernel when importable).

    PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --out OUTDIR [--quick] [--budget-s 540]

Correctness runs first (fastxent on the device against torch in float64 on the device, and
against fastxent's CPU backend): poisoned outputs, every option, repeats bit-identical.
Timings are medians of CUDA-event-timed repeats after warm-up; each kernel is reported as
``floor bytes / time`` (one read of the logits, plus one write of the gradient when fused)
in GB/s and as a % of the device-to-device copy bandwidth measured in the same run. The
short table is printed last; results.json goes to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def _median_ms(cp, fn, *, warmup=3, repeat=20, budget_s=2.0):
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    times, start = [], time.perf_counter()
    for _ in range(repeat):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b))
        if time.perf_counter() - start > budget_s and len(times) >= 5:
            break
    return float(np.median(times))


def logger():
    """A log function that prints at once and keeps the lines for the log file: (log,
    lines)."""
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)
    return log, lines


def _relative_error(got, want, floor=1e-30):
    """max |got - want| over max(|want|, floor), where NaN in the same places as the
    reference counts as agreement (PyTorch's mean over all-ignored targets is NaN) and NaN
    anywhere else as an infinite error."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return float("inf")
    ok = ~np.isnan(want)
    if not ok.any():
        return 0.0
    g, w = got[ok], want[ok]
    with np.errstate(invalid="ignore"):
        diff = np.where(g == w, 0.0, np.abs(g - w))    # equal infinities agree
    finite = np.isfinite(w)
    scale = float(np.abs(w[finite]).max()) if finite.any() else 0.0
    return float(diff.max() / max(floor, scale))


def copy_bandwidth(cp):
    n = 1 << 30                                          # a 1 GiB source
    src = cp.ones(n // 4, cp.float32)
    dst = cp.empty_like(src)
    ms = _median_ms(cp, lambda: dst.__setitem__(Ellipsis, src))
    del src, dst
    return 2 * n / (ms * 1e-3) / 1e9                    # read + write, GB/s


def correctness(cp, fx, torch, log):
    """fastxent on the device against torch float64 on the device; returns failures."""
    import ml_dtypes
    failures = []
    rng = np.random.default_rng(0)
    dtypes = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16,
              "float16": np.float16, "float64": np.float64}
    tol = {"float64": 1e-10, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}
    cases = [(n, c) for c in (2, 10, 1000, 1024, 4096, 32000, 50257, 128256)
             for n in (1, 7, 256)]
    for (N, C) in cases:
        for dname, dt in dtypes.items():
            for opts in ({}, {"label_smoothing": 0.1}, {"weight": True}, {"ignored": True}):
                x = (rng.standard_normal((N, C)) * 3).astype(dt)
                t = rng.integers(0, C, N)
                if opts.get("ignored"):
                    t[::2] = -100
                w = rng.uniform(0.5, 2, C) if opts.get("weight") else None
                eps = opts.get("label_smoothing", 0.0)
                xd = cp.asarray(x)
                loss, grad = fx.cross_entropy(xd, cp.asarray(t), weight=None if w is None
                                              else cp.asarray(w), label_smoothing=eps,
                                              return_grad=True)
                again = fx.cross_entropy(xd, cp.asarray(t), weight=None if w is None
                                         else cp.asarray(w), label_smoothing=eps,
                                         return_grad=True)
                xt = torch.tensor(np.asarray(x, np.float64), device="cuda",
                                  requires_grad=True)
                ref = torch.nn.functional.cross_entropy(
                    xt, torch.tensor(t, device="cuda"), label_smoothing=eps,
                    weight=None if w is None else torch.tensor(w, device="cuda"))
                ref.backward()
                g_ref = xt.grad.cpu().numpy()
                g = cp.asnumpy(grad).astype(np.float64)
                err = _relative_error(g, g_ref)
                lerr = _relative_error(np.float64(float(loss)), np.float64(ref.item()),
                                       floor=1.0)
                same = bool(cp.array_equal(again[1], grad, equal_nan=True))
                ok = err <= tol[dname] and lerr <= tol[dname] and same
                if not ok:
                    failures.append(dict(N=N, C=C, dtype=dname, opts=str(opts), grad_err=err,
                                         loss_err=lerr, repeat_identical=same))
                    log(f"FAIL {N}x{C} {dname} {opts}: grad {err:.2e} loss {lerr:.2e} "
                        f"repeat-identical {same}")
    fx._gpu.check_errors()
    return failures, len(cases) * len(dtypes) * 4


def timings(cp, fx, torch, copy_gbs, quick, log, deadline):
    """Median times of every variant; shapes not started by ``deadline`` are skipped."""
    import ml_dtypes
    shapes = [(65536, 10), (16384, 1000), (16384, 32000), (16384, 128256)]
    if quick:
        shapes = [(16384, 1000), (16384, 32000)]
    rows = []
    liger = None
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
        liger = LigerCrossEntropyLoss()
    except Exception:
        pass
    compiled = None
    for (N, C) in shapes:
        for dname, dt, tdt in (("float32", np.float32, torch.float32),
                               ("bfloat16", ml_dtypes.bfloat16, torch.bfloat16)):
            if time.perf_counter() > deadline:
                log(f"budget spent: {N}x{C} {dname} not timed")
                continue
            s = 2 if dname == "bfloat16" else 4
            x = cp.asarray((np.random.default_rng(1).standard_normal((N, C)) * 3).astype(dt))
            t = cp.asarray(np.random.default_rng(2).integers(0, C, N))
            g = cp.empty_like(x)
            fused = 2 * N * C * s
            entries = {
                "fastxent fwd": (lambda: fx.cross_entropy(x, t), N * C * s),
                "fastxent fwd+bwd": (lambda: fx.cross_entropy(x, t, return_grad=True), fused),
                "fastxent fwd+bwd grad_out": (
                    lambda: fx.cross_entropy(x, t, return_grad=True, grad_out=g), fused),
            }
            xt = torch.from_dlpack(x)
            tt = torch.from_dlpack(t)
            xr = xt.detach().clone().requires_grad_(True)

            def torch_fb(fn=torch.nn.functional.cross_entropy):
                xr.grad = None
                fn(xr, tt).backward()
            entries["torch eager fwd"] = (
                lambda: torch.nn.functional.cross_entropy(xt, tt), N * C * s)
            entries["torch eager fwd+bwd"] = (torch_fb, fused)
            try:
                if compiled is None:
                    compiled = torch.compile(torch.nn.functional.cross_entropy)
                entries["torch.compile fwd+bwd"] = (lambda: torch_fb(compiled), fused)
            except Exception as exc:
                log(f"torch.compile unavailable: {exc}")
            if liger is not None:
                entries["liger fwd+bwd"] = (lambda: torch_fb(liger), fused)
            base = None
            for name, (fn, nbytes) in entries.items():
                try:
                    ms = _median_ms(cp, fn)
                except Exception as exc:
                    log(f"{name} {N}x{C} {dname}: {exc}")
                    continue
                if name == "torch eager fwd+bwd":
                    base = ms
                gbs = nbytes / (ms * 1e-3) / 1e9
                rows.append(dict(N=N, C=C, dtype=dname, variant=name, ms=ms,
                                 floor_gb=nbytes / 1e9, gbs=gbs,
                                 pct_copy=100 * gbs / copy_gbs))
                log(f"{N}x{C} {dname} {name}: {ms:.3f} ms, {gbs:.0f} GB/s, "
                    f"{100 * gbs / copy_gbs:.0f}% of copy")
            for r in rows:
                if (r["N"], r["C"], r["dtype"]) == (N, C, dname) and base:
                    r["x_vs_torch_eager_fb"] = base / r["ms"] if "fwd+bwd" in r["variant"] \
                        else None
            del x, g, xt, xr
            cp.get_default_memory_pool().free_all_blocks()
            torch.cuda.empty_cache()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget-s", type=float, default=540.0,
                    help="start no timed shape after this many seconds from the start")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log, lines = logger()

    import cupy as cp
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import fastxent as fx
    import fastxent._gpu  # noqa: F401

    dev = cp.cuda.runtime.getDeviceProperties(0)
    env = dict(device=dev["name"].decode(), sms=dev["multiProcessorCount"],
               l2_mb=dev["l2CacheSize"] / 2 ** 20, cupy=cp.__version__,
               torch=torch.__version__, python=platform.python_version())
    log(f"env: {env}")
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    x = cp.zeros((4, 50000), cp.float32)
    fx.cross_entropy(x, cp.zeros(4, cp.int64), return_grad=True)
    cp.cuda.Device().synchronize()
    log(f"first call (compiles one module): {time.perf_counter() - t0:.2f} s")
    copy_gbs = copy_bandwidth(cp)
    log(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    failures, n_cases = correctness(cp, fx, torch, log)
    log(f"correctness: {n_cases - len(failures)} / {n_cases} cases pass")
    rows = timings(cp, fx, torch, copy_gbs, args.quick, log, deadline)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(dict(env=env, copy_gbs=copy_gbs, failures=failures, timings=rows), fh,
                  indent=1)
    with open(os.path.join(args.out, "log.txt"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n| N | C | dtype | variant | ms | floor GB | GB/s | % of copy | x torch eager fb |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        x_t = r.get("x_vs_torch_eager_fb")
        print(f"| {r['N']} | {r['C']} | {r['dtype']} | {r['variant']} | {r['ms']:.3f} | "
              f"{r['floor_gb']:.2f} | {r['gbs']:.0f} | {r['pct_copy']:.0f}% | "
              f"{'' if x_t is None else f'{x_t:.2f}'} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
