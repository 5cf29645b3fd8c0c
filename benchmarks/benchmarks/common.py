"""Shared pieces of the asv suite: cached pre-faulted data, the floors, the benchmark factory.

Every operation is one row of a table (name -> how to call it); `make_benchmark` turns a row
into an asv class with `time_`, `peakmem_` and `track_` methods, so a method's name cannot
drift from what it calls (the numpy/scipy habit, without hand-written repetition).
"""
import time
from functools import lru_cache

import numpy as np

try:                                          # asv >= 0.6
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:                           # outside asv (the smoke test): a plain skip
    SkipNotImplemented = NotImplementedError

SHAPES = ["16x10", "65536x10", "8192x1000", "512x32000"]
DTYPES = ["float32", "float64"]
LAYOUTS = ["C", "F"]


def parse(shape):
    return tuple(int(v) for v in shape.split("x"))


@lru_cache(maxsize=8)
def logits(shape, dtype, layout):
    """Seeded logits (standard normal x 4), written once so their pages are faulted in."""
    n, c = parse(shape)
    x = np.empty((n, c), dtype=dtype, order=layout)
    x[...] = np.random.default_rng(0).standard_normal((n, c)) * 4
    x.flags.writeable = False
    return x


@lru_cache(maxsize=8)
def targets(shape):
    n, c = parse(shape)
    return np.random.default_rng(1).integers(0, c, n)


def median_time(fn, repeat=7):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def make_benchmark(name, build, *, writes_gradient, module):
    """An asv class for one operation.

    `build(x, t)` returns the zero-argument callable to time. `writes_gradient` picks the
    floor: one copy of the logits (read + write) for calls that write a gradient or an output
    of the input's size, one read otherwise.
    """

    class Benchmark:
        params = [SHAPES, DTYPES, LAYOUTS]
        param_names = ["shape", "dtype", "layout"]
        timeout = 120

        def setup(self, shape, dtype, layout):
            x = logits(shape, dtype, layout)
            self.call = build(x, targets(shape))
            out = np.empty_like(x)
            self.floor = (lambda: np.copyto(out, x)) if writes_gradient else (lambda: np.max(x))
            self.call()                           # warm-up; also faults in any outputs

        def time_call(self, shape, dtype, layout):
            self.call()

        def peakmem_call(self, shape, dtype, layout):
            self.call()

        def track_x_floor(self, shape, dtype, layout):
            return median_time(self.call) / median_time(self.floor)

        track_x_floor.unit = "x memory floor"

    Benchmark.__name__ = Benchmark.__qualname__ = name
    Benchmark.__module__ = module                 # the file whose table defined it
    return Benchmark
