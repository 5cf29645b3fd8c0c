"""What each Dask task runs: one block in, one block out; no Dask here.

These functions are module-level so that Dask pickles them by reference and process workers
import them from the installed fastxent. Each wraps its kernel call in
``_threads.limited(n_threads)``: one OpenMP thread per Dask thread unless the caller asked
for more (thread workers do not inherit ``OMP_NUM_THREADS=1`` the way process workers do).

Blocks are NumPy or CuPy arrays. A CuPy block runs the CuPy backend's kernels (``_gpu``),
the array expressions here run through NumPy's dispatch to CuPy (``__array_function__``,
``__array_ufunc__``), and what they create is made by ``_xp(block)``. The device's value
errors (a class index out of range, a BCE input outside [0, 1]) are raised in the task
itself (``_gpu.errors_now``), as the NumPy kernels raise them, not at a later call.

Layout conventions: ``ax`` is the class axis of the block as the caller passed it; the
class-chunked statistics put their ``k`` numbers where the class axis was, so a block of
statistics has the block's shape with the class axis replaced by ``k``.
"""
from __future__ import annotations

import numpy as np

from . import _axes, _gpu
from . import _reduce
from . import _validate as V
from . import functional as F
from ._gpu import is_gpu_array
from ._threads import limited

_PROBLEMS = {
    "cross_entropy": lambda x, t, o: F._cross_entropy_problem(
        x, t, o["weight"], o["ignore_index"], o["reduction"], o["label_smoothing"], o["axis"]),
    "nll_loss": lambda x, t, o: F._nll_problem(
        x, t, o["weight"], o["ignore_index"], o["reduction"], o["axis"]),
    "binary_cross_entropy": lambda x, t, o: F._bce_problem(
        x, t, o["weight"], o["reduction"]),
    "binary_cross_entropy_with_logits": lambda x, t, o: F._bce_logits_problem(
        x, t, o["weight"], o["pos_weight"], o["reduction"]),
    "kl_div": lambda x, t, o: F._kl_div_problem(
        x, t, o["reduction"], o["log_target"]),
}


# The CuPy backend's options per loss, as the blocks pass them
_GPU_OPTIONS = {
    "cross_entropy": ("weight", "ignore_index", "label_smoothing", "axis"),
    "nll_loss": ("weight", "ignore_index", "axis"),
    "binary_cross_entropy": ("weight",),
    "binary_cross_entropy_with_logits": ("weight", "pos_weight"),
    "kl_div": ("log_target",),
}


def _xp(block):
    """The array module of a block: CuPy for a device block, else NumPy."""
    return _gpu._cp() if is_gpu_array(block) else np


def _targets64(t, n_classes, ignore_index):
    """Class indices as int64 of t's shape, -1 where ignored; IndexError as the NumPy API."""
    if is_gpu_array(t):
        t64 = _gpu._index_targets(t, n_classes, ignore_index).astype(np.int64, copy=False)
        ignored = t64 == ignore_index
        bad = ~ignored & ((t64 < 0) | (t64 >= n_classes))
        if bool(bad.any()):         # waits for the device: the task ends here anyway
            raise V.index_error(n_classes, ignore_index, t[bad][0])
        return _xp(t).where(ignored, -1, t64)
    t64, _ = V._index_target(np.asarray(t), n_classes, ignore_index, t.size, 1)
    return t64.reshape(np.shape(t))


def _chunk_weight(weight, c0, n, xp, ones=False):
    """The class weights of classes c0 .. c0+n-1 (float64, made by `xp`); None or ones
    when unweighted."""
    if weight is None:
        return xp.ones(n) if ones else None
    return xp.asarray(np.asarray(weight, np.float64)[c0:c0 + n])


def _lse64(x, ax, n_threads):
    """The float64 log-sum-exp of a block over axis `ax` (None: every element; a tuple of
    two or more: those axes taken as one)."""
    if isinstance(ax, tuple):
        x, ax = _axes.merge(x, ax)[0], -1
    if is_gpu_array(x):
        return _gpu.logsumexp64(x, ax)[0]
    with limited(n_threads):
        return F._logsumexp64(x, ax)[3]


def _local_classes(t, cids, n_classes, weight, ignore_index):
    """Targets, weights and ignore_index of a block that holds classes ``cids`` only.

    A target outside the block becomes the local ignore value -1, so the block's kernel
    call adds exactly the terms of the classes it holds.
    """
    t64 = _targets64(t, n_classes, ignore_index)
    c0 = int(cids[0])
    inside = (t64 >= c0) & (t64 < c0 + len(cids))
    local = np.where(inside, t64 - c0, -1)
    return local, _chunk_weight(weight, c0, len(cids), _xp(t)), -1


def loss_block(x, t, cids, w, pw, gout, *, fn, options, reduction, want_grad, n_threads,
               n_classes=None, ax=None):
    """One block's loss piece and gradient, ``(piece, grad or None)``.

    `piece` is the block's per-item loss for reduction="none" (with a length-1 class axis
    for class losses, so that class chunks can be added), otherwise the float64 sum of its
    item losses shaped ``(1,) * x.ndim``. `gout` is d total / d loss: the block of
    grad_output for "none", the scalar grad_output for "sum", grad_output / denominator for
    "mean".
    """
    o = dict(options, reduction="none" if reduction == "none" else "sum")
    if w is not None:
        o["weight"] = w
    if pw is not None:
        o["pos_weight"] = pw
    if cids is not None and len(cids) != n_classes:
        t, o["weight"], o["ignore_index"] = _local_classes(t, cids, n_classes, o["weight"],
                                                          o["ignore_index"])
    if is_gpu_array(x):
        with _gpu.errors_now():
            out = getattr(_gpu, fn)(x, t, reduction=o["reduction"], return_grad=want_grad,
                                    grad_output=gout if want_grad else None, grad_out=None,
                                    partial=True,
                                    **{k: o[k] for k in _GPU_OPTIONS[fn]})
    else:
        with limited(n_threads):
            p, kernel = _PROBLEMS[fn](x, t, o)
            gout = np.asarray(gout) if want_grad else None
            if cids is None:
                out = F._run_elementwise(p, kernel, want_grad, gout, None, partial=True)
            else:
                out = F._run_class(p, kernel, want_grad, gout, None, partial=True,
                                   softmax=fn == "cross_entropy")
    loss, grad = out if want_grad else (out, None)
    if reduction != "none":
        loss = np.reshape(loss, (1,) * x.ndim)
    elif cids is not None:
        loss = np.expand_dims(loss, ax)
    return loss, grad


def index_denominator(t, *, n_classes, weight, ignore_index):
    """This block's share of the "mean" denominator, shaped ``(1,) * t.ndim``."""
    t64 = _targets64(t, n_classes, ignore_index)
    if is_gpu_array(t64):
        w = None if weight is None else _gpu._device(weight, np.float64)
        return _gpu.index_denominator(t64, -1, w, n_classes).reshape((1,) * t.ndim)
    w = V._class_weight(weight, n_classes)
    return np.reshape(V.index_denominator(t64, True, w), (1,) * t.ndim)


def mean_scale(denominator, *, grad_output):
    """grad_output / denominator, NaN (without a warning) when the denominator is 0."""
    return np.asarray(_reduce.grad_scale(grad_output, "mean", float(denominator)))


def total(pieces, axis, keepdims):
    """float64 sum for dask.array.reduction; +inf and -inf give NaN without a warning."""
    with np.errstate(invalid="ignore"):
        return np.sum(pieces, axis=axis, keepdims=keepdims, dtype=np.float64)


def finish(total, denominator, *, reduction, out_dtype):
    """The 0-d result of "sum" or "mean" from the float64 total over all blocks, on the
    device for CuPy blocks."""
    out = _reduce.reduce_total(float(total), reduction, float(denominator), out_dtype)
    return _gpu._device(out) if is_gpu_array(total) else out


# --- log-sum-exp over chunks -----------------------------------------------------------

def merge_lse(lse, axis):
    """Exact log-sum-exp of per-chunk log-sum-exps along `axis` (float64).

    ``L + log sum_j exp(l_j - L)`` with ``L = max_j l_j``; a +inf, -inf or NaN maximum is
    the answer itself (all chunks -inf, or an infinite or NaN logit somewhere).
    """
    top = np.max(lse, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        total = top + np.log(np.sum(np.exp(lse - top), axis=axis, keepdims=True))
    return np.squeeze(np.where(np.isfinite(top), total, top), axis=axis)


def lse_chunk(x, axis, keepdims, *, n_threads):
    """float64 log-sum-exp of a block over `axis` (a tuple), as dask.array.reduction asks."""
    whole = len(axis) == x.ndim
    rows = _lse64(x, None if whole else axis[0] if len(axis) == 1 else axis, n_threads)
    if keepdims:
        rows = np.reshape(rows, (1,) * x.ndim) if whole else np.expand_dims(rows, axis)
    return rows


def lse_combine(lse, axis, keepdims):
    """Merge per-chunk log-sum-exps concatenated along `axis` (a tuple)."""
    out = lse
    for a in sorted(axis, reverse=True):
        out = merge_lse(out, a) if not keepdims else np.expand_dims(merge_lse(out, a), a)
    return out


def lse_aggregate(lse, axis, keepdims, *, out_dtype):
    return lse_combine(lse, axis, keepdims).astype(out_dtype)


def shifted_transform(x, lse, *, log):
    """softmax or log_softmax of a chunk from its rows' global log-sum-exp (broadcast).

    A row whose log-sum-exp is not finite (all -inf, or holding +inf or NaN) is NaN, as
    the NumPy API gives.
    """
    with np.errstate(invalid="ignore"):
        z = np.where(np.isfinite(lse), x - lse, np.nan)
        out = z if log else np.exp(z)
    return out.astype(x.dtype, copy=False)


def transform_block(x, *, fn, axis, n_threads):
    """The NumPy API's softmax or log_softmax of a block that holds whole rows."""
    with limited(n_threads):
        return getattr(F, fn)(x, axis=axis)


# --- cross_entropy with the classes split over chunks ------------------------------------

def ce_stats(x, t, cids, *, n_classes, weight, ignore_index, label_smoothing, ax, probs,
             n_threads):
    """Per-row statistics of one class chunk, shaped like the block with ``k`` at `ax`.

    Index targets (k = 4): the chunk's log-sum-exp ``l``; whether it holds the target;
    ``x_y - l`` for the target if it does; ``sum_c w_c (l - x_c)``.
    Probability targets (k = 3): ``l``; ``sum_c w_c q'_c``; ``sum_c w_c q'_c (l - x_c)``,
    the chunk's own cross entropy, from the kernel.
    Differences from ``l`` rather than raw sums keep huge logits free of cancellation.
    """
    c0, cb = int(cids[0]), len(cids)
    w = _chunk_weight(weight, c0, cb, _xp(x), ones=True)
    lse = _lse64(x, ax, n_threads)
    xm = np.moveaxis(x, ax, -1)
    # One float64 temporary of the block's size: d = -log p_c relative to this chunk,
    # +inf across a row of the chunk that is all -inf.
    with np.errstate(invalid="ignore"):
        d = np.subtract(lse[..., None], xm, dtype=np.float64)
        d[np.isneginf(lse)] = np.inf
        if probs:
            q = _smoothed(t, ax, label_smoothing, n_classes)
            mass = q @ w
            d *= q
            return _stack((lse, mass, d @ w), ax)
        t64 = _targets64(t, n_classes, ignore_index)
        inside = (t64 >= c0) & (t64 < c0 + cb)
        y = np.where(inside, t64 - c0, 0)
        picked = np.take_along_axis(xm, y[..., None], axis=-1)[..., 0]
        shift = np.where(inside, picked - lse, 0.0)
        smooth = d @ w if label_smoothing else np.zeros_like(lse)
    return _stack((lse, inside.astype(np.float64), shift, smooth), ax)


def _smoothed(t, ax, eps, n_classes):
    """Probability targets mixed with the uniform distribution, class axis last, float64."""
    q = np.moveaxis(t, ax, -1).astype(np.float64)
    if eps:
        q *= 1 - eps
        q += eps / n_classes
    return q


def _stack(stats, ax):
    return np.moveaxis(np.stack(stats, axis=-1), -1, ax)


def ce_merge(stats, t, *, n_classes, n_chunks, chunk_weights, weight, ignore_index,
             label_smoothing, ax, probs):
    """Merge the class chunks' statistics into per-row float64 ``(loss, lse, a)`` at `ax`.

    ``a`` is the coefficient of the softmax in the row's gradient (before grad_output):
    ``(1-eps) w_y + eps/C * sum_c w_c`` for index targets, ``sum_c w_c q'_c`` for
    probability targets.
    """
    s = np.moveaxis(stats, ax, -1)
    s = s.reshape(s.shape[:-1] + (n_chunks, s.shape[-1] // n_chunks))
    l_j = s[..., 0]
    lse = merge_lse(l_j, -1)
    eps, C = label_smoothing, n_classes
    with np.errstate(invalid="ignore", over="ignore"):
        gap = np.where(np.isneginf(l_j), 0.0, lse[..., None] - l_j)    # lse - l_j, >= 0
        if probs:
            mass = s[..., 1].sum(-1)
            loss = np.where(np.isfinite(lse), (s[..., 1] * gap + s[..., 2]).sum(-1), np.nan)
            a = mass
        else:
            t64 = _targets64(t, n_classes, ignore_index)
            valid = t64 >= 0
            w = _chunk_weight(weight, 0, C, _xp(stats), ones=True)
            wy = np.where(valid, w[np.where(valid, t64, 0)], 0.0)
            nll = (s[..., 1] * (gap - s[..., 2])).sum(-1)
            loss = (1 - eps) * wy * nll
            a = (1 - eps) * wy
            if eps:
                smooth = (_xp(stats).asarray(chunk_weights) * gap + s[..., 3]).sum(-1)
                loss = loss + eps / C * smooth
                a = a + eps / C * w.sum()
            # A row holding +inf or NaN, or only -inf, has no softmax: NaN, as PyTorch.
            loss = np.where(valid, np.where(np.isfinite(lse), loss, np.nan), 0.0)
            a = np.where(valid, a, 0.0)
    return _stack((loss, lse, a), ax)


def ce_grad(x, t, cids, merged, gout, *, n_classes, weight, ignore_index, label_smoothing,
            ax, probs, reduction):
    """One class chunk's gradient: ``s * (a p - w * e_y (1-eps) - eps/C w)`` (index targets)
    or ``s * (a p - w * q')`` (probabilities), with ``p = exp(x - lse)`` and ``s`` the
    upstream scale of the row."""
    c0, cb = int(cids[0]), len(cids)
    eps, C = label_smoothing, n_classes
    xp = _xp(x)
    w = _chunk_weight(weight, c0, cb, xp, ones=True)
    m = np.moveaxis(merged, ax, -1)
    lse, a = m[..., 1:2], m[..., 2:3]
    scale = xp.asarray(gout, dtype=np.float64)
    if reduction == "none":
        scale = scale[..., None]
    xm = np.moveaxis(x, ax, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        g = xp.empty(xm.shape, np.float64)         # the temporary, C-ordered
        np.subtract(xm, lse, out=g)
        np.exp(g, out=g)
        g *= a
        if probs:
            q = _smoothed(t, ax, eps, C)
            q *= w
            g -= q
        else:
            t64 = _targets64(t, n_classes, ignore_index)
            valid = t64 >= 0
            if eps:
                g -= np.where(valid, eps / C, 0.0)[..., None] * w
            # The target's own term, one element per row that has its class here.
            flat = g.reshape(-1, cb)
            rows = np.flatnonzero((t64 >= c0) & (t64 < c0 + cb))
            cols = t64.reshape(-1)[rows] - c0
            flat[rows, cols] -= (1 - eps) * w[cols]
            # An ignored row stays 0 even when the scale is NaN ("mean" of nothing).
            scale = np.where(valid[..., None], scale, 1.0)
        g *= scale
        _two_step_nans(g, scale, probs or eps > 0, None if probs else (rows, cols))
        g[~np.isfinite(lse[..., 0])] = np.nan      # even where ignored, as PyTorch
    return np.moveaxis(g, -1, ax).astype(x.dtype)


def _two_step_nans(g, scale, whole_rows, targets):
    """PyTorch's NaNs in the rows of an infinite scale (docs/nonfinite.md): its backward in
    two steps makes inf - inf at the target, and across the row with label smoothing or
    probability targets. `targets`: the flat rows and columns of the targets in this chunk."""
    infinite = np.broadcast_to(np.isinf(scale), g.shape[:-1] + (1,))
    if not infinite.any():
        return
    if whole_rows:
        g[np.broadcast_to(infinite, g.shape)] = np.nan
    else:
        rows, cols = targets
        hit = infinite.reshape(-1)[rows]
        g.reshape(-1, g.shape[-1])[rows[hit], cols[hit]] = np.nan
