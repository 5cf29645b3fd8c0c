"""Record what a grid of public calls returns, to compare builds on other Pythons and NumPys.

PyTorch 2.13 (the oracle) is installed for one Python here, so the suite runs there only.
This script carries its verdict to the other ends of the supported range (requires-python,
the NumPy floor in pyproject.toml): record a snapshot where the suite passed, record one
with the other build, and compare. Every result's dtype, shape and bytes must be equal, and
every error's type and message (docs/testing.md, "The supported versions"). It reads the
suite's table of refused calls, so it needs pytest and ml_dtypes beside fastxent.

Usage: python .ci/version_snapshot.py record FILE
       python .ci/version_snapshot.py compare FILE_A FILE_B
"""
import pickle
import sys
from pathlib import Path

import numpy as np


def _outcome(call):
    try:
        result = call()
    except Exception as e:          # the errors are part of the behaviour compared
        return ("raised", type(e).__name__, str(e))
    parts = result if isinstance(result, tuple) else (result,)
    return ("returned", [(type(a).__name__, np.asarray(a).dtype.str, np.shape(a),
                          np.asarray(a).tobytes()) for a in parts])


def _class_calls(fx, rng):
    """Every loss and transform over dtypes, class counts, shapes, options and reductions.
    Inputs are made by the generator alone (no NumPy maths, which may round differently
    from one NumPy to the next)."""
    for dtype in (np.float16, np.float32, np.float64):
        for C in (1, 3, 17, 70, 300):
            for shape in ((C,), (5, C), (4, C, 3), (0, C)):
                x = (rng.standard_normal(shape) * 3).astype(dtype)
                t = rng.integers(0, C, shape[:1] + shape[2:] if len(shape) > 1 else ())
                if t.size:
                    t.flat[0] = -100
                p = rng.random(shape).astype(dtype)
                y = (p > 0.5).astype(dtype)
                w = rng.random(C) + 0.1
                key = (np.dtype(dtype).name, shape)
                for reduction in ("none", "mean", "sum"):
                    for smoothing in (0.0, 0.2):
                        for weight in (None, w):
                            opts = dict(reduction=reduction, label_smoothing=smoothing,
                                        weight=weight, return_grad=True)
                            k = key + (reduction, smoothing, weight is None)
                            yield ("ce",) + k, lambda: fx.cross_entropy(x, t, **opts)
                            yield ("ce probs",) + k, lambda: fx.cross_entropy(x, p, **opts)
                            yield ("ce F",) + k, lambda: fx.cross_entropy(
                                np.asfortranarray(x), t, **opts)
                    opts = dict(reduction=reduction, return_grad=True)
                    k = key + (reduction,)
                    yield ("nll",) + k, lambda: fx.nll_loss(x, t, **opts)
                    yield ("kl",) + k, lambda: fx.kl_div(x, p, **opts)
                    yield ("bce logits",) + k, lambda: fx.binary_cross_entropy_with_logits(
                        x, y, pos_weight=np.full(shape[-1], 2.0, dtype), **opts)
                    yield ("bce",) + k, lambda: fx.binary_cross_entropy(p, y, **opts)
                for axis in (0, -1):
                    for name in ("logsumexp", "softmax", "log_softmax"):
                        yield (name,) + key + (axis,), lambda: getattr(fx, name)(x, axis=axis)


def _more_calls(fx):
    """The suite's table of refused calls (tests/cases.py), then what it leaves out: refusals
    that read the data (targets out of range, probabilities above 1) or the dtype kind,
    inputs NumPy converts (lists), and a loss class."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from cases import BAD_CALLS
    for row, (name, x, t, options) in enumerate(BAD_CALLS):
        args = (x,) if t is None else (x, t)
        yield ("refused", row, name), lambda: getattr(fx, name)(*args, **options)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    t = np.zeros(4, np.int64)
    yield "target out of range", lambda: fx.cross_entropy(x, np.array([0, 1, 5, 0]))
    yield "uint64 target", lambda: fx.cross_entropy(x, np.array([0, 1, 2, 2**63], np.uint64))
    yield "bool target", lambda: fx.cross_entropy(x, t.astype(bool))
    yield "bce range", lambda: fx.binary_cross_entropy(np.array([1.5]), np.array([1.0]))
    yield "object", lambda: fx.softmax(np.array([1, None], dtype=object))
    yield "complex", lambda: fx.softmax(np.ones(3, complex))
    yield "lists", lambda: fx.cross_entropy([[1.0, 2.0]], [0])
    yield "kl log_target", lambda: fx.kl_div(x, x, log_target=True, reduction="batchmean",
                                             return_grad=True)
    yield "loss class", lambda: fx.CrossEntropyLoss(
        weight=np.ones(3), label_smoothing=0.1).loss_and_grad(x, np.array([0, 1, 2, 0]))


def record(path):
    import fastxent as fx
    snapshot, count = {}, 0
    # Each call runs as it is yielded, while the loops' variables still hold its inputs.
    for calls in (_class_calls(fx, np.random.default_rng(0)), _more_calls(fx)):
        for key, call in calls:
            snapshot[key] = _outcome(call)
            count += 1
    assert len(snapshot) == count, "two calls share a key"
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    print(f"{len(snapshot)} calls recorded (Python {sys.version.split()[0]}, "
          f"NumPy {np.__version__})")


def compare(path_a, path_b):
    with open(path_a, "rb") as f:
        a = pickle.load(f)
    with open(path_b, "rb") as f:
        b = pickle.load(f)
    differ = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=str)
    for key in differ[:20]:
        print(key, "\n  ", str(a.get(key))[:200], "\n  ", str(b.get(key))[:200])
    print(f"{len(a.keys() | b.keys())} calls, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"] and len(sys.argv) == 3:
        record(sys.argv[2])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
