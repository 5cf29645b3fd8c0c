"""Every error path: the exception type and a message naming the argument."""
import numpy as np
import pytest

import fastxent as fx

X = np.zeros((4, 3))
T = np.array([0, 1, 2, 0])


class _Unreadable:
    """An array-like whose conversion fails with neither TypeError nor ValueError, as a torch
    tensor that requires grad does (RuntimeError)."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("cannot be read")


@pytest.mark.parametrize("call,exc,match", [
    # input
    (lambda: fx.cross_entropy(np.zeros((4, 3), np.int64), T), TypeError,
     r"input must be a floating-point array .* got dtype int64"),
    (lambda: fx.cross_entropy(np.zeros((4, 3), complex), T), TypeError, "input must be"),
    (lambda: fx.cross_entropy(np.array(1.0), np.array(0)), ValueError,
     "input must have at least one dimension"),
    (lambda: fx.cross_entropy(np.zeros((4, 0)), T), ValueError,
     "input must have at least one class"),
    (lambda: fx.cross_entropy(np.zeros((0, 0)), np.zeros(0, int)), ValueError,
     r"input must have at least one class along axis 1; got shape \(0, 0\)"),
    (lambda: fx.cross_entropy(np.zeros((3, 0)), np.zeros((3, 0))), ValueError,
     "input must have at least one class"),
    (lambda: fx.nll_loss(np.zeros((3, 0)), np.full(3, -100)), ValueError,
     "input must have at least one class"),
    (lambda: fx.cross_entropy("abc", T), TypeError, "input must be a floating-point array"),
    (lambda: fx.cross_entropy([[1.0], [1.0, 2.0]], T), TypeError,
     "input must be an array or array-like"),
    (lambda: fx.cross_entropy(_Unreadable(), T), TypeError,
     r"input must be an array or array-like; got _Unreadable \(cannot be read\)"),
    (lambda: fx.cross_entropy(X, _Unreadable()), TypeError,
     "target must be an array or array-like; got _Unreadable"),
    (lambda: fx.cross_entropy(X, T, weight=_Unreadable()), TypeError,
     "weight must be an array or array-like; got _Unreadable"),
    (lambda: fx.binary_cross_entropy_with_logits(X, X, pos_weight=_Unreadable()), TypeError,
     "pos_weight must be an array or array-like; got _Unreadable"),
    (lambda: fx.kl_div(X, X, reduction="none", return_grad=True, grad_output=_Unreadable()),
     TypeError, "grad_output must be an array or array-like; got _Unreadable"),
    # target
    (lambda: fx.cross_entropy(X, np.array([0, 1, 2])), ValueError,
     r"target must have shape \(4,\) .* got \(3,\)"),
    (lambda: fx.cross_entropy(X, T.reshape(4, 1)), ValueError, "target must have shape"),
    (lambda: fx.cross_entropy(X, np.zeros((4, 3), np.int64)), TypeError,
     "holds class probabilities and must be floating-point"),
    (lambda: fx.cross_entropy(X, T.astype(float)), TypeError,
     r"target of shape \(4,\) holds class indices and must be an integer array; got dtype "
     r"float64 \(probability targets have the input's shape \(4, 3\)\)"),
    (lambda: fx.cross_entropy(X[0], np.array([1.0])), TypeError,
     r"target of shape \(1,\) holds class indices"),
    (lambda: fx.cross_entropy(X, np.zeros((2, 4))), ValueError,
     r"target must have shape \(4,\) \(class indices\) or \(4, 3\)"),
    (lambda: fx.cross_entropy(X, T.astype(bool)), TypeError, "target must be an integer"),
    (lambda: fx.cross_entropy(X, np.array([0, 1, 3, 0])), IndexError,
     r"target must hold class indices in \[0, 3\) or ignore_index=-100; got 3"),
    (lambda: fx.cross_entropy(X, np.array([0, -1, 2, 0])), IndexError, "got -1"),
    (lambda: fx.cross_entropy(X, np.array([0, -100, 2, 0]), ignore_index=-1), IndexError,
     "got -100"),
    # the transforms' axis: an integer, a tuple of integers or None
    (lambda: fx.logsumexp(X, axis=(1, -1)), ValueError,
     r"axis must name each axis once; got \(1, -1\)"),
    (lambda: fx.softmax(X, axis=(0, 2)), ValueError,
     r"axis must be in \[-2, 2\) for a 2-d input; got 2"),
    (lambda: fx.log_softmax(X, axis=[0, 1]), TypeError,
     r"axis must be an integer, a tuple of integers or None; got list"),
    (lambda: fx.logsumexp(X, axis=(0, True)), TypeError,
     r"axis must be an integer, a tuple of integers or None; got \(0, True\)"),
    (lambda: fx.softmax(X.astype(int), axis=(0, 1)), TypeError,
     "x must be a floating-point array"),
    (lambda: fx.softmax(np.float64(1.0), axis=(0,)), ValueError,
     r"axis must be in \[0, 0\) for a 0-d input; got 0"),
    (lambda: fx.cross_entropy(X, T, axis=(1,)), TypeError,
     "axis must be an integer; got tuple"),
    (lambda: fx.nll_loss(X, np.zeros(4)), TypeError, "target must be an integer array"),
    (lambda: fx.cross_entropy(X, np.full((4, 3), 1 / 3), ignore_index=0), ValueError,
     "ignore_index must be left at -100 with probability targets"),
    # options
    (lambda: fx.cross_entropy(X, T, weight=np.ones(2)), ValueError,
     r"weight must have shape \(3,\), one value per class; got shape \(2,\)"),
    (lambda: fx.cross_entropy(X, T, weight=np.ones((1, 3))), ValueError, "weight must have"),
    (lambda: fx.cross_entropy(X, T, weight=np.ones(3, bool)), TypeError,
     "weight must be an array of real numbers"),
    (lambda: fx.cross_entropy(X, T, reduction="batchmean"), ValueError,
     "reduction must be one of 'none', 'mean', 'sum'; got 'batchmean'"),
    (lambda: fx.cross_entropy(X, T, reduction=None), TypeError, "reduction must be one of"),
    (lambda: fx.cross_entropy(X, T, label_smoothing=1.1), ValueError,
     r"label_smoothing must be in \[0, 1\]; got 1.1"),
    (lambda: fx.cross_entropy(X, T, label_smoothing=-0.1), ValueError,
     "label_smoothing must be in"),
    (lambda: fx.cross_entropy(X, T, label_smoothing=float("nan")), ValueError,
     "label_smoothing must be in"),
    (lambda: fx.cross_entropy(X, T, label_smoothing="0.1"), TypeError,
     "label_smoothing must be a real number"),
    (lambda: fx.cross_entropy(X, T, ignore_index=1.5), TypeError,
     "ignore_index must be an integer"),
    (lambda: fx.cross_entropy(X, T, ignore_index=True), TypeError,
     "ignore_index must be an integer"),
    (lambda: fx.cross_entropy(X, T, axis=2), ValueError, r"axis must be in \[-2, 2\)"),
    (lambda: fx.cross_entropy(X, T, axis=1.0), TypeError, "axis must be an integer"),
    (lambda: fx.cross_entropy(X, T, return_grad=1), TypeError,
     "return_grad must be True or False"),
    (lambda: fx.cross_entropy(X, T, grad_output=2.0), ValueError,
     "grad_output is only used with return_grad=True"),
    (lambda: fx.cross_entropy(X, T, return_grad=True, grad_output=np.ones(4)), ValueError,
     r"grad_output must be a scalar for reduction='mean'; got shape \(4,\)"),
    (lambda: fx.cross_entropy(X, T, reduction="none", return_grad=True,
                              grad_output=np.ones(3)), ValueError,
     r"grad_output must broadcast to the loss's shape \(4,\)"),
    (lambda: fx.cross_entropy(X, T, return_grad=True, grad_output="1"), TypeError,
     "grad_output must be an array of real numbers"),
    # binary
    (lambda: fx.binary_cross_entropy(np.array([0.5, 1.5]), np.array([1.0, 0.0])), ValueError,
     r"input must hold values in \[0, 1\]"),
    (lambda: fx.binary_cross_entropy(np.array([0.5, np.nan]), np.array([1.0, 0.0])),
     ValueError, "input must hold values in"),
    (lambda: fx.binary_cross_entropy(np.array([0.5, 0.5]), np.array([1.0, 2.0])), ValueError,
     "target must hold values in"),
    (lambda: fx.binary_cross_entropy_with_logits(X, np.zeros((4, 2))), ValueError,
     r"target must have the input's shape \(4, 3\); got \(4, 2\)"),
    (lambda: fx.binary_cross_entropy_with_logits(X, np.zeros((4, 3)), weight=np.ones(2)),
     ValueError, r"weight must broadcast to the input's shape \(4, 3\); got shape \(2,\)"),
    (lambda: fx.binary_cross_entropy_with_logits(X, np.zeros((4, 3)),
                                                 pos_weight=np.ones(4)), ValueError,
     "pos_weight must broadcast"),
    (lambda: fx.binary_cross_entropy_with_logits(X, np.zeros((4, 3)),
                                                 weight=np.ones((2, 4, 3))), ValueError,
     "weight must broadcast"),
    (lambda: fx.binary_cross_entropy_with_logits(X, np.zeros((4, 3), complex)), TypeError,
     "target must be an array of real numbers"),
    # kl_div
    (lambda: fx.kl_div(X, np.zeros(2)), ValueError, "target must broadcast"),
    (lambda: fx.kl_div(X, np.zeros(3), reduction="avg"), ValueError,
     "reduction must be one of 'none', 'batchmean', 'mean', 'sum'; got 'avg'"),
    (lambda: fx.kl_div(X, np.zeros(3), log_target="yes"), TypeError,
     "log_target must be True or False"),
    # transforms and threads
    (lambda: fx.softmax(np.zeros(3, np.int32)), TypeError, "x must be a floating-point"),
    (lambda: fx.log_softmax(X, axis=-3), ValueError, "axis must be in"),
    (lambda: fx.logsumexp(np.float64(1.0)), ValueError, "x must have at least one dimension"),
    (lambda: fx.logsumexp(X, keepdims=None), TypeError, "keepdims must be True or False"),
    (lambda: fx.set_num_threads(0), ValueError, "n must be a positive integer or None"),
    (lambda: fx.set_num_threads(1.5), TypeError, "n must be a positive integer or None"),
    # classes validate their options when built
    (lambda: fx.CrossEntropyLoss(reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: fx.CrossEntropyLoss(label_smoothing=2.0), ValueError, "label_smoothing"),
    (lambda: fx.KLDivLoss(reduction="avg"), ValueError, "'batchmean'"),
])
def test_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_uint64_targets_beyond_int64_are_rejected_not_wrapped():
    t = np.array([0, 2**63 + 1], np.uint64)
    with pytest.raises(IndexError, match=str(2**63 + 1)):
        fx.cross_entropy(np.zeros((2, 3)), t)


# --- ndarray subclasses ------------------------------------------------------------------

_RNG = np.random.default_rng(7)
_XS = _RNG.standard_normal((5, 4))
_P = 1 / (1 + np.exp(-_XS))
_SUBCLASS_CALLS = {
    "cross_entropy": lambda a: fx.cross_entropy(a, np.array([0, 3, 1, 2, 0]), return_grad=True),
    "cross_entropy probs": lambda a: fx.cross_entropy(_XS, np.exp(a) / 8, return_grad=True),
    "nll_loss": lambda a: fx.nll_loss(a, np.array([0, 3, 1, 2, 0]), reduction="none"),
    "bce": lambda a: fx.binary_cross_entropy(_P, _P, weight=a, return_grad=True),
    "bce_with_logits": lambda a: fx.binary_cross_entropy_with_logits(a, _P, return_grad=True),
    "kl_div": lambda a: fx.kl_div(a, _P, return_grad=True),
    "softmax": lambda a: fx.softmax(a, axis=0),
    "log_softmax": lambda a: fx.log_softmax(a),
    "logsumexp": lambda a: fx.logsumexp(a, keepdims=True),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("name", list(_SUBCLASS_CALLS))
@pytest.mark.parametrize("wrap", [np.matrix, np.ma.masked_array], ids=["matrix", "unmasked"])
def test_ndarray_subclasses_are_read_as_their_base_arrays(name, wrap):
    # np.matrix stays 2-d through every reshape; the kernels see its base array instead.
    call = _SUBCLASS_CALLS[name]
    got, want = call(wrap(_XS)), call(_XS)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        assert type(g) is np.ndarray
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("call,argument", [
    (lambda m: fx.cross_entropy(m, np.zeros(5, int)), "input"),
    (lambda m: fx.cross_entropy(_XS, np.ma.masked_array(np.zeros(5, int), m.mask[:, 0])),
     "target"),
    (lambda m: fx.cross_entropy(_XS, np.zeros(5, int), weight=m[0]), "weight"),
    (lambda m: fx.binary_cross_entropy_with_logits(_XS, _P, pos_weight=m), "pos_weight"),
    (lambda m: fx.kl_div(_XS, m), "target"),
    (lambda m: fx.softmax(m), "x"),
])
def test_masked_elements_are_refused_not_dropped(call, argument):
    masked = np.ma.masked_array(np.abs(_XS), mask=np.eye(5, 4, dtype=bool))
    with pytest.raises(TypeError, match=f"^{argument} must not have masked elements"):
        call(masked)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_a_matrix_grad_out_receives_the_gradient():
    target = np.array([0, 3, 1, 2, 0])
    buffer = np.matrix(np.full((5, 4), np.nan))
    loss, grad = fx.cross_entropy(_XS, target, return_grad=True, grad_out=buffer)
    np.testing.assert_array_equal(np.asarray(buffer), fx.cross_entropy(
        _XS, target, return_grad=True)[1])
    assert np.shares_memory(grad, buffer)
