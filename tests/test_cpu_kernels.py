"""The instruction-set builds of the CPU kernels: which one runs, the FASTXENT_CPU_KERNELS cap,
and the parity tests run again on each build below the widest this CPU takes (on an AVX-512
machine the AVX2 and baseline kernels otherwise never run here)."""
import os
import pathlib
import subprocess
import sys

import pytest

import fastxent as fx
from fastxent._cpu import cpu_builds

HERE = pathlib.Path(__file__).resolve().parent

# The Debug and sanitizer runs test the one build they load (their C kernels have no bounds
# checks that another instruction set would add to); the main run covers the others.
pytestmark = pytest.mark.skipif(os.environ.get("FASTXENT_DEBUG_RUN") == "1",
                                reason="a Debug or sanitizer run")
# A child interpreter imports the fastxent this one did (-S keeps an editable install's
# import hook out when this run was started with -S).
PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]

# Files whose tests hold every kernel to the oracle: both index and probability targets,
# the transforms, the binary losses, kl_div, layouts, non-finite inputs, float32 accuracy.
PARITY = ["test_cross_entropy.py", "test_nll_loss.py", "test_softmax.py", "test_binary.py",
          "test_kl_div.py", "test_float32_accuracy.py", "test_nonfinite_table.py",
          "test_edge_cases.py", "test_grad_out.py", "test_gradcheck.py",
          "test_large_views.py", "test_properties.py"]


def _runnable_below():
    """The builds narrower than the one running: this CPU runs them all."""
    builds = cpu_builds()
    return list(builds[builds.index(fx.cpu_kernels()) + 1:])


def _run(code, cap):
    env = dict(os.environ, FASTXENT_CPU_KERNELS=cap)
    return subprocess.run([*PYTHON, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_running_build_is_one_of_the_builds():
    assert fx.cpu_kernels() in cpu_builds()
    assert set(cpu_builds()) <= {"avx512", "avx2", "baseline"}


@pytest.mark.parametrize("cap", ["avx2", "baseline"])
def test_the_cap_picks_a_narrower_build(cap):
    if cap not in _runnable_below():
        pytest.skip(f"{cap} is not a narrower build here (builds {cpu_builds()}, running "
                    f"{fx.cpu_kernels()})")
    run = _run("import fastxent as fx; print(fx.cpu_kernels())", cap)
    assert run.returncode == 0 and run.stdout.strip() == cap, run.stderr


def test_an_unknown_cap_warns_and_changes_nothing():
    run = _run("import fastxent as fx; print(fx.cpu_kernels())", "sse4")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == fx.cpu_kernels()
    assert "RuntimeWarning" in run.stderr and "FASTXENT_CPU_KERNELS='sse4'" in run.stderr


@pytest.mark.parametrize("cap", ["avx2", "baseline"])
def test_parity_suite_passes_on_the_narrower_builds(cap):
    if cap not in _runnable_below():
        pytest.skip(f"{cap} is not a narrower build here")
    env = dict(os.environ, FASTXENT_CPU_KERNELS=cap)
    run = subprocess.run([*PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          *[str(HERE / f) for f in PARITY]],
                         capture_output=True, text=True, env=env, timeout=900, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
