"""One run on a GPU machine: device, copy bandwidth, correctness, and every kernel's time
against torch CUDA (eager and torch.compile, Liger-Kernel when importable).

    PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --out OUTDIR [--quick] [--budget-s 540]

Correctness runs first (cross_entropy on the device against torch in float64 on the
device): every option, repeats bit-identical. Timings are medians of CUDA-event-timed
repeats after warm-up; each kernel is reported as ``floor bytes / time`` (one read of the
logits, plus one write of the gradient when fused) in GB/s and as a % of the
device-to-device copy bandwidth measured in the same run: cross_entropy against torch eager,
torch.compile and Liger-Kernel, then every other kernel against torch eager, each also
checked against torch in float64 on its timed inputs. The short tables are printed last;
results.json goes to --out.
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


# The other kernels' shapes: the class-axis ops at issue 4's vocabulary size, the element-wise
# losses over 2**27 elements (half a GB of float32 per operand).
CLASS_SHAPE, ELEMENT_SHAPE = (16384, 32000), (16384, 8192)
TOLERANCE = {"float64": 1e-10, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}


def _other_ops(fx, F, torch, x, t, e, p, y, pw):
    """Every kernel besides cross_entropy: ``name -> (fused, floor bytes, ours, input,
    theirs)``.

    `x` (N, C) logits and `t` class indices; `e`, `p` and `y` element-wise operands of one
    shape: logits, probabilities inside (0, 1) (binary_cross_entropy's input), and
    probabilities as targets; `pw` a float32 pos_weight per class of `e`. ``ours()``
    returns fastxent's outputs: the value, and for a fused loss its gradient. ``theirs(v)``
    is torch's value for the input tensor `v` (any dtype), whose backward gives the
    gradient."""
    s = x.dtype.itemsize
    n_class, n_elem = x.size * s, e.size * s
    lp = fx.log_softmax(x)                      # nll_loss's and kl_div's log-probabilities
    le = fx.log_softmax(e)
    tt, yt = torch.from_dlpack(t), torch.from_dlpack(y)
    pwt = torch.from_dlpack(pw)
    return {
        "nll_loss": (True, n_class + t.size * t.itemsize,
                     lambda: fx.nll_loss(lp, t, return_grad=True), lp,
                     lambda v: F.nll_loss(v, tt)),
        "logsumexp": (False, n_class, lambda: (fx.logsumexp(x),), x,
                      lambda v: torch.logsumexp(v, 1)),
        "softmax": (False, 2 * n_class, lambda: (fx.softmax(x),), x,
                    lambda v: torch.softmax(v, 1)),
        "log_softmax": (False, 2 * n_class, lambda: (fx.log_softmax(x),), x,
                        lambda v: torch.log_softmax(v, 1)),
        "binary_cross_entropy_with_logits": (
            True, 3 * n_elem,
            lambda: fx.binary_cross_entropy_with_logits(e, y, return_grad=True), e,
            lambda v: F.binary_cross_entropy_with_logits(v, yt.to(v.dtype))),
        # the usual multi-label call: its views keep two axes (elementwise.cu's INDEXED)
        "binary_cross_entropy_with_logits, pos_weight per class": (
            True, 3 * n_elem + pw.size * pw.itemsize,
            lambda: fx.binary_cross_entropy_with_logits(e, y, pos_weight=pw, return_grad=True),
            e, lambda v: F.binary_cross_entropy_with_logits(v, yt.to(v.dtype),
                                                            pos_weight=pwt.to(v.dtype))),
        "binary_cross_entropy": (
            True, 3 * n_elem, lambda: fx.binary_cross_entropy(p, y, return_grad=True), p,
            lambda v: F.binary_cross_entropy(v, yt.to(v.dtype))),
        "kl_div": (True, 3 * n_elem,
                   lambda: fx.kl_div(le, y, reduction="batchmean", return_grad=True), le,
                   lambda v: F.kl_div(v, yt.to(v.dtype), reduction="batchmean")),
    }


def _torch_error(ours, want):
    """max |ours - want| over max |want|, on the device (the arrays stay where they are)."""
    diff = (ours.double() - want.double()).abs().max().item()
    return diff / max(want.double().abs().max().item(), 1e-30)


def other_kernels(cp, fx, torch, copy_gbs, log, deadline, *, dtypes=("float32", "bfloat16"),
                  class_shape=CLASS_SHAPE, element_shape=ELEMENT_SHAPE):
    """Every kernel besides cross_entropy, float32 and bfloat16: fastxent's time and torch
    eager's (a fused loss with its backward), and fastxent's error against torch in float64
    on the same inputs. Returns (rows, failures); an op not started by `deadline` is
    skipped."""
    import ml_dtypes
    F = torch.nn.functional
    rows, failures = [], []
    for dname in dtypes:
        dt = ml_dtypes.bfloat16 if dname == "bfloat16" else np.dtype(dname)
        rng = np.random.default_rng(3)
        N, C = class_shape
        x = cp.asarray((rng.standard_normal((N, C)) * 3).astype(dt))
        t = cp.asarray(rng.integers(0, C, N))
        host_e = rng.standard_normal(element_shape) * 3
        e = cp.asarray(host_e.astype(dt))
        p = cp.asarray(np.clip(1 / (1 + np.exp(-host_e)), 0.01, 0.99).astype(dt))
        y = cp.asarray(rng.uniform(size=element_shape).astype(dt))
        pw = cp.asarray((1 + np.arange(element_shape[-1]) % 5).astype(np.float32))
        for name, (fused, floor, ours, v, theirs) in _other_ops(
                fx, F, torch, x, t, e, p, y, pw).items():
            if time.perf_counter() > deadline:
                log(f"budget spent: {name} {dname} not timed")
                continue
            got = ours()
            ref_in = torch.from_dlpack(v).double().requires_grad_(fused)
            ref = theirs(ref_in)
            errs = [_torch_error(torch.from_dlpack(got[0]), ref.detach())]
            if fused:
                ref.backward()
                errs.append(_torch_error(torch.from_dlpack(got[1]), ref_in.grad))
            del ref_in, ref
            vt = torch.from_dlpack(v).detach()
            leaf = vt.clone().requires_grad_(True)

            def torch_call(theirs=theirs, fused=fused, leaf=leaf, vt=vt):
                if fused:
                    leaf.grad = None
                    theirs(leaf).backward()
                else:
                    theirs(vt)
            row = dict(op=name, shape=list(v.shape), dtype=dname, fused=fused,
                       floor_gb=floor / 1e9, error=max(errs),
                       ok=bool(max(errs) <= TOLERANCE[dname]))
            for who, fn in (("fastxent", ours), ("torch eager", torch_call)):
                try:
                    row[f"{who} ms"] = _median_ms(cp, fn)
                except Exception as exc:            # e.g. an op torch lacks for a dtype
                    log(f"{name} {dname} {who}: {exc}")
            ms = row.get("fastxent ms")
            if ms:
                row["pct_copy"] = 100 * floor / (ms * 1e-3) / 1e9 / copy_gbs
                if row.get("torch eager ms"):
                    row["x_vs_torch_eager"] = row["torch eager ms"] / ms
            if not row["ok"]:
                failures.append(row)
            rows.append(row)
            log(f"{name} {dname}: error {row['error']:.1e}, "
                f"{ms if ms is None else f'{ms:.3f} ms'}")
            del leaf, vt, got
        del x, t, e, p, y, pw
        cp.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
    fx._gpu.check_errors()
    return rows, failures


def other_table(rows):
    """The other kernels' rows as a markdown table."""
    out = ["| op | shape | dtype | fused | error | ms | % of copy | torch eager ms | "
           "x torch eager |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def num(r, key, fmt):
        return format(r[key], fmt) if r.get(key) is not None else "-"
    for r in rows:
        out.append(f"| {r['op']} | {' x '.join(map(str, r['shape']))} | {r['dtype']} | "
                   f"{r['fused']} | {r['error']:.1e}{'' if r['ok'] else ' FAIL'} | "
                   f"{num(r, 'fastxent ms', '.3f')} | {num(r, 'pct_copy', '.0f')} | "
                   f"{num(r, 'torch eager ms', '.3f')} | {num(r, 'x_vs_torch_eager', '.2f')} |")
    return "\n".join(out)


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
    others, other_failures = other_kernels(cp, fx, torch, copy_gbs, log, deadline,
                                           dtypes=("float32",) if args.quick else
                                           ("float32", "bfloat16"))
    failures += other_failures
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(dict(env=env, copy_gbs=copy_gbs, failures=failures, timings=rows,
                       other_kernels=others), fh, indent=1)
    with open(os.path.join(args.out, "log.txt"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n| N | C | dtype | variant | ms | floor GB | GB/s | % of copy | x torch eager fb |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        x_t = r.get("x_vs_torch_eager_fb")
        print(f"| {r['N']} | {r['C']} | {r['dtype']} | {r['variant']} | {r['ms']:.3f} | "
              f"{r['floor_gb']:.2f} | {r['gbs']:.0f} | {r['pct_copy']:.0f}% | "
              f"{'' if x_t is None else f'{x_t:.2f}'} |")
    print("\n" + other_table(others))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
