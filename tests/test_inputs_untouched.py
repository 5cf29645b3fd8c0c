"""No function modifies its inputs; read-only and memory-mapped inputs work."""
import numpy as np
import pytest

import fastxent as fx

rng = np.random.default_rng(0)
X = rng.standard_normal((8, 5))
P = rng.uniform(0.05, 0.95, (8, 5))
T = rng.integers(0, 5, 8)
Q = fx.softmax(rng.standard_normal((8, 5)))
W = rng.uniform(0.5, 2, 5)
go = np.float64(1.5)

CALLS = {
    "cross_entropy": (fx.cross_entropy, (X, T), {"weight": W, "label_smoothing": 0.1}),
    "cross_entropy_probs": (fx.cross_entropy, (X, Q), {"weight": W}),
    "nll_loss": (fx.nll_loss, (X, T), {"weight": W}),
    "bce": (fx.binary_cross_entropy, (P, Q), {"weight": W}),
    "bce_logits": (fx.binary_cross_entropy_with_logits, (X, Q),
                   {"weight": W, "pos_weight": W}),
    "kl_div": (fx.kl_div, (X, Q), {}),
}


def _frozen(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("return_grad", [False, True])
def test_inputs_untouched_and_read_only_ok(name, return_grad):
    fn, args, kw = CALLS[name]
    before = [np.copy(a) for a in (*args, *kw.values())]
    frozen_args = [_frozen(a) for a in args]
    frozen_kw = {k: _frozen(v) for k, v in kw.items()}
    extra = {"return_grad": True, "grad_output": go} if return_grad else {}
    ref = fn(*args, **kw, **extra)
    got = fn(*frozen_args, **frozen_kw, **extra)
    ref, got = (ref, got) if return_grad else ((ref,), (got,))
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)
    for a, b in zip((*args, *kw.values()), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_transforms_untouched(name):
    x = _frozen(X)
    getattr(fx, name)(x)
    np.testing.assert_array_equal(x, X)


def test_memory_mapped_input(tmp_path):
    path = tmp_path / "logits.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(fx.cross_entropy(mm, T, return_grad=True)[1],
                                  fx.cross_entropy(X, T, return_grad=True)[1])


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_device_inputs_untouched(gpu, name, reduction, layout):
    """The CuPy backend on the stand-in: device inputs in either memory order, read-only,
    come back with their values."""
    fn, args, kw = CALLS[name]
    order = np.asfortranarray if layout == "F" else np.ascontiguousarray
    arrays = {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}
    originals = (*args, *arrays.values())
    host = [_frozen(order(a.astype(np.float32) if a.dtype.kind == "f" else a))
            for a in originals]
    dev = [gpu.dev(a) for a in host]
    fn(*dev[:len(args)], **{**kw, **dict(zip(arrays, dev[len(args):]))},
       reduction=reduction, return_grad=True)
    for a, original in zip(host, originals):
        np.testing.assert_array_equal(a, original.astype(a.dtype))
    for transform in (fx.logsumexp, fx.softmax, fx.log_softmax):
        transform(dev[0], axis=0)
    np.testing.assert_array_equal(host[0], args[0].astype(np.float32))
