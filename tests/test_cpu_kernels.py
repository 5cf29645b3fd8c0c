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

import background

HERE = pathlib.Path(__file__).resolve().parent

# The Debug run tests the one build it loads (its C kernels have no bounds checks that
# another instruction set would add to); the main run covers the others.
pytestmark = pytest.mark.main_run_only
# A child interpreter imports the fastxent this one did (-S keeps an editable install's
# import hook out when this run was started with -S).
PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]

# Files whose tests hold every kernel to the oracle: both index and probability targets,
# the transforms, the binary losses, kl_div, layouts, non-finite inputs, float32 accuracy;
# and each row's result independent of the rows that share its block and thread.
PARITY = ["test_cross_entropy.py", "test_nll_loss.py", "test_softmax.py", "test_binary.py",
          "test_kl_div.py", "test_float32_accuracy.py", "test_nonfinite_table.py",
          "test_edge_cases.py", "test_grad_out.py", "test_gradcheck.py",
          "test_large_views.py", "test_properties.py", "test_threads.py",
          "test_oracle_fuzz.py", "test_layout_bits.py"]


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


# Every kernel family on float32 and float64, row and block kernels, C and Fortran order, a
# -inf row; the outputs' bytes hashed. C = 70 and 77 end their rows in scalar tails of 6 and
# 5 classes, whose sums of products the AVX-512 build once vectorised and the AVX2 build
# fused (fx_simd.h: FX_FMADD).
HASH_OUTPUTS = """
import hashlib, numpy as np, fastxent as fx
rng, h = np.random.default_rng(5), hashlib.sha256()
for dt in (np.float32, np.float64):
    for n, c in ((40, 3), (40, 10), (33, 64), (40, 70), (40, 77), (20, 100), (9, 300),
                 (3, 2000)):
        x = (rng.standard_normal((n, c)) * 6).astype(dt)
        x[2] = -np.inf
        t = rng.integers(0, c, n)
        q = rng.random((n, c)).astype(dt)
        q /= q.sum(1, keepdims=True)
        y = rng.random((n, c)).astype(dt)
        for xx in (x, np.asfortranarray(x)):
            outs = [*fx.cross_entropy(xx, t, reduction="none", return_grad=True),
                    *fx.cross_entropy(xx, t, label_smoothing=0.2, weight=rng.random(c) + 0.5,
                                      return_grad=True),
                    *fx.cross_entropy(xx, q, return_grad=True),
                    *fx.cross_entropy(xx, y, label_smoothing=0.1, weight=rng.random(c) + 0.5,
                                      reduction="none", return_grad=True),
                    fx.softmax(xx, axis=1), fx.log_softmax(xx, axis=1), fx.logsumexp(xx, axis=1),
                    *fx.binary_cross_entropy_with_logits(xx, y, pos_weight=rng.random(c) + 0.5,
                                                          reduction="none", return_grad=True),
                    *fx.binary_cross_entropy(y, q, reduction="none", return_grad=True),
                    *fx.kl_div(xx / 10, y, reduction="none", return_grad=True)]
            for o in outs:
                h.update(np.ascontiguousarray(o).tobytes())
print(fx.cpu_kernels(), h.hexdigest())
"""


def test_avx2_and_avx512_builds_agree_bit_for_bit():
    """Both have FMA and run the same operations in the same lanes, so every output is the
    same to the bit (the baseline one, without FMA, rounds differently)."""
    if not {"avx512", "avx2"} <= {fx.cpu_kernels(), *_runnable_below()}:
        pytest.skip("needs the AVX-512 and AVX2 builds and a CPU that runs both")
    hashes = [_run(HASH_OUTPUTS, cap).stdout.split() for cap in ("avx512", "avx2")]
    assert [h[0] for h in hashes] == ["avx512", "avx2"]
    assert hashes[0][1] == hashes[1][1]


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory):
    """The parity files under each narrower build, both runs started at once
    (tests/background.py): in turn they took 75 s of the suite on two cores, 63 s at once."""
    runs = {}
    for cap in _runnable_below():
        log_path = tmp_path_factory.mktemp(f"parity_{cap}") / "log"
        # Passive OpenMP waits: two runs spinning for each other's cores took longer than
        # the runs in turn. The kernels' results do not depend on how threads wait.
        env = dict(os.environ, FASTXENT_CPU_KERNELS=cap, OMP_WAIT_POLICY="passive")
        proc = background.start([*PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                 *[str(HERE / f) for f in PARITY]], log_path,
                                cwd=HERE.parent, env=env)
        runs[cap] = proc, log_path
    yield runs
    background.stop(proc for proc, _ in runs.values())


@pytest.mark.parametrize("cap", ["avx2", "baseline"])
def test_parity_suite_passes_on_the_narrower_builds(parity_runs, cap):
    if cap not in parity_runs:
        pytest.skip(f"{cap} is not a narrower build here")
    code, log = background.result(*parity_runs[cap], timeout=900)
    assert code == 0, log[-6000:]
