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
