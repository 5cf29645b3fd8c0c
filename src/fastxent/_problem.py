"""The canonical problems that _validate.py builds and the kernels consume.

They are read-only by convention, not frozen: a frozen dataclass's constructor costs more
than a (16, 10) kernel call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class ClassProblem:
    """A class-axis problem as one 3-D view: the logits are ``x[outer, C, inner]``.

    ``(N, C)`` is ``(N, C, 1)``, ``(N, C, d1..dK)`` is ``(N, C, d1*...*dK)`` and class-last
    ``(N, L, C)`` with ``axis=-1`` is ``(N*L, C, 1)``; the views keep the caller's strides
    wherever they merge (see ``_validate.class_view``).
    """

    x: np.ndarray            # (outer, C, inner) in the compute dtype (float32 or float64)
    target: np.ndarray       # int64 (outer, inner), -1 where ignored; or (outer, C, inner)
    probs: bool              # probability targets
    weight: np.ndarray       # float64 (C,), or (0,) when there is no class weight
    label_smoothing: float
    reduction: str
    shape: tuple             # the input's shape
    loss_shape: tuple        # the input's shape without the class axis
    loss_dtype: np.dtype     # dtype of the returned loss
    grad_dtype: np.dtype     # dtype of the returned gradient (the input's)
    denominator: float       # what reduction="mean" divides by


@dataclass(slots=True)
class ElementwiseProblem:
    """An element-wise problem as (d0, d1, d2) views of equal shape.

    The caller's axes are permuted into memory order and merged where every operand allows
    (``_validate.elementwise_views``); ``full`` maps a (d0, d1, d2) result back.
    """

    x: np.ndarray            # (d0, d1, d2) input in the compute dtype
    target: np.ndarray       # (d0, d1, d2) target in the compute dtype (may be broadcast)
    weight: np.ndarray       # (d0, d1, d2) float64, broadcast (ones when absent)
    pos_weight: np.ndarray | None
    reduction: str
    shape: tuple             # the input's shape (also the shape of reduction="none")
    permuted_shape: tuple    # the input's shape with its axes in memory order
    perm: tuple              # the permutation applied
    loss_dtype: np.dtype
    grad_dtype: np.dtype
    denominator: float

    def full(self, a3: np.ndarray) -> np.ndarray:
        return from_views(a3, self.perm, self.permuted_shape)

    def view3(self, a: np.ndarray) -> np.ndarray:
        return to_views(a, self.perm, self.x.shape)


def from_views(a3, perm: tuple, permuted_shape: tuple):
    """View a (d0, d1, d2) C-ordered result of ``_validate.elementwise_views``' operands with
    the input's shape and axis order: laid out in memory as the input is. NumPy or CuPy."""
    a = a3.reshape(permuted_shape)
    if perm == tuple(range(a.ndim)):     # C order: argsort alone costs 1 us
        return a
    return a.transpose(tuple(int(d) for d in np.argsort(perm)))


def to_views(a, perm: tuple, shape3: tuple):
    """The (d0, d1, d2) view of an array of the input's shape (a copy if it cannot merge)."""
    return a.transpose(perm).reshape(shape3)
