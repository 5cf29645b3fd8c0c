"""OpenMP is built in, thread control works, and results do not depend on the thread count."""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastxent as fx


def test_openmp_enabled():
    # A build that silently loses OpenMP is a bug (scikit-learn #29665). Opt out only for a
    # deliberate serial build.
    if os.environ.get("FASTXENT_ALLOW_NO_OPENMP") == "1":
        pytest.skip("serial build requested")
    assert fx.openmp_enabled()


def test_set_and_get_num_threads():
    fx.set_num_threads(3)
    assert fx.get_num_threads() == 3
    fx.set_num_threads(None)
    assert fx.get_num_threads() >= 1


def test_threadpoolctl_limits_apply():
    fx.set_num_threads(None)
    with threadpool_limits(1, user_api="openmp"):
        assert fx.get_num_threads() == 1


rng = np.random.default_rng(0)
BIG = rng.standard_normal((4099, 37)).astype(np.float32)       # above the serial threshold
LABELS = rng.integers(0, 37, 4099)
# rows enough that the target range and the sum of the row losses run on the threads too
MANY_ROWS = rng.standard_normal((40_000, 3)).astype(np.float32) * 10
CALLS = {
    "cross_entropy": lambda: fx.cross_entropy(BIG, LABELS, weight=np.linspace(0.5, 2, 37),
                                              label_smoothing=0.1, return_grad=True),
    "cross_entropy_probs": lambda: fx.cross_entropy(BIG, fx.softmax(BIG[::-1]),
                                                    return_grad=True),
    "cross_entropy_small_c": lambda: fx.cross_entropy(BIG[:, :10], LABELS % 10,
                                                      label_smoothing=0.2, return_grad=True),
    "cross_entropy_packed": lambda: fx.cross_entropy(np.ascontiguousarray(BIG[:, :10]),
                                                     LABELS % 10, return_grad=True),
    "cross_entropy_fortran": lambda: fx.cross_entropy(np.asfortranarray(BIG), LABELS,
                                                      return_grad=True),
    "cross_entropy_nd": lambda: fx.cross_entropy(BIG.reshape(4099, 37, 1).repeat(3, 2),
                                                 np.ones((4099, 3), np.int64),
                                                 return_grad=True),
    "cross_entropy_many_rows": lambda: fx.cross_entropy(MANY_ROWS, np.arange(40_000) % 3,
                                                        return_grad=True),
    "nll_loss": lambda: fx.nll_loss(BIG, np.arange(4099) % 37, return_grad=True),
    "bce_logits": lambda: fx.binary_cross_entropy_with_logits(
        BIG, (BIG > 0).astype(np.float32), pos_weight=np.full(37, 2.0), return_grad=True),
    "bce": lambda: fx.binary_cross_entropy(fx.softmax(BIG), (BIG > 0).astype(np.float32),
                                           return_grad=True),
    "kl_div": lambda: fx.kl_div(fx.log_softmax(BIG), fx.softmax(BIG[::-1]),
                                reduction="batchmean", return_grad=True),
    "softmax": lambda: (fx.softmax(BIG), fx.log_softmax(BIG), fx.logsumexp(BIG)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_bit_identical_for_one_and_two_threads(name):
    fx.set_num_threads(1)
    one = CALLS[name]()
    fx.set_num_threads(2)
    two = CALLS[name]()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_concurrent_python_threads_match_serial_calls():
    # The kernels release the GIL; 8 Python threads, each starting OpenMP teams, must not
    # disturb one another (no shared scratch, no global state written during a call).
    from concurrent.futures import ThreadPoolExecutor
    fx.set_num_threads(2)
    try:
        serial = {name: call() for name, call in CALLS.items()}
        names = sorted(CALLS) * 4
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda name: (name, CALLS[name]()), names))
    finally:
        fx.set_num_threads(None)
    for name, result in results:
        for a, b in zip(serial[name], result):
            np.testing.assert_array_equal(a, b, err_msg=name)


# Run in a child interpreter: libgomp ends the process that asks for more threads than it
# can start (an abort at 40 000 threads on this project's 2-core machine, SIGSEGV at 65 535).
TOO_MANY_THREADS = """
import os
import numpy as np
import fastxent as fx
from fastxent import _threads
x = np.random.default_rng(0).standard_normal((4000, 300)).astype(np.float32)
t = np.arange(4000) % 300
fx.set_num_threads(1)
expected = fx.cross_entropy(x, t, return_grad=True)
cap = 16 * len(os.sched_getaffinity(0))
for name, ask in [("OMP_NUM_THREADS", lambda: fx.set_num_threads(None)),
                  ("set_num_threads", lambda: fx.set_num_threads(10**6)),
                  ("limited", lambda: _threads.limited(10**6).__enter__())]:
    ask()
    got = fx.cross_entropy(x, t, return_grad=True)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1]), name
    assert fx.get_num_threads() == cap, (name, fx.get_num_threads(), cap)
print("ok")
"""


def test_a_huge_thread_count_is_lowered_not_fatal():
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS="100000")
    run = subprocess.run([sys.executable, "-c", TOO_MANY_THREADS], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == "ok\n", (run.returncode, run.stderr[-2000:])


# OMP_THREAD_LIMIT caps every OpenMP region whatever it asks for; the count fastxent reports
# must be the count its kernels get.
THREAD_LIMITED = """
import os
import fastxent as fx
from fastxent import _threads
limit = int(os.environ["OMP_THREAD_LIMIT"])
seen = [fx.get_num_threads()]
fx.set_num_threads(8)
seen.append(fx.get_num_threads())
fx.set_num_threads(None)
with _threads.limited(8):
    seen.append(fx.get_num_threads())
with _threads.limited(1):
    seen.append(fx.get_num_threads())
assert seen == [limit, limit, limit, 1], seen
print("ok")
"""


@pytest.mark.parametrize("limit", ["1", "3"])
def test_the_reported_count_honours_omp_thread_limit(limit):
    import subprocess
    import sys
    env = dict(os.environ, OMP_THREAD_LIMIT=limit, OMP_NUM_THREADS="16")
    run = subprocess.run([sys.executable, "-c", THREAD_LIMITED], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == "ok\n", (run.returncode, run.stderr[-2000:])


# In a child interpreter, which forks its own children (forking pytest's process, with its
# threads, is unsafe in itself). A hung child fails the pool's get(), whose exit kills it.
FORKED_CHILDREN = """
import multiprocessing as mp
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastxent as fx
from test_threads import CALLS


def child(name):
    return fx.get_num_threads(), CALLS[name]()


fx.set_num_threads(2)
fork = mp.get_context("fork")
with fork.Pool(1) as pool:             # forked before any team started: keeps its threads
    [(before, _)] = pool.map_async(child, ["softmax"]).get(timeout=30)
expected = {name: call() for name, call in CALLS.items()}      # the parent's teams
with fork.Pool(2) as pool:
    after = pool.map_async(child, sorted(CALLS)).get(timeout=30)
assert before == 2, before
for name, (threads, result) in zip(sorted(CALLS), after):
    assert threads == 1, (name, threads)
    for a, b in zip(expected[name], result):
        assert np.array_equal(a, b, equal_nan=True), name
print("ok")
"""


def test_a_process_forked_after_teams_runs_serially_not_forever():
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-c", FORKED_CHILDREN, os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout == "ok\n", (run.returncode, run.stderr[-2000:])


def test_thread_counts_up_to_the_cap_are_kept():
    cap = 16 * len(os.sched_getaffinity(0))
    for n in (1, 3, cap):
        fx.set_num_threads(n)
        assert fx.get_num_threads() == n
    fx.set_num_threads(cap + 1)
    assert fx.get_num_threads() == cap


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [10, 100, 300])
@pytest.mark.parametrize("kw", ["plain", "label_smoothing", "tiny_weight"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_a_row_does_not_depend_on_its_neighbours(C, dtype, kw, order):
    """Kernels take rows in groups (and short float rows four or two at a time): each row's
    loss and gradient are bit for bit those of the row alone, whatever rows share its group --
    a NaN row, ignored rows that break a group of four, or a row whose gradient scale is too
    small for the float lanes' split (a class weight of 1e-35; the block kernels multiply that
    row in double and the others not)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((37, C)) * 4).astype(dtype, order=order)
    t = rng.integers(0, C, 37)
    t[[3, 4, 20]] = -100
    x[7, 2] = np.nan
    kw = {"plain": {}, "label_smoothing": {"label_smoothing": 0.1},
          "tiny_weight": {"weight": np.where(np.arange(C) == t[9], 1e-35, 1.0)}}[kw]
    loss, grad = fx.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
    # the loss alone takes its rows in groups of its own (twice as many per block call)
    np.testing.assert_array_equal(fx.cross_entropy(x, t, reduction="none", **kw), loss)
    for i in range(37):
        li, gi = fx.cross_entropy(x[i:i + 1], t[i:i + 1], reduction="none", return_grad=True,
                                  **kw)
        np.testing.assert_array_equal(li[0], loss[i])
        np.testing.assert_array_equal(gi[0], grad[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [10, 100, 300])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_a_transformed_row_does_not_depend_on_its_neighbours(name, C, dtype):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((37, C)) * 4).astype(dtype)
    x[5] = -np.inf
    x[6, 1] = np.nan
    f = getattr(fx, name)
    whole = f(x, axis=1)
    for i in range(37):
        np.testing.assert_array_equal(f(x[i:i + 1], axis=1)[0], whole[i])
