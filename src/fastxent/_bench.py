"""``python -m fastxent bench``: fastxent against its peers and the memory floors.

Method (docs/performance.md): float32 logits ``standard_normal * 4`` (seed 0), uniform
int64 targets, mean reduction. "fwd" is the loss; "fb" the loss and its gradient with
respect to the logits, "fb_out" the same written into a preallocated ``grad_out``. Every
entry and floor is timed on the same arrays in one process, in interleaved rounds (drift on a
shared host hits every entry alike); the table gives medians. Floors, measured by NumPy on the
same arrays: "read" is ``np.max`` over the logits (one read) and "copy" is ``np.copyto`` into
an existing array (one read plus one write); GB/s-eq is the bytes an ideal kernel must move
(fwd: N*C*4, fb: 2*N*C*4) divided by the time.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time

import numpy as np

import fastxent as fx

SHAPES = [(16, 10), (65536, 10), (16384, 100), (8192, 1000), (2048, 32000), (512, 128256)]


def numpy_cross_entropy(x, t, grad=False):
    """The textbook NumPy version: mean cross entropy (and its gradient) in several passes."""
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, t])
    if not grad:
        return loss
    e /= s
    e[rows, t] -= 1
    e /= x.shape[0]
    return loss, e


def _entries(x, t, threads):
    """name -> {mode: zero-argument callable}; peers that are not installed are skipped."""
    g = np.empty_like(x)
    entries = {
        "fastxent": {
            "fwd": lambda: fx.cross_entropy(x, t),
            "fb": lambda: fx.cross_entropy(x, t, return_grad=True),
            "fb_out": lambda: fx.cross_entropy(x, t, return_grad=True, grad_out=g),
        },
        "numpy": {"fwd": lambda: numpy_cross_entropy(x, t),
                  "fb": lambda: numpy_cross_entropy(x, t, grad=True)},
        "floor": {"fwd": lambda: np.max(x), "fb": lambda: np.copyto(g, x)},
    }
    skipped = []
    if importlib.util.find_spec("torch"):
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(threads)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def torch_fwd():
            with torch.inference_mode():
                return F.cross_entropy(xt, tt)

        def torch_fb():
            leaf = xt.detach().requires_grad_(True)
            F.cross_entropy(leaf, tt).backward()
            return leaf.grad
        entries["torch"] = {"fwd": torch_fwd, "fb": torch_fb}
    else:
        skipped.append("torch")
    if importlib.util.find_spec("sklearn"):
        from sklearn._loss.loss import HalfMultinomialLoss
        loss = HalfMultinomialLoss(n_classes=x.shape[1])
        tf = t.astype(x.dtype)
        # sklearn's per-sample loss and per-sample (sum-reduction) gradient, mean taken after
        entries["sklearn"] = {
            "fwd": lambda: loss.loss(tf, x, n_threads=threads).mean(),
            "fb": lambda: loss.loss_gradient(tf, x, n_threads=threads),
        }
    else:
        skipped.append("sklearn")
    if importlib.util.find_spec("jax") and importlib.util.find_spec("optax"):
        import jax
        import optax
        xj, tj = jax.device_put(x), jax.device_put(t.astype(np.int32))

        def mean_ce(z, y):
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
        fwd, fb = jax.jit(mean_ce), jax.jit(jax.value_and_grad(mean_ce))
        entries["jax"] = {"fwd": lambda: fwd(xj, tj).block_until_ready(),
                          "fb": lambda: jax.block_until_ready(fb(xj, tj))}
    else:
        skipped.append("jax")
    return entries, skipped


def _time(fn, budget):
    """Median seconds of fn over repeats filling about `budget` seconds (at least 1)."""
    times, start = [], time.perf_counter()
    while not times or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(shapes=SHAPES, rounds=5, budget=0.05, threads=None, progress=True):
    """Time every entry on every shape; returns a JSON-ready dict of medians (seconds)."""
    threads = threads or fx.get_num_threads()
    fx.set_num_threads(threads)
    results, skipped = [], []
    steps, done = len(shapes) * rounds, 0
    for n, c in shapes:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((n, c), dtype=np.float32) * 4)
        t = rng.integers(0, c, n)
        entries, skipped = _entries(x, t, threads)
        samples = {(name, mode): [] for name, modes in entries.items() for mode in modes}
        for fn in (f for modes in entries.values() for f in modes.values()):
            fn()                                          # warm-up: first touch, jit
        for _ in range(rounds):
            for (name, mode), values in samples.items():
                values.append(_time(entries[name][mode], budget))
            done += 1
            if progress:
                bar = "#" * (30 * done // steps)
                print(f"\r[{bar:<30}] {done}/{steps} {n}x{c}", end="", file=sys.stderr,
                      flush=True)
        results.append({"shape": [n, c], "bytes": int(x.nbytes),
                        "median_s": {f"{k[0]}/{k[1]}": float(np.median(v))
                                     for k, v in samples.items()}})
    if progress:
        print(file=sys.stderr)
    return {"threads": threads, "kernels": fx.cpu_kernels(), "dtype": "float32",
            "rounds": rounds, "skipped": skipped, "results": results}


def table(report) -> str:
    """The report as text: ms, GB/s-eq, x floor and x best peer per shape and mode."""
    lines = [f"float32, {report['threads']} thread(s), {report['kernels']} kernels, median of "
             f"{report['rounds']} interleaved rounds; skipped (not installed): "
             f"{report['skipped'] or 'none'}"]
    for res in report["results"]:
        n, c = res["shape"]
        med = res["median_s"]
        lines.append(f"\n({n}, {c})  {'entry':<16}{'ms':>10}{'GB/s-eq':>10}{'x floor':>9}"
                     f"{'x best peer':>13}")
        for mode, floor_mode, passes in (("fwd", "fwd", 1), ("fb", "fb", 2),
                                         ("fb_out", "fb", 2)):
            floor = med[f"floor/{floor_mode}"]
            peer_mode = "fb" if mode == "fb_out" else mode
            peers = [v for k, v in med.items() if k.endswith("/" + peer_mode)
                     and k.split("/")[0] not in ("fastxent", "floor")]
            best = min(peers) if peers else float("nan")
            for key in sorted(k for k in med if k.endswith("/" + mode)):
                s = med[key]
                gbs = passes * res["bytes"] / s / 1e9
                ratio = f"{best / s:.2f}x" if key.startswith("fastxent/") else ""
                lines.append(f"{'':8}{key:<16}{s * 1e3:10.3f}{gbs:10.1f}"
                             f"{s / floor:9.2f}{ratio:>13}")
    return "\n".join(lines)


def main(args) -> int:
    shapes = SHAPES
    rounds, budget = args.rounds, 0.05
    if args.quick:
        shapes = [(max(n // 4, 16), c) for n, c in SHAPES]
        rounds, budget = min(rounds, 3), 0.02
    report = run(shapes, rounds=rounds, budget=budget, threads=args.threads)
    return emit(report, table(report), args.json)


def emit(report, text, json_path) -> int:
    """Print a report's table and, when `json_path` is given, write the report there."""
    print(text)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"\nwrote {json_path}")
    return 0
