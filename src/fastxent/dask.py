r"""fastxent on Dask arrays: the same losses, exact, one chunk at a time.

``fastxent.dask.cross_entropy(logits, target)`` takes ``dask.array`` inputs (or anything
NumPy takes) with the NumPy API's signature and semantics, and returns lazy Dask arrays:
the loss (0-d for "mean"/"sum") and, with ``return_grad=True``, the gradient with the
logits' chunks. Nothing is gathered onto one worker.

Design
------
a) Arguments are checked when the call is made, from shapes and dtypes alone, by the same
   ``_validate`` functions as the NumPy API (``check_only=True``); what needs the values
   (class indices out of range, BCE inputs outside [0, 1]) raises the NumPy API's error
   when the graph runs.
b) Chunks along the samples are independent: each block runs the NumPy API's kernel with
   ``reduction="sum"`` (a float64 partial total) or ``"none"``, and its gradient in the
   same task; the loss and the gradient are two views of that one task per block, so
   ``dask.compute(loss, grad)`` reads each block of logits once.
c) "mean" divides the sum of all partial totals by the global denominator (the summed
   weights of the counted targets, from a pass over the targets only), never a mean of
   chunk means; the gradient's scale ``grad_output / denominator`` is a 0-d task that the
   blocks wait for.
d) Classes split over chunks: ``nll_loss`` needs no combination (each block adds the terms
   of the classes it holds); ``cross_entropy``, ``logsumexp`` and the transforms merge per
   chunk log-sum-exps exactly, ``L + log sum_j exp(l_j - L)``, then a second pass over the
   blocks writes the gradient or the transform (see ``_dask_blocks``).
e) Threads: every task runs its kernel on ``n_threads`` OpenMP threads (default 1, one per
   Dask thread), so a worker with ``k`` threads uses ``k`` cores, not ``k`` times the cores.
f) CuPy chunks: the input's chunks decide where the blocks run. With CuPy chunks (or a
   CuPy input) every block runs the CuPy backend, host targets and weights are moved to
   the device block by block, and the results have CuPy chunks; with NumPy chunks, CuPy
   data in another argument is a TypeError at the call.

Dask is imported here only; ``import fastxent`` never needs it.
"""
from __future__ import annotations

import functools
import math
import operator

import numpy as np

try:
    import dask.array as da
    from dask.array.utils import meta_from_array
except ImportError as exc:                        # pragma: no cover - exercised without dask
    raise ImportError("fastxent.dask needs Dask: pip install 'fastxent[dask]'") from exc

from . import _dask_blocks as B
from . import _gpu
from . import _validate as V
from ._gpu import is_gpu_array
from ._threads import _count

__all__ = [
    "logsumexp", "softmax", "log_softmax", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
]

_LETTERS = "abcdefghijklmnopqrstuvwxy"     # blockwise indices; "z" is kept for contractions
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


# --- arguments ---------------------------------------------------------------------------

def _on_device(value):
    """Whether `value` is a CuPy array or a Dask array of CuPy chunks."""
    return is_gpu_array(value._meta if isinstance(value, da.Array) else value)


def _host_only(name, value):
    """TypeError for CuPy data beside a host input: a task would fail on it (CuPy refuses
    the implicit copy) without naming the argument."""
    if _on_device(value):
        what = "has CuPy chunks" if isinstance(value, da.Array) else "is a CuPy array"
        raise TypeError(f"{name} {what}, but the input's chunks are NumPy arrays: the blocks "
                        f"run where the input is. Move {name} to the host "
                        f"({name}.map_blocks(cupy.asnumpy) for Dask, cupy.asnumpy({name}) "
                        f"otherwise) or the input to the device")


def _meta(x, ndim, dtype):
    """An empty array of `ndim` and `dtype` of the kind of x's chunks (NumPy or CuPy)."""
    return meta_from_array(x._meta, ndim=ndim, dtype=dtype)


def _input(name, value):
    """The input as a Dask array with known chunk sizes, its chunks NumPy or CuPy."""
    if not isinstance(value, da.Array):
        value = da.asarray(value if is_gpu_array(value) else V._asarray(name, value))
    if any(math.isnan(n) for n in value.shape):
        raise ValueError(f"{name} must have known chunk sizes; got shape {value.shape} "
                         f"(call {name}.compute_chunk_sizes() first)")
    return V.native(value)      # the results' dtypes, as the NumPy path's (native)


def _array(name, value, x):
    """Another array argument as a Dask array with known chunk sizes (CuPy data only
    beside CuPy input; `_rechunk` moves host data to the device)."""
    if not _on_device(x):
        _host_only(name, value)
    return _input(name, value)


def _rechunk(a, chunks, x):
    """`a` in `chunks`, its blocks where the input x's are: host data is moved to the
    device block by block for CuPy input. Also after a rechunk of CuPy chunks, since Dask
    rebuilds an empty array's chunks with NumPy."""
    a = a.rechunk(chunks)
    if _on_device(x):
        a = a.map_blocks(_gpu._device, dtype=a.dtype, meta=_meta(x, a.ndim, a.dtype))
    return a


def _small(name, value, x):
    """A small argument (class weights, a scalar grad_output) as host data, computed now
    when it is a Dask array; the blocks move it to the device with CuPy input."""
    if not _on_device(x):
        _host_only(name, value)
    if isinstance(value, da.Array):
        value = value.compute()
    return value.get() if is_gpu_array(value) else value


def _gradient_options(return_grad, grad_output, grad_out):
    want = V.gradient_options(return_grad, grad_output, grad_out)
    if grad_out is not None:
        raise ValueError("grad_out is not supported for Dask arrays: the gradient is "
                         "returned as a lazy Dask array with the input's chunks")
    return want


def _upstream(grad_output, reduction, loss_shape, row_chunks, x):
    """d total / d loss as the blocks take it: a float, or a Dask array for "none"."""
    if reduction == "none" and grad_output is not None and np.ndim(grad_output) > 0:
        g = _array("grad_output", grad_output, x)
        V.real_array("grad_output", np.empty(0, g.dtype))
        V.grad_output(np.broadcast_to(np.zeros(()), g.shape), reduction, loss_shape)
        return _rechunk(da.broadcast_to(g, loss_shape), row_chunks, x)
    return float(V.grad_output(_small("grad_output", grad_output, x), reduction, ()))


def _finish(pieces, denominator, reduction, dtype, x):
    """The 0-d "sum" or "mean" from float64 pieces: one global total, one division."""
    total = da.reduction(pieces, B.total, B.total, axis=None, dtype=np.float64,
                         concatenate=True, meta=_meta(x, 0, np.float64))
    return da.blockwise(B.finish, "", total, "", denominator,
                        "" if isinstance(denominator, da.Array) else None,
                        reduction=reduction, out_dtype=dtype, dtype=dtype,
                        meta=_meta(x, 0, dtype))


def _split(pair, piece_chunks, piece_dtype, x):
    """The loss pieces and the gradient from the blocks' ``(piece, grad)`` tuples."""
    pieces = pair.map_blocks(_FIRST, chunks=piece_chunks, dtype=piece_dtype,
                             meta=_meta(x, pair.ndim, piece_dtype))
    grad = pair.map_blocks(_SECOND, dtype=x.dtype, meta=meta_from_array(x, x.ndim))
    return pieces, grad


def _threads(n_threads):
    return _count(n_threads, "n_threads")


# --- class-axis losses -------------------------------------------------------------------

def _class_loss(fn, input, target, weight, ignore_index, reduction, label_smoothing, axis,
                return_grad, grad_output, grad_out, n_threads):
    want = _gradient_options(return_grad, grad_output, grad_out)
    nt = _threads(n_threads)
    x = _input("input", input)
    t = _array("target", target, x)
    weight = _small("weight", weight, x)
    ax, probs = V.class_problem(V.stand_in(x), V.stand_in(t), weight=weight, ignore_index=ignore_index,
                                reduction_value=reduction,
                                label_smoothing_value=label_smoothing, axis_value=axis,
                                allow_probs=fn == "cross_entropy", check_only=True)
    C = x.shape[ax]
    w = None if weight is None else V._class_weight(weight, C)
    eps, ignore = float(label_smoothing), int(ignore_index)
    ind = _LETTERS[:x.ndim]
    cls, rows = ind[ax], ind[:ax] + ind[ax + 1:]
    loss_shape = x.shape[:ax] + x.shape[ax + 1:]
    row_chunks = x.chunks[:ax] + x.chunks[ax + 1:]
    if probs:
        t, t_ind = _rechunk(t, x.chunks, x), ind
    else:
        t, t_ind = _rechunk(t.reshape(loss_shape), row_chunks, x), rows
    cids = da.arange(C, chunks=(x.chunks[ax],))

    if reduction != "mean":
        den = 1.0
    elif probs:
        den = float(math.prod(loss_shape))
    else:
        den = da.blockwise(B.index_denominator, rows, t, rows, n_classes=C, weight=w,
                           ignore_index=ignore, adjust_chunks={r: 1 for r in rows},
                           dtype=np.float64, meta=_meta(x, len(rows), np.float64)).sum()
    gout = None
    if want:
        gout = _upstream(grad_output, reduction, loss_shape, row_chunks, x)
        if reduction == "mean":
            gout = da.blockwise(B.mean_scale, "", den, "", grad_output=gout,
                                dtype=np.float64, meta=np.empty(()))
    if isinstance(gout, da.Array):
        gout_arg = (gout, rows if gout.ndim else "")
    else:
        gout_arg = (gout, None)

    if fn == "cross_entropy" and x.numblocks[ax] > 1:
        loss_rows, grad = _split_class_cross_entropy(x, t, t_ind, cids, w, ignore, eps, ax,
                                                     probs, reduction, want, gout_arg, nt)
        if reduction == "none":
            loss = loss_rows.astype(x.dtype)
        else:
            loss = _finish(loss_rows, den, reduction, x.dtype, x)
        return (loss, grad) if want else loss

    options = {"weight": w, "ignore_index": ignore, "label_smoothing": eps, "axis": ax}
    pair = da.blockwise(B.loss_block, ind, x, ind, t, t_ind, cids, cls, None, None,
                        None, None, *gout_arg, fn=fn, options=options, reduction=reduction,
                        want_grad=want, n_threads=nt, n_classes=C, ax=ax, dtype=object,
                        meta=np.empty((0,) * x.ndim, object))
    if reduction == "none":
        piece_chunks = x.chunks[:ax] + ((1,) * x.numblocks[ax],) + x.chunks[ax + 1:]
        pieces, grad = _split(pair, piece_chunks, x.dtype, x)
        # A block of classes adds the terms of its own classes only (nll_loss); with one
        # class chunk the sum is the block's loss itself.
        loss = pieces.sum(axis=ax, dtype=x.dtype)
    else:
        pieces, grad = _split(pair, tuple((1,) * n for n in x.numblocks), np.float64, x)
        loss = _finish(pieces, den, reduction, x.dtype, x)
    return (loss, grad) if want else loss


def _split_class_cross_entropy(x, t, t_ind, cids, w, ignore, eps, ax, probs, reduction,
                               want, gout_arg, nt):
    """cross_entropy with the classes over several chunks: statistics, merge, gradient."""
    ind = _LETTERS[:x.ndim]
    cls = ind[ax]
    k = 3 if probs else 4
    opts = dict(n_classes=x.shape[ax], weight=w, ignore_index=ignore, label_smoothing=eps,
                ax=ax, probs=probs)
    stats = da.blockwise(B.ce_stats, ind, x, ind, t, t_ind, cids, cls, n_threads=nt,
                         adjust_chunks={cls: k}, dtype=np.float64,
                         meta=_meta(x, x.ndim, np.float64), **opts)
    stats = _rechunk(stats, {ax: -1}, x)
    chunk_weights = [float(np.sum(w[c0:c0 + n])) if w is not None else float(n)
                     for c0, n in zip(np.cumsum((0,) + x.chunks[ax][:-1]), x.chunks[ax])]
    merged = da.blockwise(B.ce_merge, ind, stats, ind, *((None, None) if probs else (t, t_ind)),
                          n_chunks=x.numblocks[ax], chunk_weights=chunk_weights,
                          adjust_chunks={cls: 3}, dtype=np.float64,
                          meta=_meta(x, x.ndim, np.float64), **opts)
    loss_rows = merged[(slice(None),) * ax + (0,)]
    grad = None
    if want:
        merged_ind = ind.replace(cls, "z")
        grad = da.blockwise(B.ce_grad, ind, x, ind, t, t_ind, cids, cls, merged, merged_ind,
                            *gout_arg, reduction=reduction, dtype=x.dtype,
                            concatenate=True, meta=meta_from_array(x, x.ndim), **opts)
    return loss_rows, grad


def cross_entropy(input, target, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, return_grad=False, grad_output=None,
                  grad_out=None, n_threads=1):
    r"""Cross entropy of Dask logits: :func:`fastxent.cross_entropy` chunk by chunk.

    Parameters
    ----------
    input : dask.array.Array or array_like, shape (C,), (N, C) or (N, C, d1, ..., dK)
        Logits, chunked along any axes, the class axis included. NumPy chunks run the
        NumPy kernels; CuPy chunks (or a CuPy array) run the CuPy backend on the device.
    target : dask.array.Array or array_like
        Class indices (the input's shape without the class axis) or class probabilities
        (the input's shape); rechunked to the input's chunks, and moved to the device
        for CuPy input.
    weight, ignore_index, reduction, label_smoothing, axis, return_grad, grad_output
        As in :func:`fastxent.cross_entropy`. `weight` is small and computed at the call
        when it is a Dask array; `grad_output` may be a Dask array for reduction='none'.
    grad_out : None
        Not supported: the gradient is a new lazy array.
    n_threads : int or None, default 1
        OpenMP threads per task; None uses :func:`fastxent.get_num_threads` in each task.

    Returns
    -------
    loss : dask.array.Array
        0-d for 'mean' and 'sum', the input's shape without the class axis for 'none';
        its chunks are of the input's kind (NumPy or CuPy), as are the gradient's.
    grad : dask.array.Array
        With `return_grad`: the gradient, with the input's shape, dtype and chunks,
        computed in the same tasks as the loss (compute both together with
        ``dask.compute(loss, grad)``).

    Raises
    ------
    TypeError, ValueError
        As :func:`fastxent.cross_entropy`, at the call, for every check that needs only
        shapes and dtypes; TypeError for CuPy data beside a NumPy input.
    IndexError
        When the graph runs, for a class index outside [0, C).

    See Also
    --------
    fastxent.cross_entropy : the in-memory function, the reference for every option.

    Notes
    -----
    With the classes split into chunks :math:`j`, each chunk contributes its log-sum-exp
    :math:`l_j`, merged exactly as :math:`\mathrm{lse} = L + \log \sum_j e^{l_j - L}`,
    :math:`L = \max_j l_j`; the loss follows from per-chunk sums taken relative to
    :math:`l_j`, and the gradient block is :math:`a\,e^{x - \mathrm{lse}}` minus the
    target terms. 'mean' divides the global sum by the global weight total.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> logits = da.from_array(np.array([[3.2, -1.5, 0.8], [0.4, 2.1, -0.1]]), chunks=(1, 2))
    >>> loss, grad = fxd.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> loss, grad = dask.compute(loss, grad)
    >>> round(float(loss), 4)
    1.2762
    >>> grad.round(4)
    array([[-0.0454,  0.0041,  0.0412],
           [ 0.0706,  0.3866, -0.4572]])
    """
    return _class_loss("cross_entropy", input, target, weight, ignore_index, reduction,
                       label_smoothing, axis, return_grad, grad_output, grad_out, n_threads)


def nll_loss(input, target, *, weight=None, ignore_index=-100, reduction="mean", axis=None,
             return_grad=False, grad_output=None, grad_out=None, n_threads=1):
    r"""Negative log-likelihood of Dask log-probabilities: :func:`fastxent.nll_loss` per chunk.

    Parameters
    ----------
    input : dask.array.Array or array_like, shape (C,), (N, C) or (N, C, d1, ..., dK)
        Log-probabilities, chunked along any axes.
    target : dask.array.Array or array_like of int
        Class indices, the input's shape without the class axis.
    weight, ignore_index, reduction, axis, return_grad, grad_output, grad_out, n_threads
        As in :func:`cross_entropy`.

    Returns
    -------
    loss, grad : dask.array.Array
        As in :func:`cross_entropy`.

    Raises
    ------
    TypeError, ValueError, IndexError
        As in :func:`cross_entropy`.

    See Also
    --------
    fastxent.nll_loss

    Notes
    -----
    .. math:: \ell_i = -w_{y_i}\, x_{i y_i}

    A chunk of classes adds the terms of the targets it holds, so chunks along the classes
    combine by a plain sum.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> logp = da.from_array(np.log(np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]])), chunks=1)
    >>> fxd.nll_loss(logp, np.array([0, 0]), reduction="none").compute().round(4)
    array([0.6931, 0.2231])
    """
    return _class_loss("nll_loss", input, target, weight, ignore_index, reduction, 0.0, axis,
                       return_grad, grad_output, grad_out, n_threads)


# --- element-wise losses -----------------------------------------------------------------

def _elementwise_loss(fn, input, target, *, weight=None, pos_weight=None, reduction,
                      return_grad, grad_output, grad_out, n_threads, log_target=False):
    want = _gradient_options(return_grad, grad_output, grad_out)
    nt = _threads(n_threads)
    x = _input("input", input)
    t = _array("target", target, x)
    w = None if weight is None else _array("weight", weight, x)
    pw = None if pos_weight is None else _array("pos_weight", pos_weight, x)
    kl = fn == "kl_div"
    options = {"weight": None, "pos_weight": None, "log_target": V.flag("log_target",
                                                                         log_target)}
    V.elementwise_problem(V.stand_in(x), V.stand_in(t), weight=V.stand_in(w), pos_weight=V.stand_in(pw),
                          reduction_value=reduction, same_shape=not kl,
                          probabilities=fn == "binary_cross_entropy",
                          reductions=("none", "batchmean", "mean", "sum") if kl
                          else V.REDUCTIONS, check_only=True)
    ind = _LETTERS[:x.ndim]

    def aligned(a):
        return None if a is None else (_rechunk(da.broadcast_to(a, x.shape), x.chunks, x),
                                       ind)

    if reduction == "batchmean":
        den = float(x.shape[0]) if x.ndim else 1.0
    else:
        den = float(x.size)
    gout = None
    if want:
        gout = _upstream(grad_output, reduction, x.shape, x.chunks, x)
        if reduction in ("mean", "batchmean"):
            gout = float(B.mean_scale(den, grad_output=gout))
    gout_arg = (gout, ind) if isinstance(gout, da.Array) else (gout, None)
    red = "mean" if reduction == "batchmean" else reduction
    pair = da.blockwise(B.loss_block, ind, x, ind, *aligned(t), None, None,
                        *(aligned(w) or (None, None)), *(aligned(pw) or (None, None)),
                        *gout_arg, fn=fn, options=options, reduction=red, want_grad=want,
                        n_threads=nt, dtype=object, meta=np.empty((0,) * x.ndim, object))
    if reduction == "none":
        loss, grad = _split(pair, x.chunks, x.dtype, x)
    else:
        pieces, grad = _split(pair, tuple((1,) * n for n in x.numblocks), np.float64, x)
        loss = _finish(pieces, den, red, x.dtype, x)
    return (loss, grad) if want else loss


def binary_cross_entropy(input, target, *, weight=None, reduction="mean", return_grad=False,
                         grad_output=None, grad_out=None, n_threads=1):
    r"""Binary cross entropy of Dask probabilities: :func:`fastxent.binary_cross_entropy`.

    Parameters
    ----------
    input : dask.array.Array or array_like of float
        Probabilities in [0, 1], any shape and chunks.
    target : dask.array.Array or array_like
        The input's shape; rechunked to the input's chunks.
    weight : dask.array.Array or array_like, optional
        Broadcast against the input.
    reduction, return_grad, grad_output, grad_out, n_threads
        As in :func:`cross_entropy`.

    Returns
    -------
    loss, grad : dask.array.Array
        0-d or the input's shape; the gradient with the input's chunks.

    Raises
    ------
    TypeError, ValueError
        At the call for shapes and dtypes; when the graph runs for values outside [0, 1].

    See Also
    --------
    fastxent.binary_cross_entropy

    Notes
    -----
    .. math:: \ell = -w \left[y \max(\log p, -100) + (1 - y) \max(\log(1 - p), -100)\right]

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> p = da.from_array(1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5]))), chunks=2)
    >>> round(float(fxd.binary_cross_entropy(p, np.array([1.0, 0.0, 1.0])).compute()), 4)
    0.3048
    """
    return _elementwise_loss("binary_cross_entropy", input, target, weight=weight,
                             reduction=reduction, return_grad=return_grad,
                             grad_output=grad_output, grad_out=grad_out, n_threads=n_threads)


def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, grad_output=None,
                                     grad_out=None, n_threads=1):
    r"""Binary cross entropy of Dask logits: :func:`fastxent.binary_cross_entropy_with_logits`.

    Parameters
    ----------
    input : dask.array.Array or array_like of float
        Logits, any shape and chunks.
    target : dask.array.Array or array_like
        The input's shape.
    weight, pos_weight : dask.array.Array or array_like, optional
        Broadcast against the input.
    reduction, return_grad, grad_output, grad_out, n_threads
        As in :func:`cross_entropy`.

    Returns
    -------
    loss, grad : dask.array.Array
        0-d or the input's shape; the gradient with the input's chunks.

    Raises
    ------
    TypeError, ValueError
        At the call, as :func:`fastxent.binary_cross_entropy_with_logits`.

    See Also
    --------
    fastxent.binary_cross_entropy_with_logits

    Notes
    -----
    .. math:: \ell = w \left[(1 - y)\, x + (1 + (p_w - 1) y) \log(1 + e^{-x})\right]

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> x = da.from_array(np.array([2.0, -1.0, 0.5]), chunks=2)
    >>> y = np.array([1.0, 0.0, 1.0])
    >>> round(float(fxd.binary_cross_entropy_with_logits(x, y).compute()), 4)
    0.3048
    """
    return _elementwise_loss("binary_cross_entropy_with_logits", input, target,
                             weight=weight, pos_weight=pos_weight, reduction=reduction,
                             return_grad=return_grad, grad_output=grad_output,
                             grad_out=grad_out, n_threads=n_threads)


def kl_div(input, target, *, reduction="mean", log_target=False, return_grad=False,
           grad_output=None, grad_out=None, n_threads=1):
    r"""Kullback-Leibler divergence on Dask arrays: :func:`fastxent.kl_div` per chunk.

    Parameters
    ----------
    input : dask.array.Array or array_like of float
        Log-probabilities, any shape and chunks.
    target : dask.array.Array or array_like
        Broadcast to the input.
    reduction : {'mean', 'batchmean', 'sum', 'none'}, default 'mean'
    log_target, return_grad, grad_output, grad_out, n_threads
        As in :func:`fastxent.kl_div` and :func:`cross_entropy`.

    Returns
    -------
    loss, grad : dask.array.Array
        0-d or the input's shape; the gradient with the input's chunks.

    Raises
    ------
    TypeError, ValueError
        At the call, as :func:`fastxent.kl_div`.

    See Also
    --------
    fastxent.kl_div

    Notes
    -----
    .. math:: \ell = t (\log t - x) \quad (0 \text{ where } t = 0)

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent as fx
    >>> import fastxent.dask as fxd
    >>> logq = fx.log_softmax(np.array([[1.0, 2.0, 0.5], [0.1, -0.3, 0.2]]))
    >>> t = np.array([[0.2, 0.5, 0.3], [0.0, 0.6, 0.4]])
    >>> kl = fxd.kl_div(da.from_array(logq, chunks=1), t, reduction="batchmean")
    >>> round(float(kl.compute()), 4)
    0.3163
    """
    return _elementwise_loss("kl_div", input, target, reduction=reduction,
                             return_grad=return_grad, grad_output=grad_output,
                             grad_out=grad_out, n_threads=n_threads, log_target=log_target)


# --- transforms --------------------------------------------------------------------------

def _transform_args(x, axis):
    x = _input("x", x)
    return x, V.transform_input(V.stand_in(x), axis)[1]


def _lse(x, ax, keepdims, dtype, nt):
    return da.reduction(x, functools.partial(B.lse_chunk, n_threads=nt),
                        functools.partial(B.lse_aggregate, out_dtype=dtype),
                        combine=B.lse_combine, axis=ax, keepdims=keepdims, dtype=dtype,
                        concatenate=True,
                        meta=_meta(x, x.ndim - (0 if keepdims else len(_named(ax, x.ndim))),
                                   dtype))


def _named(ax, ndim: int) -> tuple:
    """The axes a transform's validated `ax` reduces: all for None, one for an int."""
    return tuple(range(ndim)) if ax is None else ax if isinstance(ax, tuple) else (ax,)


def logsumexp(x, axis=-1, keepdims=False, *, n_threads=1):
    r"""Log-sum-exp of a Dask array: exact over chunks of the reduced axis.

    Parameters
    ----------
    x : dask.array.Array or array_like of float
        Any shape and chunks.
    axis : int, tuple of ints or None, default -1
        The axis to reduce; a tuple reduces over those axes together, None over every
        element.
    keepdims : bool, default False
        Keep each reduced axis with length 1.
    n_threads : int or None, default 1
        OpenMP threads per task.

    Returns
    -------
    dask.array.Array
        The input's dtype, as :func:`fastxent.logsumexp`.

    Raises
    ------
    TypeError, ValueError
        As :func:`fastxent.logsumexp`, at the call.

    See Also
    --------
    fastxent.logsumexp

    Notes
    -----
    Each chunk's float64 log-sum-exp :math:`l_j` comes from the kernel; a tree of merges
    gives :math:`L + \log \sum_j e^{l_j - L}` with :math:`L = \max_j l_j`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> x = da.from_array(np.array([[1000.0, 1000.0], [0.0, -np.inf]]), chunks=1)
    >>> fxd.logsumexp(x).compute().round(4)
    array([1000.6931,    0.    ])
    """
    keep = V.flag("keepdims", keepdims)
    x, ax = _transform_args(x, axis)
    return _lse(x, ax, keep, x.dtype, _threads(n_threads))


def _transform(name, x, axis, n_threads):
    nt = _threads(n_threads)
    x, ax = _transform_args(x, axis)
    log = name == "log_softmax"
    axes = _named(ax, x.ndim)
    if ax is not None and all(x.numblocks[a] == 1 for a in axes):
        return x.map_blocks(B.transform_block, fn=name, axis=ax, n_threads=nt,
                            dtype=x.dtype, meta=meta_from_array(x, x.ndim))
    lse = _lse(x, ax, ax is not None, np.float64, nt)
    ind = _LETTERS[:x.ndim]
    # The log-sum-exp keeps each reduced axis as one chunk of length 1, which blockwise
    # broadcasts: every block of x along those axes meets the whole of it.
    return da.blockwise(B.shifted_transform, ind, x, ind, lse, "" if ax is None else ind,
                        log=log, dtype=x.dtype, concatenate=True,
                        meta=meta_from_array(x, x.ndim))


def softmax(x, axis=-1, *, n_threads=1):
    r"""Softmax of a Dask array along an axis, exact when the axis is chunked.

    Parameters
    ----------
    x : dask.array.Array or array_like of float
        Any shape and chunks.
    axis : int, tuple of ints or None, default -1
        The class axis; a tuple normalises over those axes together, None over every
        element.
    n_threads : int or None, default 1
        OpenMP threads per task.

    Returns
    -------
    dask.array.Array
        The input's shape, dtype and chunks, as :func:`fastxent.softmax`.

    Raises
    ------
    TypeError, ValueError
        As :func:`fastxent.softmax`, at the call.

    See Also
    --------
    fastxent.softmax

    Notes
    -----
    With one chunk along the axis each block runs :func:`fastxent.softmax`; otherwise
    :math:`e^{x - \mathrm{lse}}` from the merged log-sum-exp of :func:`logsumexp`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> fxd.softmax(da.from_array(np.array([3.2, -1.5, 0.8]), chunks=2)).compute().round(4)
    array([0.9092, 0.0083, 0.0825])
    """
    return _transform("softmax", x, axis, n_threads)


def log_softmax(x, axis=-1, *, n_threads=1):
    r"""Log-softmax of a Dask array along an axis, exact when the axis is chunked.

    Parameters
    ----------
    x : dask.array.Array or array_like of float
        Any shape and chunks.
    axis : int, tuple of ints or None, default -1
        The class axis; a tuple normalises over those axes together, None over every
        element.
    n_threads : int or None, default 1
        OpenMP threads per task.

    Returns
    -------
    dask.array.Array
        The input's shape, dtype and chunks, as :func:`fastxent.log_softmax`.

    Raises
    ------
    TypeError, ValueError
        As :func:`fastxent.log_softmax`, at the call.

    See Also
    --------
    fastxent.log_softmax

    Notes
    -----
    :math:`x - \mathrm{lse}` with the merged log-sum-exp when the axis is chunked.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> fxd.log_softmax(da.from_array(np.array([1000.0, 0.0]), chunks=1)).compute()
    array([    0., -1000.])
    """
    return _transform("log_softmax", x, axis, n_threads)
