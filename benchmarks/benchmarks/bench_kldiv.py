"""kl_div on log-probabilities."""
import fastxent as fx

from .common import make_benchmark


def _build(grad):
    def build(x, t):
        logq, p = fx.log_softmax(x), fx.softmax(x[::-1])
        return lambda: fx.kl_div(logq, p, reduction="batchmean", return_grad=grad)
    return build


TABLE = {"KLDiv": (_build(False), False), "KLDivGrad": (_build(True), True)}

for _name, (_build_fn, _writes) in TABLE.items():
    globals()[_name] = make_benchmark(_name, _build_fn, writes_gradient=_writes,
                                        module=__name__)
