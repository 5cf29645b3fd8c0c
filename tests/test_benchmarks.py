"""The asv suite imports and every benchmark runs once on its smallest parameters, so it
cannot rot between the sessions that run asv (CI does not)."""
import importlib
import inspect
import pathlib
import sys

import pytest

BENCH_DIR = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = ["bench_cross_entropy", "bench_softmax", "bench_binary", "bench_kldiv",
           "bench_peers", "bench_sklearn", "bench_dask"]


def _classes():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        for name in MODULES:
            module = importlib.import_module(f"benchmarks.{name}")
            for cls_name, cls in inspect.getmembers(module, inspect.isclass):
                if hasattr(cls, "params") and cls.__module__ == module.__name__:
                    yield pytest.param(cls, id=f"{name}.{cls_name}")
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.mark.parametrize("cls", list(_classes()))
def test_benchmark_runs(cls):
    from benchmarks.common import SkipNotImplemented
    args = [values[0] for values in cls.params]
    bench = cls()
    try:
        bench.setup(*args)
    except SkipNotImplemented:
        return                          # an optional peer that is not installed
    methods = [m for m in dir(bench) if m.startswith(("time_", "peakmem_", "track_"))]
    assert methods
    for method in methods:
        result = getattr(bench, method)(*args)
        if method.startswith("track_"):
            assert result > 0
