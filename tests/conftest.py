"""Shared fixtures. PyTorch (2.13, CPU) is the oracle and a hard requirement of the suite:
a run without it must fail, not skip (README: install torch first)."""
import os

import numpy as np
import pytest
import torch  # noqa: F401  -- fail loudly when the oracle is missing

import fastxent as fx


def pytest_collection_modifyitems(config, items):
    """The Debug run (test_debug_build.py) is there to test the build it loads; a test
    marked main_run_only would repeat there what the main run checked."""
    if os.environ.get("FASTXENT_DEBUG_RUN") != "1":
        return
    skip = pytest.mark.skip(reason="main_run_only: checked by the main run")
    for item in items:
        if item.get_closest_marker("main_run_only"):
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _default_threads():
    yield
    fx.set_num_threads(None)


@pytest.fixture(scope="session")
def cuda_host(tmp_path_factory):
    """The CUDA sources' host+device bodies built by g++ (cuda_host_lib), once per run: two
    modules test them."""
    import cuda_host_lib
    return cuda_host_lib.build(tmp_path_factory.mktemp("fxhost"))


@pytest.fixture
def gpu(cuda_host, monkeypatch):
    """fastxent._gpu on the CuPy stand-in (cupy_stand_in): ``cp``, the kernels launched,
    and ``dev`` to view a host array as a device one."""
    import types

    import cupy_stand_in
    from fastxent import _gpu
    cp, kernels = cupy_stand_in.install(monkeypatch, cuda_host, _gpu)
    _gpu._n_sm.cache_clear()
    _gpu._pending.clear()
    yield types.SimpleNamespace(cp=cp, kernels=kernels, dev=cupy_stand_in.on_device)
    _gpu._pending.clear()
    _gpu._n_sm.cache_clear()


@pytest.fixture(scope="session")
def gpu_sweep():
    """benchmarks/gpu_sweep.py as a module. It imports gpu_check as its folder's neighbour
    (run as a script, that folder is on sys.path), so the folder is on it for the import."""
    import importlib
    import pathlib
    import sys
    folder = str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("gpu_sweep")
    finally:
        sys.path.remove(folder)
