"""The public functions: validate -> allocate -> run the kernel -> reduce.

A CuPy input goes to the GPU backend (``_gpu``) with the same arguments.

Each function turns its arguments into a canonical problem (``_validate``), allocates the
outputs, runs one CPU kernel (``_cpu``) and reduces (``_reduce``). No maths lives here.
The most common calls of cross_entropy, nll_loss and binary_cross_entropy_with_logits skip
those steps: a Cython shortcut (``_xent.common_index``, ``_binary.common_logits``) takes a
call whose arguments are plainly valid and returns the same bits, and declines (None) any
other, which then goes the general way.
"""
from __future__ import annotations

import math

import numpy as np

from . import _axes, _gpu, _half, _infinite_scale, _reduce
from . import _validate as V
from ._cpu import _binary, _kldiv, _softmax, _xent
from ._threads import threads_for

__all__ = [
    "logsumexp", "softmax", "log_softmax", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "check_errors",
]

_UNUSED = {}


def _unused(dtype) -> np.ndarray:
    """A tiny placeholder for an output the kernel is told not to write."""
    dtype = np.dtype(dtype)
    if dtype not in _UNUSED:
        _UNUSED[dtype] = np.zeros((1, 1, 1), dtype)
    return _UNUSED[dtype]


def _grad_buffer(grad_out, cdt, new3, as_view3, as_full, grad_dtype):
    """The kernel's gradient buffer and a function returning the caller's gradient.

    With `grad_out`, the kernel writes straight into it when its dtype is the compute dtype
    `cdt` and its layout reshapes to the kernel's view; otherwise into a temporary copied
    over afterwards (float16 inputs, layouts that cannot merge). `new3()` makes a fresh
    buffer, the kernel's view of an array laid out in memory as the input is.
    """
    if grad_out is not None:
        if grad_out.dtype == cdt:
            g3 = as_view3(grad_out)
            if V.writes_through(g3, grad_out):
                return g3, lambda: grad_out
        g3 = new3()

        def copy_back():
            _half.narrow_into(grad_out, as_full(g3))
            return grad_out
        return g3, copy_back
    g3 = new3()
    return g3, lambda: _reduce.narrow(as_full(g3), grad_dtype)


def _fresh(x, input_dtype, allocate):
    """How to get a new buffer of `x`'s shape and dtype for the kernel to write.

    An input widened to its compute dtype (16-bit to float32, or float32 to float64 beside
    float64 probability targets) is this call's own copy, `x`, and the kernel writes over
    it in place, as it does for ``grad_out=input``: a call on 16-bit logits then holds one
    float32 array the size of the input rather than two.
    """
    if x.dtype != input_dtype:
        return lambda: x
    return lambda: allocate(x)


# --- class-axis losses ----------------------------------------------------------------

def _run_class(p, kernel, want_grad, grad_output, grad_out, partial=False, softmax=False):
    """Run a class-axis kernel; `partial` returns the float64 sum of the row losses instead
    of the reduced loss (the Dask path adds these over blocks before it divides). `softmax`:
    the kernel differentiates through a softmax (cross_entropy), whose rows of an infinite
    gradient scale take PyTorch's two steps (``_infinite_scale``)."""
    outer, C, inner = p.x.shape
    rows = np.empty((outer, inner), np.float64)
    gscale, g3, finish = _unused(np.float64)[0], _unused(p.x.dtype), None
    planned = None
    if want_grad:
        go = V.grad_output(grad_output, p.reduction, p.loss_shape)
        scale = _reduce.grad_scale(go, p.reduction, p.denominator)
        gscale = (np.reshape(scale, (outer, inner)) if p.reduction == "none"
                  else V.splat(scale, (outer, inner)))
        # A fresh gradient in the input's layout, as NumPy's element-wise operations keep
        # it: a C-ordered gradient of Fortran-ordered logits would be written a class
        # stride away from where each logit is read.
        g3, finish = _grad_buffer(grad_out, p.x.dtype, _fresh(p.x, p.grad_dtype, np.empty_like),
                                  lambda a: a.reshape(p.x.shape),
                                  lambda a: a.reshape(p.shape), p.grad_dtype)
        # only an upstream gradient of the caller's, or a "mean" of a tiny denominator,
        # makes a scale infinite
        if softmax and (grad_output is not None if p.reduction == "none"
                        else math.isinf(scale)):
            planned = _infinite_scale.plan(p, gscale, g3)
    kernel(gscale, rows, g3, want_grad, threads_for(p.x.size))
    _infinite_scale.apply(planned, p, gscale, g3)
    if partial and p.reduction != "none":
        loss = np.float64(_reduce.row_total(rows, threads_for(rows.size)))
    else:
        loss = _reduce.reduce_rows(rows, p.reduction, p.denominator, p.loss_shape,
                                   p.loss_dtype)
    return (loss, finish()) if want_grad else loss


def cross_entropy(input, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False, grad_output=None,
                  grad_out=None):
    r"""Cross entropy between logits and class-index or class-probability targets.

    Parameters
    ----------
    input : array_like of float, shape (C,), (N, C) or (N, C, d1, ..., dK)
        Unnormalised logits; float32 and float64 natively, float16 and bfloat16 computed
        in float32. Any strides, either byte order.
    target : array_like
        Class indices of any integer dtype with the input's shape minus the class axis
        (values in [0, C) or `ignore_index`), or class probabilities of a float dtype with
        the input's shape.
    weight : array_like of float, shape (C,), optional
        A weight per class.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing (it may lie outside [0, C)).
        Must stay -100 with probability targets.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'mean' divides by the sum of the true-class weights of the non-ignored targets
        (class indices) or by the number of items (probabilities).
    label_smoothing : float in [0, 1], default 0
        Mix the target with the uniform distribution: ``q' = (1 - eps) q + eps / C``.
    axis : int, optional
        The class axis: 1, or 0 for a 1-d input, as in PyTorch. ``axis=-1`` takes
        class-last ``(N, L, C)`` logits without a transpose.
    return_grad : bool, default False
        Also return the gradient with respect to `input`, computed in the same pass.
    grad_output : float or array_like, optional
        The upstream gradient ``d total / d loss`` (1 by default; the loss's shape for
        ``reduction='none'``).
    grad_out : ndarray, optional
        An array of the input's shape and dtype to write the gradient into; the input
        itself gives an in-place gradient.

    Returns
    -------
    loss : ndarray
        0-d for 'mean' and 'sum', the input's shape minus the class axis for 'none'; the
        input's dtype.
    grad : ndarray
        With `return_grad`: the gradient of ``sum(grad_output * loss)``, the input's shape
        and dtype (`grad_out` when given).

    Raises
    ------
    TypeError
        Non-float input, a target dtype that is neither integer nor float, bad option types.
    ValueError
        Mismatched shapes, a bad `reduction`, `label_smoothing` outside [0, 1], `ignore_index`
        with probability targets, a bad `grad_out`.
    IndexError
        A class index outside [0, C) that is not `ignore_index`.

    See Also
    --------
    torch.nn.functional.cross_entropy : the semantics matched here, option by option.
    nll_loss : the same loss on log-probabilities.

    Notes
    -----
    With :math:`p = \mathrm{softmax}(x)`, class weights :math:`w` (ones when absent),
    :math:`W = \sum_c w_c` and smoothing :math:`\varepsilon`, a class-index target gives

    .. math::

        \ell_i = (1 - \varepsilon)\, w_{y_i} (-\log p_{i y_i})
                 + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{ic}),
        \qquad
        \frac{\partial \ell_i}{\partial x_i} = (1 - \varepsilon) w_{y_i} (p_i - e_{y_i})
                 + \frac{\varepsilon}{C} (W p_i - w).

    A probability target :math:`q` gives :math:`\ell_i = -\sum_c w_c q'_{ic} \log p_{ic}`
    and the gradient :math:`(\sum_c w_c q'_{ic})\, p_i - w \odot q'_i`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> logits = np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]])
    >>> loss, grad = fx.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> round(float(loss), 4)
    1.2762
    >>> grad.round(4)
    array([[-0.0454,  0.0041,  0.0412],
           [ 0.0706,  0.3866, -0.4572]])
    """
    if _gpu.is_gpu_array(input):
        return _gpu.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                                  reduction=reduction, label_smoothing=label_smoothing,
                                  axis=axis, return_grad=return_grad,
                                  grad_output=grad_output, grad_out=grad_out)
    if weight is None and axis is None and grad_output is None:
        done = _xent.common_index(input, target, ignore_index, reduction, label_smoothing,
                                  return_grad, grad_out, threads_for)
        if done is not None:
            return done
    want = V.gradient_options(return_grad, grad_output, grad_out)
    p, kernel = _cross_entropy_problem(input, target, weight, ignore_index, reduction,
                                       label_smoothing, axis)
    grad_out = V.grad_out(grad_out, input, {"target": target, "weight": weight})
    return _run_class(p, kernel, want, grad_output, grad_out, softmax=True)


def _cross_entropy_problem(input, target, weight, ignore_index, reduction, label_smoothing,
                           axis):
    p = V.class_problem(input, target, weight=weight, ignore_index=ignore_index,
                        reduction_value=reduction, label_smoothing_value=label_smoothing,
                        axis_value=axis, allow_probs=True)
    eps = p.label_smoothing
    if p.probs:
        def kernel(gscale, rows, g3, wg, nt):
            _xent.prob_rows(p.x, p.target, p.weight, eps, gscale, rows, g3, wg, nt)
    else:
        def kernel(gscale, rows, g3, wg, nt):
            _xent.index_rows(p.x, p.target, p.weight, eps, gscale, rows, g3, wg, nt)
    return p, kernel


def nll_loss(input, target, *, weight=None, ignore_index=-100, reduction="mean", axis=None,
             return_grad=False, grad_output=None, grad_out=None):
    r"""Negative log-likelihood of class-index targets under log-probabilities.

    Parameters
    ----------
    input : array_like of float, shape (C,), (N, C) or (N, C, d1, ..., dK)
        Log-probabilities (not checked, as in PyTorch).
    target : array_like of int
        Class indices of any integer dtype, the input's shape minus the class axis.
    weight, ignore_index, reduction, axis, return_grad, grad_output, grad_out
        As in :func:`cross_entropy`.

    Returns
    -------
    loss : ndarray
        0-d for 'mean'/'sum', per item for 'none'; the input's dtype.
    grad : ndarray
        With `return_grad`: ``-w[y] * grad_output`` at each target class, 0 elsewhere.

    Raises
    ------
    TypeError, ValueError, IndexError
        As in :func:`cross_entropy`; a floating-point target is a TypeError.

    See Also
    --------
    torch.nn.functional.nll_loss
    cross_entropy : the same loss on logits.

    Notes
    -----
    .. math:: \ell_i = -w_{y_i}\, x_{i y_i}

    'mean' divides by :math:`\sum_{i \text{ not ignored}} w_{y_i}`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> logp = np.log(np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]]))
    >>> fx.nll_loss(logp, np.array([0, 0]), reduction="none").round(4)
    array([0.6931, 0.2231])
    """
    if _gpu.is_gpu_array(input):
        return _gpu.nll_loss(input, target, weight=weight, ignore_index=ignore_index,
                             reduction=reduction, axis=axis, return_grad=return_grad,
                             grad_output=grad_output, grad_out=grad_out)
    if weight is None and axis is None and grad_output is None:
        done = _xent.common_index(input, target, ignore_index, reduction, 0.0, return_grad,
                                  grad_out, threads_for, True)
        if done is not None:
            return done
    want = V.gradient_options(return_grad, grad_output, grad_out)
    p, kernel = _nll_problem(input, target, weight, ignore_index, reduction, axis)
    grad_out = V.grad_out(grad_out, input, {"target": target, "weight": weight})
    return _run_class(p, kernel, want, grad_output, grad_out)


def _nll_problem(input, target, weight, ignore_index, reduction, axis):
    p = V.class_problem(input, target, weight=weight, ignore_index=ignore_index,
                        reduction_value=reduction, label_smoothing_value=0.0,
                        axis_value=axis, allow_probs=False)

    def kernel(gscale, rows, g3, wg, nt):
        _xent.nll_rows(p.x, p.target, p.weight, gscale, rows, g3, wg, nt)
    return p, kernel


# --- element-wise losses --------------------------------------------------------------

def _run_elementwise(p, kernel, want_grad, grad_output, grad_out, partial=False):
    """Run an element-wise kernel; `partial` as in :func:`_run_class`."""
    cdt, shape3 = p.x.dtype, p.x.shape
    per_element = p.reduction == "none"
    loss3 = np.empty(shape3, cdt) if per_element else _unused(cdt)
    gscale, g3, finish = _unused(np.float64), _unused(cdt), None
    if want_grad:
        go = V.grad_output(grad_output, p.reduction, p.shape)
        scale = _reduce.grad_scale(go, p.reduction, p.denominator)
        gscale = p.view3(scale) if per_element else V.splat(scale, shape3)
        g3, finish = _grad_buffer(grad_out, cdt,
                                  _fresh(p.x, p.grad_dtype, lambda x: np.empty(shape3, cdt)),
                                  p.view3, p.full, p.grad_dtype)
    total = kernel(gscale, loss3, g3, per_element, want_grad, threads_for(p.x.size))
    if per_element:
        loss = _reduce.narrow(p.full(loss3), p.loss_dtype)
    elif partial:
        loss = np.float64(total)
    else:
        loss = _reduce.reduce_total(total, p.reduction, p.denominator, p.loss_dtype)
    return (loss, finish()) if want_grad else loss


def binary_cross_entropy(input, target, *, weight=None, reduction="mean", return_grad=False,
                         grad_output=None, grad_out=None):
    r"""Binary cross entropy between probabilities and targets.

    Prefer :func:`binary_cross_entropy_with_logits` when you have logits: it is exact where
    this form must clamp.

    Parameters
    ----------
    input : array_like of float
        Probabilities in [0, 1], any shape.
    target : array_like
        The input's shape; values in [0, 1] (float, integer or bool).
    weight : array_like, optional
        Broadcast against the input.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'mean' divides by the number of elements (weights do not enter it).
    return_grad, grad_output, grad_out
        As in :func:`cross_entropy`.

    Returns
    -------
    loss : ndarray
        0-d, or the input's shape for 'none'; the input's dtype.
    grad : ndarray
        With `return_grad`: the gradient with respect to the probabilities.

    Raises
    ------
    ValueError
        Input or target outside [0, 1] (NaN included), mismatched shapes, a weight that
        does not broadcast.
    TypeError
        Non-float input, non-real target or weight.

    See Also
    --------
    torch.nn.functional.binary_cross_entropy

    Notes
    -----
    As PyTorch, each log is clamped at -100 so that p = 0 or 1 stays finite:

    .. math::

        \ell = -w \left[y \max(\log p, -100) + (1 - y) \max(\log(1 - p), -100)\right],
        \qquad
        \frac{\partial \ell}{\partial p} = w \frac{p - y}{\max(p (1 - p), 10^{-12})}.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5])))
    >>> round(float(fx.binary_cross_entropy(p, np.array([1.0, 0.0, 1.0]))), 4)
    0.3048
    """
    if _gpu.is_gpu_array(input):
        return _gpu.binary_cross_entropy(input, target, weight=weight, reduction=reduction,
                                         return_grad=return_grad, grad_output=grad_output,
                                         grad_out=grad_out)
    want = V.gradient_options(return_grad, grad_output, grad_out)
    p, kernel = _bce_problem(input, target, weight, reduction)
    grad_out = V.grad_out(grad_out, input, {"target": target, "weight": weight})
    return _run_elementwise(p, kernel, want, grad_output, grad_out)


def _bce_problem(input, target, weight, reduction):
    p = V.elementwise_problem(input, target, weight=weight, reduction_value=reduction,
                              probabilities=True)

    def kernel(gscale, loss3, g3, wl, wg, nt):
        return _binary.bce(p.x, p.target, p.weight, gscale, loss3, g3, wl, wg, nt)
    return p, kernel


def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, grad_output=None,
                                     grad_out=None):
    r"""Binary cross entropy on logits (sigmoid folded in, numerically stable).

    Parameters
    ----------
    input : array_like of float
        Logits, any shape.
    target : array_like
        The input's shape (float, integer or bool); values outside [0, 1] are accepted,
        as in PyTorch.
    weight : array_like, optional
        Broadcast against the input.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against the input (so a (C,) array lines up
        with the last axis; use (C, 1, 1) for NCHW).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'mean' divides by the number of elements.
    return_grad, grad_output, grad_out
        As in :func:`cross_entropy`.

    Returns
    -------
    loss : ndarray
        0-d, or the input's shape for 'none'; the input's dtype.
    grad : ndarray
        With `return_grad`: the gradient with respect to the logits.

    Raises
    ------
    ValueError
        Mismatched shapes, weights that do not broadcast.
    TypeError
        Non-float input, non-real target or weights.

    See Also
    --------
    torch.nn.functional.binary_cross_entropy_with_logits

    Notes
    -----
    With :math:`\sigma` the logistic function and :math:`\mathrm{sp}(z) = \log(1 + e^z)`:

    .. math::

        \ell = w \left[(1 - y)\, x + (1 + (p_w - 1) y)\, \mathrm{sp}(-x)\right],
        \qquad
        \frac{\partial \ell}{\partial x} = w \left[(p_w y + 1 - y)\, \sigma(x) - p_w y\right].

    At :math:`x = \pm\infty` with the matching label the first term is
    :math:`0 \cdot \infty`: NaN, exactly as PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> x, y = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    >>> round(float(fx.binary_cross_entropy_with_logits(x, y)), 4)
    0.3048
    >>> round(float(fx.binary_cross_entropy_with_logits(x, y, pos_weight=np.array(3.0))), 4)
    0.7054
    """
    if _gpu.is_gpu_array(input):
        return _gpu.binary_cross_entropy_with_logits(
            input, target, weight=weight, pos_weight=pos_weight, reduction=reduction,
            return_grad=return_grad, grad_output=grad_output, grad_out=grad_out)
    if weight is None and pos_weight is None and grad_output is None:
        done = _binary.common_logits(input, target, reduction, return_grad, grad_out,
                                     threads_for)
        if done is not None:
            return done
    want = V.gradient_options(return_grad, grad_output, grad_out)
    p, kernel = _bce_logits_problem(input, target, weight, pos_weight, reduction)
    grad_out = V.grad_out(grad_out, input, {"target": target, "weight": weight,
                                            "pos_weight": pos_weight})
    return _run_elementwise(p, kernel, want, grad_output, grad_out)


def _bce_logits_problem(input, target, weight, pos_weight, reduction):
    p = V.elementwise_problem(input, target, weight=weight, pos_weight=pos_weight,
                              reduction_value=reduction)
    has_pw = p.pos_weight is not None
    pw = p.pos_weight if has_pw else _unused(np.float64)

    def kernel(gscale, loss3, g3, wl, wg, nt):
        return _binary.bce_logits(p.x, p.target, p.weight, pw, gscale, loss3, g3, has_pw,
                                  wl, wg, nt)
    return p, kernel


def kl_div(input, target, *, reduction="mean", log_target=False, return_grad=False,
           grad_output=None, grad_out=None):
    r"""Kullback-Leibler divergence of `target` from the log-probabilities `input`.

    Parameters
    ----------
    input : array_like of float
        Log-probabilities, any shape.
    target : array_like
        Probabilities (or log-probabilities with `log_target`), broadcast to the input.
    reduction : {'mean', 'batchmean', 'sum', 'none'}, default 'mean'
        'mean' divides by the number of elements, 'batchmean' by the first dimension (the
        true KL divergence per sample).
    log_target : bool, default False
        The target holds log-probabilities.
    return_grad, grad_output, grad_out
        As in :func:`cross_entropy`.

    Returns
    -------
    loss : ndarray
        0-d, or the input's shape for 'none'; the input's dtype.
    grad : ndarray
        With `return_grad`: ``-target`` (``-exp(target)`` with `log_target`) times the
        upstream gradient.

    Raises
    ------
    ValueError
        A target that does not broadcast, a bad `reduction`.
    TypeError
        Non-float input, non-real target.

    See Also
    --------
    torch.nn.functional.kl_div

    Notes
    -----
    .. math::

        \ell = t (\log t - x) \quad (0 \text{ where } t = 0), \qquad
        \ell_{\text{log\_target}} = e^{t} (t - x).

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> logq = fx.log_softmax(np.array([[1.0, 2.0, 0.5], [0.1, -0.3, 0.2]]))
    >>> t = np.array([[0.2, 0.5, 0.3], [0.0, 0.6, 0.4]])
    >>> round(float(fx.kl_div(logq, t, reduction="batchmean")), 4)
    0.3163
    """
    if _gpu.is_gpu_array(input):
        return _gpu.kl_div(input, target, reduction=reduction, log_target=log_target,
                           return_grad=return_grad, grad_output=grad_output,
                           grad_out=grad_out)
    want = V.gradient_options(return_grad, grad_output, grad_out)
    p, kernel = _kl_div_problem(input, target, reduction, log_target)
    grad_out = V.grad_out(grad_out, input, {"target": target})
    return _run_elementwise(p, kernel, want, grad_output, grad_out)


def _kl_div_problem(input, target, reduction, log_target):
    lt = V.flag("log_target", log_target)
    p = V.elementwise_problem(input, target, reduction_value=reduction, same_shape=False,
                              reductions=("none", "batchmean", "mean", "sum"),
                              batch_denominator=reduction == "batchmean")

    def kernel(gscale, loss3, g3, wl, wg, nt):
        return _kldiv.kl_div(p.x, p.target, gscale, loss3, g3, lt, wl, wg, nt)
    return p, kernel


# --- GPU errors -----------------------------------------------------------------------

def check_errors() -> None:
    """Raise the value error that an earlier call on a GPU array found on the device.

    Calls on CuPy arrays never wait for the device, so what needs the values -- a class
    index outside ``[0, C)``, a ``binary_cross_entropy`` input outside ``[0, 1]`` -- is
    found by the kernel, which gives that row or element a NaN and raises a flag. The next
    fastxent call on the device raises the error; this function raises it now, after
    waiting for the flagged work to finish (the place to call it is where the host waits
    anyway, as for a logged loss). NumPy and Dask inputs raise at once, and with no GPU work
    pending this returns at once.

    Raises
    ------
    IndexError
        A class index was outside ``[0, C)`` and was not ``ignore_index``.
    ValueError
        A ``binary_cross_entropy`` input was outside ``[0, 1]``.

    Examples
    --------
    >>> import fastxent
    >>> fastxent.check_errors()      # nothing pending: returns None
    """
    _gpu.check_errors(wait=True)


# --- transforms -----------------------------------------------------------------------

def _transform_input(x, axis):
    a, ax = V.transform_input(x, axis)
    if ax is None:
        return a.reshape(-1), 0, a.shape
    return a, ax, a.shape


def _over_axes(transform, x, axis, back):
    """`transform(array, axis)` over a tuple `axis`, its axes taken as one (``_axes``);
    ``back(result, shape, moved_shape, axes)`` gives the merged result the input's axes."""
    a = x if _gpu.is_gpu_array(x) else V.float_array("x", x)
    ax = V.transform_input(V.stand_in(a), axis)[1]
    if not isinstance(ax, tuple):               # one axis
        return transform(a, ax)
    merged, moved_shape = _axes.merge(a, ax)
    return back(transform(merged, -1), a.shape, moved_shape, ax)


def _normalised_back(out, shape, moved_shape, axes):
    return _axes.restore(out, moved_shape, axes)


def logsumexp(x, axis=-1, keepdims=False):
    r"""Log of the sum of exponentials along an axis, without overflow.

    Parameters
    ----------
    x : array_like of float
        Any shape and strides.
    axis : int, tuple of ints or None, default -1
        The axis to reduce; a tuple reduces over those axes together, None over every
        element.
    keepdims : bool, default False
        Keep each reduced axis with length 1.

    Returns
    -------
    ndarray
        The input's dtype; a row of -inf gives -inf and a row holding +inf gives +inf.

    Raises
    ------
    TypeError
        Non-float input.
    ValueError
        A 0-d input or an axis out of range.

    See Also
    --------
    torch.logsumexp, scipy.special.logsumexp

    Notes
    -----
    .. math:: \mathrm{lse}(x) = m + \log \sum_c e^{x_c - m}, \quad m = \max_c x_c

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> fx.logsumexp(np.array([[1000.0, 1000.0], [0.0, -np.inf]])).round(4)
    array([1000.6931,    0.    ])
    >>> fx.logsumexp(np.zeros((2, 3, 4)), axis=(1, 2)).round(4)   # log 12, per batch
    array([2.4849, 2.4849])
    """
    keep = V.flag("keepdims", keepdims)
    if isinstance(axis, tuple):
        return _over_axes(lambda a, ax: logsumexp(a, ax, keep), x, axis,
                          lambda rows, shape, moved_shape, axes:
                          rows.reshape(_axes.reduced_shape(shape, axes, keep)))
    if _gpu.is_gpu_array(x):
        return _gpu.logsumexp(x, axis, keep)
    a, ax, shape, rows = _logsumexp64(x, axis)
    out = _reduce.narrow(rows, a.dtype)
    if keep:
        out = out.reshape((1,) * len(shape) if axis is None else
                          a.shape[:ax] + (1,) + a.shape[ax + 1:])
    return out


def _logsumexp64(x, axis):
    """The validated input, its class axis and shape, and the log-sum-exp in float64."""
    a, ax, shape = _transform_input(x, axis)
    cdt = V.compute_dtype(a.dtype)
    x3 = V.class_view(a if a.dtype == cdt else _half.widen(a, cdt), ax)
    out_shape = a.shape[:ax] + a.shape[ax + 1:]
    if x3.size == 0:  # no classes: the empty sum's log; no rows: nothing for the kernel
        return a, ax, shape, np.full(out_shape, -np.inf)
    rows = np.empty((x3.shape[0], x3.shape[2]), np.float64)
    _softmax.logsumexp(x3, rows, threads_for(x3.size))
    return a, ax, shape, rows.reshape(out_shape)


def _transform(kernel, x, axis):
    a, ax, shape = _transform_input(x, axis)
    cdt = V.compute_dtype(a.dtype)
    x3 = V.class_view(a if a.dtype == cdt else _half.widen(a, cdt), ax)
    out3 = x3 if x3.dtype != a.dtype else np.empty_like(x3)    # over a widened copy: _fresh
    if x3.size:
        kernel(x3, out3, threads_for(x3.size))
    return _reduce.narrow(out3.reshape(shape), a.dtype)


def softmax(x, axis=-1):
    r"""Softmax along an axis: exponentials normalised to sum to 1.

    Parameters
    ----------
    x : array_like of float
        Any shape and strides.
    axis : int, tuple of ints or None, default -1
        The class axis; a tuple normalises over those axes together (the result may then
        be a transposed view), None over every element.

    Returns
    -------
    ndarray
        The input's shape and dtype. A row of -inf, or a row holding +inf or NaN, gives NaN
        (as PyTorch).

    Raises
    ------
    TypeError
        Non-float input.
    ValueError
        A 0-d input or an axis out of range.

    See Also
    --------
    torch.softmax, scipy.special.softmax

    Notes
    -----
    .. math:: \mathrm{softmax}(x)_c = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}}

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> fx.softmax(np.array([3.2, -1.5, 0.8])).round(4)
    array([0.9092, 0.0083, 0.0825])
    """
    if isinstance(axis, tuple):
        return _over_axes(softmax, x, axis, _normalised_back)
    if _gpu.is_gpu_array(x):
        return _gpu.softmax(x, axis)
    return _transform(_softmax.softmax, x, axis)


def log_softmax(x, axis=-1):
    r"""Log of the softmax along an axis, computed without forming the softmax.

    Parameters
    ----------
    x : array_like of float
        Any shape and strides.
    axis : int, tuple of ints or None, default -1
        The class axis; a tuple normalises over those axes together (the result may then
        be a transposed view), None over every element.

    Returns
    -------
    ndarray
        The input's shape and dtype.

    Raises
    ------
    TypeError
        Non-float input.
    ValueError
        A 0-d input or an axis out of range.

    See Also
    --------
    torch.log_softmax, scipy.special.log_softmax

    Notes
    -----
    .. math:: \log \mathrm{softmax}(x)_c = (x_c - m) - \log \sum_k e^{x_k - m}

    Examples
    --------
    >>> import numpy as np
    >>> import fastxent as fx
    >>> fx.log_softmax(np.array([1000.0, 0.0]))
    array([    0., -1000.])
    """
    if isinstance(axis, tuple):
        return _over_axes(log_softmax, x, axis, _normalised_back)
    if _gpu.is_gpu_array(x):
        return _gpu.log_softmax(x, axis)
    return _transform(_softmax.log_softmax, x, axis)
