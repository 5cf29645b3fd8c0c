"""torch.nn-style loss classes: each holds its options and calls the functional API.

Calling an instance returns the loss; ``loss_and_grad`` returns ``(loss, grad)`` from the
same fused pass. No maths lives here.
"""
from __future__ import annotations

from . import functional as F
from . import _validate as V

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]


class _Loss:
    """Shared machinery: the options are validated once, at construction."""

    _function = None          # the functional form, set by each subclass
    _reductions = V.REDUCTIONS

    def __init__(self, **options):
        self._options = options
        # Validate eagerly so that a bad option fails where it was written.
        if "reduction" in options:
            V.reduction(options["reduction"], self._reductions)
        if "label_smoothing" in options:
            V.label_smoothing(options["label_smoothing"])
        if "ignore_index" in options:
            V.integer("ignore_index", options["ignore_index"])

    def __getattr__(self, name):
        options = self.__dict__.get("_options", {})
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __call__(self, input, target):
        """Return the loss."""
        return type(self)._function(input, target, **self._options)

    def loss_and_grad(self, input, target, grad_output=None, grad_out=None):
        """Return ``(loss, grad)``: the loss and its gradient with respect to `input`."""
        return type(self)._function(input, target, return_grad=True, grad_output=grad_output,
                                    grad_out=grad_out, **self._options)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({args})"


class CrossEntropyLoss(_Loss):
    """Cross entropy on logits; see :func:`fastxent.cross_entropy` for every option.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> loss_fn = fx.CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]])
    >>> round(float(loss_fn(logits, np.array([0, 2]))), 4)
    1.3496
    """

    _function = staticmethod(F.cross_entropy)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0, axis=None):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, axis=axis)


class NLLLoss(_Loss):
    """Negative log-likelihood on log-probabilities; see :func:`fastxent.nll_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> loss, grad = fx.NLLLoss(reduction="sum").loss_and_grad(
    ...     np.log(np.array([[0.5, 0.5]])), np.array([1]))
    >>> grad
    array([[ 0., -1.]])
    """

    _function = staticmethod(F.nll_loss)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", axis=None):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         axis=axis)


class BCELoss(_Loss):
    """Binary cross entropy on probabilities; see :func:`fastxent.binary_cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> round(float(fx.BCELoss()(np.array([0.5]), np.array([1.0]))), 4)  # log 2
    0.6931
    """

    _function = staticmethod(F.binary_cross_entropy)

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(weight=weight, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits; see
    :func:`fastxent.binary_cross_entropy_with_logits`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> loss_fn = fx.BCEWithLogitsLoss(pos_weight=np.array(3.0))
    >>> round(float(loss_fn(np.array([2.0, -1.0, 0.5]), np.array([1, 0, 1]))), 4)
    0.7054
    """

    _function = staticmethod(F.binary_cross_entropy_with_logits)

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence; see :func:`fastxent.kl_div`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> float(fx.KLDivLoss(reduction="sum")(np.log(np.array([0.5, 0.5])),
    ...                                     np.array([0.5, 0.5])))
    0.0
    """

    _function = staticmethod(F.kl_div)
    _reductions = ("none", "batchmean", "mean", "sum")

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction=reduction, log_target=log_target)
