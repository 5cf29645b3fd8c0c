"""The torch.nn-style classes hold options and call the functional API."""
import pickle

import numpy as np
import pytest

import fastxent as fx

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4))
T = rng.integers(0, 4, 6)
Y = rng.random((6, 4))

CASES = [
    (fx.CrossEntropyLoss, fx.cross_entropy, (X, T),
     {"weight": np.arange(1.0, 5.0), "ignore_index": 2, "label_smoothing": 0.1}),
    (fx.NLLLoss, fx.nll_loss, (X, T), {"weight": np.arange(1.0, 5.0), "reduction": "sum"}),
    (fx.BCELoss, fx.binary_cross_entropy, (fx.softmax(X), Y), {"reduction": "none"}),
    (fx.BCEWithLogitsLoss, fx.binary_cross_entropy_with_logits, (X, Y),
     {"pos_weight": np.full(4, 2.0)}),
    (fx.KLDivLoss, fx.kl_div, (fx.log_softmax(X), Y), {"reduction": "batchmean"}),
]


@pytest.mark.parametrize("cls,fn,args,kw", CASES)
def test_class_matches_function(cls, fn, args, kw):
    loss_fn = cls(**kw)
    np.testing.assert_array_equal(loss_fn(*args), fn(*args, **kw))
    got = loss_fn.loss_and_grad(*args, grad_output=None)
    ref = fn(*args, return_grad=True, **kw)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    buf = np.empty_like(args[0])
    assert loss_fn.loss_and_grad(*args, grad_out=buf)[1] is buf
    for key, value in kw.items():
        assert getattr(loss_fn, key) is value
    assert repr(loss_fn).startswith(cls.__name__ + "(")
    clone = pickle.loads(pickle.dumps(loss_fn))
    np.testing.assert_array_equal(clone(*args), loss_fn(*args))


@pytest.mark.parametrize("cls, positional", [
    (fx.CrossEntropyLoss, (None, -1)),          # torch: size_average=-1, not ignore_index
    (fx.NLLLoss, (None, 3)),
    (fx.BCELoss, (None, "sum")),                # torch: size_average="sum"
    (fx.BCEWithLogitsLoss, (None, "sum")),
    (fx.KLDivLoss, ("batchmean",)),             # torch: size_average="batchmean"
])
def test_options_after_weight_are_keywords(cls, positional):
    """PyTorch's classes take the deprecated size_average (and reduce) in the positions
    that follow weight, so a call ported with positional options would silently mean
    something else here: it is a TypeError."""
    with pytest.raises(TypeError, match="positional"):
        cls(*positional)
    if cls is not fx.KLDivLoss:
        assert cls(np.ones(4)).weight is not None       # weight stays positional, as there
