"""100 000 calls of every function, error paths included, keep resident memory flat.

A leaked reference to an output of these sizes (~1 kB) would add ~100 MB over the loop; the
bound is 20 MB, generous against allocator noise and far below a leak.
"""
import subprocess
import sys

import numpy as np
import psutil
import pytest

import fastxent as fx


rng = np.random.default_rng(0)
X = rng.standard_normal((16, 10))
T = rng.integers(0, 10, 16)
P = fx.softmax(X)
W = np.linspace(0.5, 2, 10)
G = np.empty_like(X)

CALLS = {
    "cross_entropy": lambda: fx.cross_entropy(X, T, weight=W, label_smoothing=0.1,
                                              return_grad=True),
    "cross_entropy_probs": lambda: fx.cross_entropy(X, P, reduction="none", return_grad=True),
    "cross_entropy_grad_out": lambda: fx.cross_entropy(X, T, return_grad=True, grad_out=G),
    "nll_loss": lambda: fx.nll_loss(X, T, reduction="sum", return_grad=True),
    "bce": lambda: fx.binary_cross_entropy(P, P, return_grad=True),
    "bce_logits": lambda: fx.binary_cross_entropy_with_logits(X, P, pos_weight=W,
                                                              return_grad=True),
    "kl_div": lambda: fx.kl_div(X, P, reduction="batchmean", return_grad=True),
    "transforms": lambda: (fx.softmax(X), fx.log_softmax(X, axis=0), fx.logsumexp(X)),
    "loss_class": lambda: fx.CrossEntropyLoss(label_smoothing=0.2).loss_and_grad(X, T),
}


def _bad_target():
    fx.cross_entropy(X, T + 10)


def _bad_reduction():
    fx.binary_cross_entropy_with_logits(X, P, reduction="avg")


def _bad_dtype():
    fx.softmax(T)


ERRORS = {"index": (_bad_target, IndexError), "reduction": (_bad_reduction, ValueError),
          "dtype": (_bad_dtype, TypeError)}


def _rss_growth(step, n=100_000):
    process = psutil.Process()
    for _ in range(2000):               # warm caches and the allocator first
        step()
    before = process.memory_info().rss
    for _ in range(n):
        step()
    return process.memory_info().rss - before


def _step(name):
    if name in CALLS:
        return CALLS[name]
    if name == "deliberate-leak":
        kept = []
        return lambda: kept.append(np.ones(128))      # 1 kB kept per call
    call, exc = ERRORS[name]

    def step():
        try:
            call()
        except exc:
            pass
    return step


def _growth_in_fresh_process(name):
    """RSS growth over the loop, measured in a new interpreter: inside the suite, pages that
    earlier tests freed stay resident and would absorb a leak without RSS growing."""
    out = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True,
                         check=True, timeout=600)
    return float(out.stdout)


@pytest.mark.parametrize("name", sorted(CALLS) + sorted(ERRORS))
def test_calls_do_not_leak(name):
    growth = _growth_in_fresh_process(name)
    assert growth < 20e6, f"{name}: RSS grew by {growth / 1e6:.1f} MB over 100 000 calls"


def test_the_measure_sees_a_leak():
    assert _growth_in_fresh_process("deliberate-leak") > 20e6


if __name__ == "__main__":
    print(_rss_growth(_step(sys.argv[1])))
