"""PyTorch's forward and backward for each fastxent function, returned as NumPy.

The oracle runs in the dtype it is given (float64 for the parity grids: fastxent's float32
results are compared with PyTorch's float64 answer on the same float32 inputs)."""
import math

import numpy as np
import torch
import torch.nn.functional as F


def _leaf(x, dtype=None):
    # A fresh C-ordered copy: some torch backward kernels insist on contiguous tensors.
    t = torch.from_numpy(np.array(x, dtype=dtype, order="C"))
    return t.requires_grad_(True)


def _finish(loss, leaf, grad_output, move=None):
    if grad_output is None:
        grad_output = np.ones(loss.shape)
    loss.backward(torch.from_numpy(np.asarray(grad_output, dtype=np.float64)
                                   ).to(loss.dtype).expand(loss.shape))
    grad = leaf.grad.numpy()
    if move is not None:
        grad = np.moveaxis(grad, 1, move)
    return loss.detach().numpy(), grad


def _class_args(x, target, axis, weight, dtype):
    """Move a caller's class axis to PyTorch's position 1."""
    x = np.asarray(x, dtype=dtype)
    move = None
    if axis is not None and x.ndim > 1 and axis % x.ndim != 1:
        move = axis % x.ndim
        x = np.moveaxis(x, move, 1)
        if target.ndim == x.ndim:
            target = np.moveaxis(target, move, 1)
    leaf = _leaf(x)
    if np.issubdtype(target.dtype, np.integer):
        t = torch.from_numpy(np.asarray(target, dtype=np.int64))
    else:
        t = torch.from_numpy(np.array(target, dtype=dtype))
    w = None if weight is None else torch.from_numpy(np.asarray(weight, dtype=dtype))
    return leaf, t, w, move


def cross_entropy(x, target, *, weight=None, axis=None, grad_output=None, dtype=np.float64,
                  **kw):
    leaf, t, w, move = _class_args(x, target, axis, weight, dtype)
    loss = F.cross_entropy(leaf, t, weight=w, **kw)
    return _finish(loss, leaf, grad_output, move)


def nll_loss(x, target, *, weight=None, axis=None, grad_output=None, dtype=np.float64, **kw):
    leaf, t, w, move = _class_args(x, target, axis, weight, dtype)
    loss = F.nll_loss(leaf, t, weight=w, **kw)
    return _finish(loss, leaf, grad_output, move)


def _tensor(a, dtype):
    return None if a is None else torch.from_numpy(np.array(a, dtype=dtype))


def binary_cross_entropy(x, target, *, weight=None, grad_output=None, dtype=np.float64, **kw):
    leaf = _leaf(x, dtype)
    w = None if weight is None else _tensor(np.broadcast_to(weight, np.shape(x)), dtype)
    loss = F.binary_cross_entropy(leaf, _tensor(target, dtype), weight=w, **kw)
    return _finish(loss, leaf, grad_output)


def binary_cross_entropy_with_logits(x, target, *, weight=None, pos_weight=None,
                                     grad_output=None, dtype=np.float64, **kw):
    leaf = _leaf(x, dtype)
    loss = F.binary_cross_entropy_with_logits(
        leaf, _tensor(target, dtype), weight=_tensor(weight, dtype),
        pos_weight=_tensor(pos_weight, dtype), **kw)
    return _finish(loss, leaf, grad_output)


def kl_div(x, target, *, grad_output=None, dtype=np.float64, **kw):
    leaf = _leaf(x, dtype)
    target = np.broadcast_to(target, np.shape(x))
    loss = F.kl_div(leaf, _tensor(target, dtype), **kw)
    return _finish(loss, leaf, grad_output)


def logsumexp(x, axis=-1, dtype=np.float64):
    """torch.logsumexp, which also takes a tuple of dims (() reduces nothing, as NumPy)."""
    t = torch.from_numpy(np.array(x, dtype=dtype))
    if axis == ():
        return t.numpy()
    return torch.logsumexp(t, dim=axis).numpy()


def _normalised_over(fn, x, axis, dtype):
    """torch's softmax or log_softmax over one dim, or over a tuple of dims taken as one:
    those dims moved last and flattened, the result unflattened and moved back."""
    t = torch.from_numpy(np.array(x, dtype=dtype))
    if not isinstance(axis, tuple):
        return fn(t, dim=axis).numpy()
    dims = sorted(d % t.ndim for d in axis)
    last = list(range(t.ndim - len(dims), t.ndim))
    moved = t.movedim(dims, last)
    kept = moved.shape[:t.ndim - len(dims)]
    flat = moved.reshape(kept + (math.prod(moved.shape[len(kept):]),))
    out = fn(flat, dim=-1).reshape(moved.shape)
    return out.movedim(last, dims).numpy()


def softmax(x, axis=-1, dtype=np.float64):
    return _normalised_over(torch.softmax, x, axis, dtype)


def log_softmax(x, axis=-1, dtype=np.float64):
    return _normalised_over(torch.log_softmax, x, axis, dtype)
