"""``python -m fastxent demo|bench|fit-bench|info``.

demo   the worked examples, then one fused loss + gradient call on a default-sized problem,
       timed next to a plain NumPy implementation of the same maths.
bench  fastxent against the installed peers (torch, scikit-learn, JAX/optax, NumPy) and the
       memory floors, on the same arrays, interleaved; a table and optionally JSON.
fit-bench  fastxent.sklearn.CrossEntropyClassifier against LogisticRegression(solver="lbfgs"):
       fit time at equal tolerance, 1 thread and all cores (needs scikit-learn).
info   version, OpenMP, threads, NumPy.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

import fastxent as fx
from fastxent import _bench, _fit_bench


def _median_ms(fn, repeat):
    fn()                                               # warm-up (first-touch page faults)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def demo(args) -> int:
    print("fastxent", fx.__version__, "- worked examples (PyTorch's values in brackets)\n")
    p = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]])
    ce = fx.cross_entropy(np.log(p), np.array([0, 0]), reduction="none")
    print(f"  target (1,0,0) vs p=(0.5,0.4,0.1): {ce[0]:.4f}  [0.6931]")
    print(f"  target (1,0,0) vs p=(0.8,0.1,0.1): {ce[1]:.4f}  [0.2231]")
    logits = np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]])
    print(f"  logits {logits.tolist()}, targets [0, 2], mean: "
          f"{float(fx.cross_entropy(logits, np.array([0, 2]))):.4f}  [1.2762]")
    x, y = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    print(f"  BCE with logits {x.tolist()} vs {y.tolist()}: "
          f"{float(fx.binary_cross_entropy_with_logits(x, y)):.4f}  [0.3048]")
    print(f"  ... with pos_weight=3: "
          f"{float(fx.binary_cross_entropy_with_logits(x, y, pos_weight=np.array(3.0))):.4f}"
          f"  [0.7054]")

    n, c = args.shape
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    t = rng.integers(0, c, n)
    grad = np.empty_like(x)
    print(f"\nfused loss + gradient, ({n}, {c}) {dtype}, {fx.get_num_threads()} thread(s), "
          f"median of {args.repeat}:")
    ours = _median_ms(lambda: fx.cross_entropy(x, t, return_grad=True), args.repeat)
    ours_out = _median_ms(lambda: fx.cross_entropy(x, t, return_grad=True, grad_out=grad),
                          args.repeat)
    ref = _median_ms(lambda: _bench.numpy_cross_entropy(x, t, grad=True), args.repeat)
    loss, g = fx.cross_entropy(x, t, return_grad=True)
    ref_loss, ref_g = _bench.numpy_cross_entropy(x.astype(np.float64), t, grad=True)
    print(f"  fastxent.cross_entropy(return_grad=True)  {ours:9.2f} ms")
    print(f"  ... with grad_out= (no allocation)        {ours_out:9.2f} ms")
    print(f"  plain NumPy                               {ref:9.2f} ms  "
          f"({ref / ours:.1f}x slower)")
    print(f"  loss {float(loss):.6f}; |loss - float64 NumPy| = "
          f"{abs(float(loss) - ref_loss):.1e}, max |grad - float64 NumPy| = "
          f"{np.abs(g - ref_g).max():.1e}")
    return 0


def info(args) -> int:
    print(f"fastxent {fx.__version__}")
    print(f"python   {platform.python_version()} ({platform.machine()})")
    print(f"numpy    {np.__version__}")
    print(f"openmp   {'enabled' if fx.openmp_enabled() else 'NOT enabled (serial build)'}")
    print(f"kernels  {fx.cpu_kernels()}")
    print(f"threads  {fx.get_num_threads()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastxent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="worked examples and a timed fused call")
    p_demo.add_argument("--shape", type=int, nargs=2, default=(8192, 1000),
                        metavar=("N", "C"), help="logits shape (default: 8192 1000)")
    p_demo.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p_demo.add_argument("--repeat", type=int, default=20, help="timed runs (default: 20)")
    p_demo.set_defaults(func=demo)
    p_bench = sub.add_parser("bench", help="fastxent against its peers and the floors")
    p_bench.add_argument("--quick", action="store_true",
                         help="a quarter of the rows, 3 rounds (seconds)")
    p_bench.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p_bench.add_argument("--threads", type=int, default=None,
                         help="threads for fastxent, torch and scikit-learn (default: all)")
    p_bench.add_argument("--json", metavar="PATH", help="also write the medians as JSON")
    p_bench.set_defaults(func=_bench.main)
    p_fit = sub.add_parser("fit-bench", help="CrossEntropyClassifier vs LogisticRegression")
    p_fit.add_argument("--quick", action="store_true",
                       help="the synthetic problem with 20000 rows instead of 200000")
    p_fit.add_argument("--rounds", type=int, default=3, help="interleaved fits (default 3)")
    p_fit.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                       help="thread counts to run, 0 = all cores (default: 1 0)")
    p_fit.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p_fit.set_defaults(func=_fit_bench.main)
    p_info = sub.add_parser("info", help="build and runtime facts")
    p_info.set_defaults(func=info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
