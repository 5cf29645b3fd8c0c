"""Mean cross entropy (loss, and loss + gradient) by backend: fastxent and its peers.

A backend that is not installed is skipped (SkipNotImplemented), as numpy's and scipy's
suites do for optional dependencies.
"""
import importlib.util

import numpy as np

import fastxent as fx
from fastxent._bench import numpy_cross_entropy

from .common import SkipNotImplemented, logits, targets

BACKENDS = ["fastxent", "numpy", "torch", "sklearn"]


def _call(backend, x, t, grad):
    if backend == "fastxent":
        return lambda: fx.cross_entropy(x, t, return_grad=grad)
    if backend == "numpy":
        return lambda: numpy_cross_entropy(x, t, grad=grad)
    if importlib.util.find_spec(backend) is None:
        raise SkipNotImplemented(f"{backend} is not installed")
    if backend == "torch":
        import torch
        import torch.nn.functional as F
        xt, tt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(t)
        if not grad:
            return lambda: F.cross_entropy(xt, tt)
        return lambda: F.cross_entropy(xt.detach().requires_grad_(True), tt).backward()
    from sklearn._loss.loss import HalfMultinomialLoss
    loss, tf = HalfMultinomialLoss(n_classes=x.shape[1]), t.astype(x.dtype)
    if not grad:
        return lambda: loss.loss(tf, x, n_threads=fx.get_num_threads()).mean()
    return lambda: loss.loss_gradient(tf, x, n_threads=fx.get_num_threads())


class Peers:
    params = [["65536x10", "8192x1000", "512x32000"], ["fwd", "fb"], BACKENDS]
    param_names = ["shape", "mode", "backend"]
    timeout = 300

    def setup(self, shape, mode, backend):
        x = logits(shape, "float32", "C")
        self.call = _call(backend, x, targets(shape), mode == "fb")
        self.call()

    def time_cross_entropy(self, shape, mode, backend):
        self.call()
