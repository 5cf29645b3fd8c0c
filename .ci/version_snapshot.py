"""Record what a grid of public calls returns, to compare builds on other Pythons and NumPys.

PyTorch 2.13 (the oracle) is installed for one Python here, so the suite runs there only.
This script carries its verdict to the other ends of the supported range (requires-python,
the NumPy floor in pyproject.toml): record a snapshot where the suite passed, record one
with the other build, and compare. Every result's dtype, shape and bytes must be equal, and
every error's type and message (docs/testing.md, "The supported versions"). It reads the
suite's table of refused calls, so it needs pytest and ml_dtypes beside fastxent.

Results are recorded little-endian whatever the machine's byte order, so a big-endian
build (s390x) compares with this one. Another instruction set (aarch64 or s390x,
`.ci/cross_snapshot`) rounds differently: `--ulps N`
then admits floating results within N units in the last place of each array's largest
finite magnitude, or of 1 if that is smaller (the suite's tolerances scale alike: tests/cases.py),
where the two have the same shape, dtype, NaNs and infinities; everything else must still be
equal.

Usage: python .ci/version_snapshot.py record FILE
       python .ci/version_snapshot.py compare [--ulps N] FILE_A FILE_B
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
    return ("returned", [(type(a).__name__,) + _little_endian(np.asarray(a)) for a in parts])


def _little_endian(a):
    """dtype, shape and bytes of `a` stored little-endian, so that a big-endian machine's
    results (native '>f4') compare with a little-endian one's by value."""
    stored = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return stored.dtype.str, a.shape, stored.tobytes()


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


def _ulps_apart(part_a, part_b):
    """How many units in the last place of the two arrays' largest finite magnitude (at least
    1) two recorded results are apart; None where they differ in more than rounding (type,
    dtype, shape, where the NaNs and infinities are, or a non-floating value)."""
    (type_a, dtype, shape, bytes_a), (type_b, dtype_b, shape_b, bytes_b) = part_a, part_b
    if (type_a, dtype, shape) != (type_b, dtype_b, shape_b):
        return None
    if bytes_a == bytes_b:
        return 0.0
    if np.dtype(dtype).kind != "f":
        return None
    x = np.frombuffer(bytes_a, dtype).astype(np.float64)
    y = np.frombuffer(bytes_b, dtype).astype(np.float64)
    finite = np.isfinite(x)
    if not (np.array_equal(finite, np.isfinite(y))
            and np.array_equal(x[~finite], y[~finite], equal_nan=True)):
        return None
    if not finite.any():
        return 0.0
    largest = max(np.abs(x[finite]).max(), np.abs(y[finite]).max(), 1.0)
    ulp = np.spacing(np.array(largest, dtype)).astype(np.float64)
    return float(np.abs(x[finite] - y[finite]).max() / ulp)


def _within(outcome_a, outcome_b, ulps):
    if outcome_a == outcome_b:
        return True
    if ulps is None or outcome_a is None or outcome_b is None or "returned" not in (
            outcome_a[0], outcome_b[0]) or outcome_a[0] != outcome_b[0]:
        return False
    if len(outcome_a[1]) != len(outcome_b[1]):
        return False
    apart = [_ulps_apart(pa, pb) for pa, pb in zip(outcome_a[1], outcome_b[1])]
    return all(u is not None and u <= ulps for u in apart)


def compare(path_a, path_b, ulps=None):
    with open(path_a, "rb") as f:
        a = pickle.load(f)
    with open(path_b, "rb") as f:
        b = pickle.load(f)
    keys = a.keys() | b.keys()
    differ = sorted((k for k in keys if not _within(a.get(k), b.get(k), ulps)), key=str)
    for key in differ[:20]:
        print(key, "\n  ", str(a.get(key))[:200], "\n  ", str(b.get(key))[:200])
    rounded = sum(a.get(k) != b.get(k) for k in keys) - len(differ)
    within = f", {rounded} more within {ulps:g} ulps" if ulps is not None else ""
    print(f"{len(keys)} calls, {len(differ)} differ{within}")
    return 1 if differ else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    ulps = None
    if args[1:3] and args[0] == "compare" and args[1] == "--ulps":
        ulps = float(args[2])
        args = args[:1] + args[3:]
    if args[:1] == ["record"] and len(args) == 2:
        record(args[1])
    elif args[:1] == ["compare"] and len(args) == 3:
        sys.exit(compare(args[1], args[2], ulps))
    else:
        sys.exit(__doc__)
