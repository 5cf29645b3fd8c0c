"""cross_entropy and nll_loss: loss only, fused loss + gradient, and into grad_out."""
import numpy as np

import fastxent as fx

from .common import make_benchmark


def _fused_out(x, t):
    g = np.empty_like(x)
    return lambda: fx.cross_entropy(x, t, return_grad=True, grad_out=g)


TABLE = {
    "CrossEntropy": (lambda x, t: lambda: fx.cross_entropy(x, t), False),
    "CrossEntropyGrad": (lambda x, t: lambda: fx.cross_entropy(x, t, return_grad=True), True),
    "CrossEntropyGradOut": (_fused_out, True),
    "CrossEntropySmoothedWeighted": (
        lambda x, t: lambda: fx.cross_entropy(
            x, t, weight=np.linspace(0.5, 2, x.shape[1]), label_smoothing=0.1,
            return_grad=True), True),
    "NLLLoss": (lambda x, t: lambda: fx.nll_loss(x, t), False),
    "NLLLossGrad": (lambda x, t: lambda: fx.nll_loss(x, t, return_grad=True), True),
}

for _name, (_build, _writes) in TABLE.items():
    globals()[_name] = make_benchmark(_name, _build, writes_gradient=_writes,
                                        module=__name__)
