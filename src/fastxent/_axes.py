"""Several axes taken as one: the transforms' tuple ``axis``.

The axes move last, in their order in the array, and merge into one (a reshape, which
copies only where the strides cannot express the merged axis); the transform runs over
that one axis, and its result goes back to the input's axis order. Written on ``transpose``
and ``reshape`` alone, so NumPy and CuPy arrays (and Dask blocks of either) take the same
path.
"""
from __future__ import annotations

import math


def _order(ndim: int, axes: tuple) -> tuple:
    return tuple(d for d in range(ndim) if d not in axes) + axes


def merge(x, axes: tuple):
    """`x` with `axes` (sorted, distinct) moved last and merged into one axis.

    Returns the merged array and the shape of `x` with the axes moved last, which
    :func:`restore` needs. ``axes=()`` appends an axis of length 1: each element is its own
    row, as NumPy's ``axis=()``.
    """
    moved = x.transpose(_order(x.ndim, axes))
    kept = moved.shape[:x.ndim - len(axes)]
    return moved.reshape(kept + (math.prod(moved.shape[len(kept):]),)), moved.shape


def restore(out, moved_shape: tuple, axes: tuple):
    """A transform's result over the merged axis, back in the input's shape and axis order."""
    order = _order(len(moved_shape), axes)
    inverse = tuple(order.index(d) for d in range(len(order)))
    return out.reshape(moved_shape).transpose(inverse)


def reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    """The shape of a reduction over `axes`: without them, or with each of length 1."""
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)
