"""logsumexp, softmax and log_softmax along the class axis."""
import fastxent as fx

from .common import make_benchmark

TABLE = {
    "LogSumExp": (lambda x, t: lambda: fx.logsumexp(x, axis=1), False),
    "Softmax": (lambda x, t: lambda: fx.softmax(x, axis=1), True),
    "LogSoftmax": (lambda x, t: lambda: fx.log_softmax(x, axis=1), True),
}

for _name, (_build, _writes) in TABLE.items():
    globals()[_name] = make_benchmark(_name, _build, writes_gradient=_writes,
                                        module=__name__)
