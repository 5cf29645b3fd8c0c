"""cross_entropy's gradient in rows whose scale is infinite, as PyTorch's backward gives it.

PyTorch differentiates ``cross_entropy`` in two steps: ``g``, the gradient with respect to
the log-probabilities, then the softmax's backward ``g - p * sum(g)``. With an infinite
upstream gradient, ``g`` is infinite and the second step makes ``inf - inf``: NaN at the
target class, NaN wherever ``p = 0`` (``0 * inf``), and with label smoothing or probability
targets NaN across the row. The fused kernels form ``scale * (p - y)`` in one step, which
gives -inf at the target instead. So for these rows alone, :func:`plan` notes them before
the kernel runs and :func:`apply` writes the two steps, computed in float64, over the
kernel's rows afterwards.

A finite scale never comes here; an infinite one is an upstream gradient of ±inf, or a
"mean" whose denominator is so small that 1 / denominator overflows.
"""
from __future__ import annotations

import numpy as np

# rows are recomputed in groups of about this many logits, so that the float64 temporaries
# stay small whatever the problem's size
_GROUP = 1 << 16


def plan(p, gscale, g3):
    """The counted rows of problem `p` whose scale in `gscale` (outer, inner) is infinite,
    as ``(outer index, inner index, logits or None)``, or None when there is none.

    Ignored rows are left out: no scale reaches them, in PyTorch or in the kernels. When
    the gradient buffer `g3` is the logits themselves (an in-place gradient), the rows'
    logits are copied now, before the kernel writes over them.
    """
    counted = np.isinf(gscale)
    if not p.probs:
        counted &= p.target != -1
    o, i = np.nonzero(counted)
    if not o.size:
        return None
    saved = p.x[o, :, i] if np.may_share_memory(g3, p.x) else None
    return o, i, saved


def apply(planned, p, gscale, g3) -> None:
    """Write the planned rows' two-step gradients into the kernel's (outer, C, inner)
    gradient buffer `g3`."""
    if planned is None:
        return
    o, i, saved = planned
    step = max(1, _GROUP // max(1, p.x.shape[1]))
    with np.errstate(all="ignore"):
        for a in range(0, len(o), step):
            oo, ii = o[a:a + step], i[a:a + step]
            x = p.x[oo, :, ii] if saved is None else saved[a:a + step]
            g3[oo, :, ii] = _two_steps(p, oo, ii, x, gscale[oo, ii][:, None])


def _two_steps(p, o, i, x, u):
    """PyTorch's gradient of rows `x` (k, C) at `(o, i)` with scales `u` (k, 1)."""
    C = p.x.shape[1]
    eps = p.label_smoothing
    w = p.weight if p.weight.size else np.ones(C)
    # the package's own log-softmax (functional imports this module, hence the late import);
    # its non-finite rows are PyTorch's (docs/nonfinite.md)
    from .functional import log_softmax
    log_p = log_softmax(x.astype(np.float64), axis=1)
    if p.probs:
        q = p.target[o, :, i].astype(np.float64)
        if eps > 0:
            q = q * (1.0 - eps) + eps / C
        g = -(u * w) * q
    else:
        # (1 - eps) * nll_loss + (eps / C) * the smoothing term, as PyTorch adds them;
        # without smoothing PyTorch has no second term (and no 0 * inf from it)
        g = -((u * (eps / C)) * w) if eps > 0 else np.zeros_like(log_p)
        y = p.target[o, i]
        g[np.arange(len(o)), y] += -(w[y] * (u[:, 0] * (1.0 - eps)))
    return g - np.exp(log_p) * g.sum(axis=1, keepdims=True)
