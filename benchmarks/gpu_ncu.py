"""Where the fused row kernel's time goes, by Nsight Compute's hardware counters.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_ncu.py --out OUTDIR [--ncu PATH]

gpu_sweep.py says which launch shape of ``fx::rows`` is fastest; this script says why the
backend's own one stops short of the copy bandwidth, and what the sweep's other shapes
change. It runs itself under ``ncu``: a child process makes one fused cross_entropy call
per case (class indices, ``grad_out=``, the backend's choice of kernel), then launches some
of the sweep's variants alone at 16384 x 32000 (VARIANTS), and ncu profiles each
``fx::rows`` launch. Per launch it prints:

- the kernel's time, and the DRAM bytes it read and wrote over the floor (one read of the
  logits, one write of the gradient): reads near 2x the floor mean each row came from HBM
  twice;
- DRAM throughput as a % of its peak, achieved occupancy, registers a thread, the blocks a
  multiprocessor can hold by registers and by shared memory, and issue-slot use;
- the stall reasons that cost most (cycles per issued instruction), shared-memory bank
  conflicts and the L2 hit rate.

ncu runs with ``--clock-control none`` (the clocks gpu_check.py's timings ran at) and its
default cache flush before each replay. A metric this ncu does not know is dropped and the
run repeated without it. ncu must be able to read the counters: on gVisor machines it could
not. The raw CSV, the table and results.json go to --out.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

from fastxent import _cuda_sources as S
from fastxent import _gpu_plan as P
# run as a script, this folder is on sys.path
from gpu_sweep import fused_args, launcher

# (N, C, dtype): whole backend calls at issue 4's shapes, and a warp-per-row one for contrast
CASES = ((16384, 32000, "float32"), (16384, 32000, "bfloat16"),
         (16384, 128256, "float32"), (16384, 128256, "bfloat16"),
         (16384, 1000, "float32"))
# Launch shapes of gpu_sweep.py, each launched alone as the sweep launches it (no reduced
# loss) at VARIANT_SHAPE in both dtypes: (knobs, (lanes, block, cached)), None for the
# backend's choice. The others: a 256-thread block caching the row (three bfloat16 blocks
# fit a multiprocessor), the L2 prefetch of the next row, two 512-thread blocks held to 64
# registers, and a cluster of two 256-thread blocks per row, each caching half (sm_90).
VARIANT_SHAPE = (16384, 32000)
VARIANTS = ((dict(S.TUNING_DEFAULTS), None),
            (dict(S.TUNING_DEFAULTS), (256, 256, True)),
            (dict(S.TUNING_DEFAULTS, FX_PREFETCH=1), (512, 512, True)),
            (dict(S.TUNING_DEFAULTS, FX_MIN_BLOCKS=2, FX_IN_FLIGHT=2), (512, 512, True)),
            (dict(S.TUNING_DEFAULTS), (512, 256, True)))
KERNEL_REGEX = "regex:rows"       # fx::rows and fx::rows_cluster, not CuPy's own kernels
STALLS = ("long_scoreboard", "barrier", "short_scoreboard", "mio_throttle", "lg_throttle",
          "wait", "math_pipe_throttle", "not_selected", "selected", "no_instruction",
          "branch_resolving", "dispatch_stall", "drain", "membar", "imc_miss", "misc",
          "sleeping", "tex_throttle")
METRICS = ("gpu__time_duration.sum",
           "sm__cycles_elapsed.avg.per_second",
           "dram__bytes_read.sum",
           "dram__bytes_write.sum",
           "dram__throughput.avg.pct_of_peak_sustained_elapsed",
           "sm__warps_active.avg.pct_of_peak_sustained_active",
           "smsp__issue_active.avg.pct_of_peak_sustained_active",
           "launch__registers_per_thread",
           "launch__occupancy_limit_registers",
           "launch__occupancy_limit_shared_mem",
           "launch__block_size",
           "launch__grid_size",
           "lts__t_sector_hit_rate.pct",
           "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
           "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
           ) + tuple(f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio"
                     for r in STALLS)
# ncu's unit prefixes (decimal, bytes included)
_PREFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BASE_UNITS = ("byte", "second", "cycle", "hz", "inst", "warp", "sector", "request")


def _unit_scale(unit: str) -> float:
    """What a value in `unit` is multiplied by to be in base units ("usecond" 1e-6,
    "Gbyte/second" 1e9, "cycle/nsecond" 1e9); 1 for a unit without a known prefix."""
    def word(w):
        for base in _BASE_UNITS:
            if w.lower().endswith(base) and len(w) == len(base) + 1 and w[0] in _PREFIX:
                return _PREFIX[w[0]]
        return 1.0
    num, _, den = unit.partition("/")
    return word(num) / (word(den) if den else 1.0)


def number(value: str, unit: str = ""):
    """A metric value as a float in base units; None where ncu gave none ("n/a")."""
    text = value.replace(",", "").strip()
    try:
        return float(text) * _unit_scale(unit.strip())
    except ValueError:
        return None


def parse_csv(text: str):
    """ncu's ``--csv`` details page (one row per metric and launch) as ``[(kernel name,
    {metric: value in base units}), ...]`` in launch order. Lines that are not part of the
    table (``==PROF==`` and the program's own output) are skipped."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if line.startswith('"ID"') and '"Metric Name"' in line), None)
    if start is None:
        raise ValueError("no ncu CSV table in the output")
    launches = {}
    for row in csv.DictReader(lines[start:]):
        if not (row.get("ID") or "").isdigit() or not row.get("Metric Name"):
            continue
        name, values = launches.setdefault(int(row["ID"]), (row.get("Kernel Name", ""), {}))
        values[row["Metric Name"]] = number(row.get("Metric Value") or "",
                                            row.get("Metric Unit") or "")
    return [launches[k] for k in sorted(launches)]


def unknown_metrics(output: str, metrics) -> list:
    """The metrics an ncu error in `output` names, whole or by the start of their name (ncu
    refuses a whole run for one metric it does not know)."""
    named = {t for line in output.splitlines() if "==ERROR==" in line
             for t in re.findall(r"[a-z0-9_]+__[a-z0-9_.]+", line)}
    return [m for m in metrics if any(m.startswith(t.rstrip(".")) for t in named)]


def summarise(label, N, C, dtype, values):
    """One launch's row: the counters that say where its time goes, and its floor ratios."""
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    floor = N * C * itemsize                       # one read of the logits, one write
    get = values.get
    seconds = get("gpu__time_duration.sum")
    stalls = {r: get(f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio")
              for r in STALLS}
    top = sorted(((v, r) for r, v in stalls.items() if v), reverse=True)[:4]
    return {
        "case": label,
        "ms": None if seconds is None else seconds * 1e3,
        "floor GB/s": None if not seconds else 2 * floor / seconds / 1e9,
        "read x floor": None if get("dram__bytes_read.sum") is None
        else get("dram__bytes_read.sum") / floor,
        "write x floor": None if get("dram__bytes_write.sum") is None
        else get("dram__bytes_write.sum") / floor,
        "dram %": get("dram__throughput.avg.pct_of_peak_sustained_elapsed"),
        "occupancy %": get("sm__warps_active.avg.pct_of_peak_sustained_active"),
        "issue %": get("smsp__issue_active.avg.pct_of_peak_sustained_active"),
        "registers": get("launch__registers_per_thread"),
        "block": get("launch__block_size"),
        "grid": get("launch__grid_size"),
        "blocks/SM by registers": get("launch__occupancy_limit_registers"),
        "blocks/SM by shared memory": get("launch__occupancy_limit_shared_mem"),
        "L2 hit %": get("lts__t_sector_hit_rate.pct"),
        "smem conflicts ld/st": (get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"),
                                 get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum")),
        "SM GHz": None if get("sm__cycles_elapsed.avg.per_second") is None
        else get("sm__cycles_elapsed.avg.per_second") / 1e9,
        "top stalls": [(r, v) for v, r in top],
    }


def table(rows) -> str:
    def f(v, fmt):
        return "—" if v is None else format(v, fmt)
    head = ("| case | ms | floor GB/s | DRAM read, write × floor | DRAM % | occupancy % | "
            "issue % | regs | blocks/SM (regs, smem) | L2 hit % | smem conflicts ld/st | "
            "top stalls (cycles/issue) |")
    out = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for r in rows:
        ld, st = r["smem conflicts ld/st"]
        stalls = ", ".join(f"{name} {v:.1f}" for name, v in r["top stalls"]) or "—"
        out.append(
            f"| {r['case']} | {f(r['ms'], '.3f')} | {f(r['floor GB/s'], '.0f')} | "
            f"{f(r['read x floor'], '.2f')}, {f(r['write x floor'], '.2f')} | "
            f"{f(r['dram %'], '.0f')} | {f(r['occupancy %'], '.0f')} | {f(r['issue %'], '.0f')} | "
            f"{f(r['registers'], '.0f')} | {f(r['blocks/SM by registers'], '.0f')}, "
            f"{f(r['blocks/SM by shared memory'], '.0f')} | {f(r['L2 hit %'], '.0f')} | "
            f"{f(ld, '.0f')}/{f(st, '.0f')} | {stalls} |")
    return "\n".join(out)


def all_cases():
    """What the child runs, in order: ``[N, C, dtype, variant index or None]`` (whole
    backend calls first, then VARIANTS at VARIANT_SHAPE)."""
    return ([[N, C, dtype, None] for N, C, dtype in CASES] +
            [[*VARIANT_SHAPE, dtype, i] for dtype in ("float32", "bfloat16")
             for i in range(len(VARIANTS))])


def label(N, C, dtype, variant):
    if variant is None:
        return f"{N}x{C} {dtype}, backend call"
    knobs, config = VARIANTS[variant]
    config = config or P.row_config(C, 1, 2 if dtype == "bfloat16" else 4)
    lanes, block, cached = config
    shape = (f"cluster of {lanes // block} x {block}" if lanes > block
             else f"{lanes} lanes, block {block}")
    other = ", ".join(f"{k}={v}" for k, v in sorted(knobs.items())
                      if v != S.TUNING_DEFAULTS[k])
    return (f"{N}x{C} {dtype}, {shape}{', cached' if cached else ''}"
            f"{', ' + other if other else ''}")


def _logits(cp, N, C, dtype):
    import ml_dtypes
    # made on the device: NumPy takes tens of seconds for 16384 x 128256
    x = cp.random.standard_normal((N, C), dtype=cp.float32) * 3
    if dtype == "bfloat16":                    # each float32's top half (CuPy makes none)
        return (x.view(cp.uint32) >> 16).astype(cp.uint16).view(np.dtype(ml_dtypes.bfloat16))
    return x if dtype == "float32" else x.astype(dtype)


def _launch_variant(cp, N, C, dtype, variant, x, t, g, modules):
    """One launch of fx::rows for cross_entropy with class indices, with gpu_sweep.py's own
    arguments and launch; False where the device cannot run it (a cluster before sm_90)."""
    knobs, config = VARIANTS[variant]
    config = config or P.row_config(C, 1, x.itemsize)
    if config[0] > config[1] and int(cp.cuda.Device().compute_capability) < 90:
        return False
    name = S.row_kernel("ce_index", dtype, "int64", config)
    key = (dtype, tuple(sorted(knobs.items())), name)
    if key not in modules:
        modules[key] = cp.RawModule(code=S.source("rows.cu"),
                                    options=S.tuning_options(**knobs),
                                    name_expressions=[name]).get_function(name)
    args, _ = fused_args(cp, x, t, g)
    launcher(cp, modules[key], config, x, args)[0]()
    return True


def child(cases) -> None:
    """Each case in order: a whole backend call (fused, ``grad_out=``) or a variant's
    launch, each one fx::rows launch (modules compile before it). Its label goes to stderr
    once it has run: the parent pairs ncu's launches with those lines."""
    import cupy as cp

    import fastxent as fx
    modules = {}
    for N, C, dtype, variant in cases:
        x = _logits(cp, N, C, dtype)
        t = cp.random.randint(0, C, N).astype(cp.int64)
        g = cp.empty_like(x)
        if variant is None:
            fx.cross_entropy(x, t, return_grad=True, grad_out=g)
        elif not _launch_variant(cp, N, C, dtype, variant, x, t, g, modules):
            print(f"skipped (no clusters before sm_90): {label(N, C, dtype, variant)}",
                  file=sys.stderr, flush=True)
            continue
        cp.cuda.Device().synchronize()
        fx.check_errors()
        print(f"profiled: {label(N, C, dtype, variant)}", file=sys.stderr, flush=True)
        del x, t, g
        # ncu saves what a kernel may write before each replay: leave it the memory
        cp.get_default_memory_pool().free_all_blocks()


def find_ncu(given=None):
    """`given`, else ncu on PATH, else the newest one in NVIDIA's usual folders."""
    if given:
        return given
    found = shutil.which("ncu")
    if found:
        return found
    candidates = sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu") +
                        glob.glob("/usr/local/cuda*/bin/ncu") +
                        glob.glob("/usr/local/cuda*/nsight-compute*/ncu"))
    return candidates[-1] if candidates else None


def ncu_command(ncu, metrics, cases):
    return [ncu, "--csv", "--print-units", "base", "--clock-control", "none",
            "--target-processes", "all", "--kernel-name", KERNEL_REGEX,
            "--metrics", ",".join(metrics),
            sys.executable, os.path.abspath(__file__), "--child", json.dumps(cases)]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_ncu_out")
    ap.add_argument("--ncu", help="the ncu executable (default: PATH, then /opt/nvidia)")
    ap.add_argument("--timeout-s", type=float, default=480.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        child(json.loads(args.child))
        return 0
    os.makedirs(args.out, exist_ok=True)
    ncu = find_ncu(args.ncu)
    if ncu is None:
        print("no ncu found (pass --ncu PATH)", file=sys.stderr)
        return 2
    cases = all_cases()
    metrics = list(METRICS)
    for _ in range(4):
        cmd = ncu_command(ncu, metrics, cases)
        print(f"ncu: {len(metrics)} metrics, {len(cases)} cases", flush=True)
        try:
            # the child imports fastxent as this process did (same interpreter and path)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.timeout_s)
        except subprocess.TimeoutExpired as e:
            # what was captured comes as bytes whatever `text` says
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
            print(f"ncu ran past {args.timeout_s:.0f} s:\n{err[-4000:]}", file=sys.stderr)
            return 1
        with open(os.path.join(args.out, "ncu.csv"), "w") as fh:
            fh.write(proc.stdout)
        with open(os.path.join(args.out, "ncu_stderr.txt"), "w") as fh:
            fh.write(proc.stderr)
        dropped = unknown_metrics(proc.stdout + proc.stderr, metrics)
        if proc.returncode == 0 or not dropped:
            break
        print(f"ncu does not know {dropped}: dropped, run again", flush=True)
        metrics = [m for m in metrics if m not in dropped]
    if proc.returncode != 0:
        print(f"ncu exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}",
              file=sys.stderr)
        return 1
    launches = parse_csv(proc.stdout)
    by_label = {label(*c): c for c in cases}
    ran = [line[len("profiled: "):] for line in proc.stderr.splitlines()
           if line.startswith("profiled: ")]
    if len(launches) != len(ran) or not set(ran) <= set(by_label):
        print(f"{len(launches)} profiled launches for {len(ran)} cases run:\n"
              f"{proc.stderr[-4000:]}", file=sys.stderr)
        return 1
    rows = [dict(summarise(name, *by_label[name][:3], values), kernel=kernel)
            for name, (kernel, values) in zip(ran, launches)]
    text = table(rows)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(dict(metrics=metrics, rows=rows), fh, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(text + "\n")
    for r in rows:
        print(f"{r['case']}: {r['kernel']}")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
