"""binary_cross_entropy and binary_cross_entropy_with_logits, element-wise."""
import numpy as np

import fastxent as fx

from .common import make_benchmark


def _labels(x):
    return (np.asarray(x) > 0).astype(x.dtype)


def _probabilities(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=x.dtype)))


TABLE = {
    "BCEWithLogits": (lambda x, t: (lambda y: lambda: fx.binary_cross_entropy_with_logits(
        x, y))(_labels(x)), False),
    "BCEWithLogitsGrad": (lambda x, t: (lambda y, pw: lambda: fx.binary_cross_entropy_with_logits(
        x, y, pos_weight=pw, return_grad=True))(_labels(x), np.full(x.shape[1], 2.0)), True),
    "BCE": (lambda x, t: (lambda p, y: lambda: fx.binary_cross_entropy(p, y))(
        _probabilities(x), _labels(x)), False),
    "BCEGrad": (lambda x, t: (lambda p, y: lambda: fx.binary_cross_entropy(
        p, y, return_grad=True))(_probabilities(x), _labels(x)), True),
}

for _name, (_build, _writes) in TABLE.items():
    globals()[_name] = make_benchmark(_name, _build, writes_gradient=_writes,
                                        module=__name__)
