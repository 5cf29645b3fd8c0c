"""cross_entropy's gradient in rows whose scale is infinite, as PyTorch's backward gives it.

PyTorch differentiates ``cross_entropy`` in two steps: ``g``, the gradient with respect to
the log-probabilities, then the softmax's backward ``g - p * sum(g)``. With an infinite
upstream gradient, ``g`` is infinite and the second step makes ``inf - inf``: NaN at the
target class, NaN wherever ``p = 0`` (``0 * inf``), and with label smoothing or probability
targets NaN across the row. The fused kernels form ``scale * (p - y)`` in one step, which is
finite-signed there, so for these rows alone :func:`plan` computes the two steps in float64
and :func:`apply` writes them over the kernel's. The rows are read before the kernel runs:
an in-place gradient overwrites the logits.

A finite scale never comes here; an infinite one is an upstream gradient of ±inf, or a
"mean" whose denominator is so small that 1 / denominator overflows.
"""
from __future__ import annotations

import numpy as np


def plan(p, gscale):
    """The two-step gradient of each counted row of problem `p` whose scale in `gscale`
    (outer, inner) is infinite: ``((outer index, inner index), rows (k, C))``, or None.
    Ignored rows are left out: no scale reaches them, in PyTorch or in the kernels.
    """
    counted = np.isinf(gscale)
    if not p.probs:
        counted &= p.target != -1
    o, i = np.nonzero(counted)
    if not o.size:
        return None
    return (o, i), _two_steps(p, o, i, gscale[o, i][:, None])


def _two_steps(p, o, i, u):
    C = p.x.shape[1]
    eps = p.label_smoothing
    w = p.weight if p.weight.size else np.ones(C)
    with np.errstate(all="ignore"):
        x = p.x[o, :, i].astype(np.float64)                       # (k, C)
        m = x.max(axis=1, keepdims=True)
        log_p = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        if p.probs:
            q = p.target[o, :, i].astype(np.float64)
            if eps > 0:
                q = q * (1.0 - eps) + eps / C
            g = -(u * w) * q
        else:
            # (1 - eps) * nll_loss + (eps / C) * the smoothing term, as PyTorch adds them;
            # without smoothing PyTorch has no second term (no 0 * inf from it)
            g = -((u * (eps / C)) * w) if eps > 0 else np.zeros_like(x)
            y = p.target[o, i]
            g[np.arange(len(o)), y] += -(w[y] * (u[:, 0] * (1.0 - eps)))
        return g - np.exp(log_p) * g.sum(axis=1, keepdims=True)


def apply(planned, g3) -> None:
    """Write the planned rows into the kernel's (outer, C, inner) gradient buffer."""
    if planned is not None:
        (o, i), rows = planned
        with np.errstate(all="ignore"):
            g3[o, :, i] = rows
