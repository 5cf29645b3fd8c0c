"""torch.nn-style loss classes: each holds its options and calls the functional API.

Calling an instance returns the loss; ``loss_and_grad`` returns ``(loss, grad)`` from the
same fused pass. No maths lives here.
"""
from __future__ import annotations

from . import functional as F
from . import _validate as V

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]


class _Loss:
    """Shared machinery: the options are validated once, at construction.

    Every option but ``weight`` is keyword-only: PyTorch's classes take the deprecated
    ``size_average`` and ``reduce`` in the positions after ``weight``, so an option ported
    by position would mean something else here. It is a TypeError instead.
    """

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
        """Return the loss of `input` against `target` with this object's options.

        Parameters
        ----------
        input : array_like of float
            The logits (or probabilities, log-probabilities: as the functional form).
        target : array_like
            The target, as the functional form takes it.

        Returns
        -------
        loss : ndarray
            0-d for 'mean', 'sum' and 'batchmean'; per item for 'none'.

        Examples
        --------
        >>> import numpy as np
        >>> import fastxent as fx
        >>> fx.BCEWithLogitsLoss(reduction="none")(np.array([0.0, 0.0]), np.array([1, 0]))
        array([0.69314718, 0.69314718])
        """
        return type(self)._function(input, target, **self._options)

    def loss_and_grad(self, input, target, grad_output=None, grad_out=None):
        """Return the loss and its gradient with respect to `input`, from one fused pass.

        Parameters
        ----------
        input : array_like of float
            The logits (or probabilities, log-probabilities: as the functional form).
        target : array_like
            The target, as the functional form takes it.
        grad_output : float or array_like, optional
            The upstream gradient ``d total / d loss`` (1 by default; the loss's shape
            for ``reduction='none'``).
        grad_out : ndarray, optional
            An array of the input's shape and dtype to write the gradient into; the input
            itself gives an in-place gradient.

        Returns
        -------
        loss : ndarray
            As from calling the object.
        grad : ndarray
            The gradient of ``sum(grad_output * loss)``, the input's shape and dtype
            (`grad_out` when given).

        Examples
        --------
        >>> import numpy as np
        >>> import fastxent as fx
        >>> loss, grad = fx.CrossEntropyLoss(reduction="sum").loss_and_grad(
        ...     np.zeros((1, 2)), np.array([0]))
        >>> grad
        array([[-0.5,  0.5]])
        """
        return type(self)._function(input, target, return_grad=True, grad_output=grad_output,
                                    grad_out=grad_out, **self._options)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({args})"


class CrossEntropyLoss(_Loss):
    """Cross entropy on logits; see :func:`fastxent.cross_entropy` for every option.

    Parameters
    ----------
    weight : array_like of float, shape (C,), optional
        A weight per class.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        How the per-item losses are combined.
    label_smoothing : float in [0, 1], default 0
        Mix the target with the uniform distribution.
    axis : int, optional
        The class axis (1, or 0 for a 1-d input, by default).

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

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0, axis=None):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, axis=axis)


class NLLLoss(_Loss):
    """Negative log-likelihood on log-probabilities; see :func:`fastxent.nll_loss`.

    Parameters
    ----------
    weight : array_like of float, shape (C,), optional
        A weight per class.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        How the per-item losses are combined.
    axis : int, optional
        The class axis (1, or 0 for a 1-d input, by default).

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

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", axis=None):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         axis=axis)


class BCELoss(_Loss):
    """Binary cross entropy on probabilities; see :func:`fastxent.binary_cross_entropy`.

    Parameters
    ----------
    weight : array_like of float, optional
        A weight per element, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        How the per-item losses are combined.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> round(float(fx.BCELoss()(np.array([0.5]), np.array([1.0]))), 4)  # log 2
    0.6931
    """

    _function = staticmethod(F.binary_cross_entropy)

    def __init__(self, weight=None, *, reduction="mean"):
        super().__init__(weight=weight, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits; see
    :func:`fastxent.binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight : array_like of float, optional
        A weight per element, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        How the per-item losses are combined.
    pos_weight : array_like of float, optional
        A weight for the positive term, broadcast against the input (its last axis).

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> loss_fn = fx.BCEWithLogitsLoss(pos_weight=np.array(3.0))
    >>> round(float(loss_fn(np.array([2.0, -1.0, 0.5]), np.array([1, 0, 1]))), 4)
    0.7054
    """

    _function = staticmethod(F.binary_cross_entropy_with_logits)

    def __init__(self, weight=None, *, reduction="mean", pos_weight=None):
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence; see :func:`fastxent.kl_div`.

    Parameters
    ----------
    reduction : {'mean', 'batchmean', 'sum', 'none'}, default 'mean'
        How the per-item losses are combined.
    log_target : bool, default False
        Whether the target is given as log-probabilities.

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

    def __init__(self, *, reduction="mean", log_target=False):
        super().__init__(reduction=reduction, log_target=log_target)
