"""Shared fixtures. PyTorch (2.13, CPU) is the oracle and a hard requirement of the suite:
a run without it must fail, not skip (README: install torch first)."""
import os
import sys

import numpy as np
import pytest
import torch  # noqa: F401  -- fail loudly when the oracle is missing

import fastxent as fx


DEBUG_RUN = os.environ.get("FASTXENT_DEBUG_RUN") == "1"


@pytest.hookimpl(trylast=True)      # after -k and -m have deselected
def pytest_collection_modifyitems(config, items):
    """In the Debug run (test_debug_build.py), tests marked main_run_only skip: that run is
    there to test the build it loads, and they would repeat what the main run checked.

    In the main run, the Debug run starts now, in the background, when its test is
    selected: it takes minutes, mostly on one core, and overlaps the rest of the suite.
    Its test is moved last, to wait for it."""
    if DEBUG_RUN:
        skip = pytest.mark.skip(reason="main_run_only: checked by the main run")
        for item in items:
            if item.get_closest_marker("main_run_only"):
                item.add_marker(skip)
        return
    debug = [item for item in items if item.path.name == "test_debug_build.py"]
    if debug and not config.option.collectonly:
        items[:] = [item for item in items if item not in debug] + debug
        import test_debug_build
        config.stash[test_debug_build.RUNNING] = test_debug_build.start()


def pytest_sessionfinish(session):
    """A Debug run whose test did not wait for it (-x, a keyboard interrupt) is ended."""
    module = sys.modules.get("test_debug_build")
    if module is not None:
        module.stop(session.config)


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
