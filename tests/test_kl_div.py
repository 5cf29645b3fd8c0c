"""kl_div against torch.nn.functional.kl_div."""
import itertools

import numpy as np
import pytest

import fastxent as fx

import oracle
from cases import assert_close, upstream
from layouts import LAYOUTS, with_layout


@pytest.mark.parametrize("shape,tshape,reduction,log_target,up", list(itertools.product(
    [(3,), (4, 3), (2, 3, 5), (0, 3), (5000,)], ("same", "last"),
    ("none", "mean", "sum", "batchmean"), (False, True), (False, True))))
@pytest.mark.filterwarnings("ignore::UserWarning")    # torch's warning about "mean"
def test_options(shape, tshape, reduction, log_target, up):
    rng = np.random.default_rng(8)
    x = fx.log_softmax(rng.standard_normal(shape)) if shape[-1] else np.zeros(shape)
    t = rng.random(shape if tshape == "same" else shape[-1:])
    t[..., 0] = 0.0                                   # xlogy(0, 0) = 0
    if log_target:
        t = np.log(t + 0.1)
    go = upstream(rng, reduction, shape) if up else None
    kw = dict(reduction=reduction, log_target=log_target)
    ref = oracle.kl_div(x, t, grad_output=go, **kw)
    loss, grad = fx.kl_div(x, t, return_grad=True, grad_output=go, **kw)
    assert_close(loss, ref[0], np.float64)
    assert_close(grad, ref[1], np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_layouts_and_dtypes(dtype, layout):
    rng = np.random.default_rng(1)
    x = with_layout(fx.log_softmax(rng.standard_normal((6, 5, 4))).astype(dtype), layout)
    t = rng.random((6, 5, 4))
    ref = oracle.kl_div(np.asarray(x, np.float64), t.astype(dtype), reduction="batchmean")
    got = fx.kl_div(x, t.astype(dtype), reduction="batchmean", return_grad=True)
    assert_close(got[0], ref[0], dtype)
    assert_close(got[1], ref[1], dtype)


def test_seed_values():
    x = fx.log_softmax(np.array([[1, 2, 0.5], [0.1, -0.3, 0.2]]))
    t = np.array([[0.2, 0.5, 0.3], [0, 0.6, 0.4]])
    np.testing.assert_allclose(fx.kl_div(x, t, reduction="sum"), 0.6325317585873742,
                               rtol=1e-12)
    np.testing.assert_allclose(fx.kl_div(x, t, reduction="batchmean"), 0.3162658792936871,
                               rtol=1e-12)
    np.testing.assert_allclose(fx.kl_div(x, t), 0.10542195976456237, rtol=1e-12)
    # batchmean of a 1-d input divides by its length, as PyTorch
    np.testing.assert_allclose(fx.kl_div(x[0], t[0], reduction="batchmean"),
                               fx.kl_div(x[0], t[0], reduction="sum") / 3, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("log_target,t_values", [
    (False, [0.0, -0.0, 1e-310, 1e-45, 0.5, 1.0, 2.0, np.inf, np.nan, -0.3, 1e-30, 0.75, 3e-8]),
    (True, [-np.inf, 0.0, -0.0, -1e-310, -745.0, -800.0, -3.0, -0.5, np.nan, -1e-7, -40.0,
            -2.5, -103.0]),
    (True, [-np.inf, 0.0, 0.5, -745.0, 710.0, -3.0, np.inf, -0.5, np.nan, 2.0, -40.0, -2.5,
            30.0]),            # positive log targets: the element loop's exp
])
def test_extremes_in_vector_runs_match_torch(dtype, log_target, t_values):
    """The 8-lane loop sees every extreme at every lane position, and so does the tail."""
    x_values = [-1.0, -np.inf, -0.5, -2.0, -0.0, -30.0, -3.0, 0.7, -1e-3, -np.inf, -5.0,
                -0.25, -9.0]
    reps = 9               # 117 elements: 14 full vectors and a tail; each copy rotated by one
    x, t = (np.concatenate([np.roll(v, k) for k in range(reps)]).astype(dtype)
            for v in (x_values, t_values))
    ref = oracle.kl_div(np.asarray(x, np.float64), np.asarray(t, np.float64),
                        reduction="none", log_target=log_target, dtype=np.float64)
    loss, grad = fx.kl_div(x, t, reduction="none", log_target=log_target, return_grad=True)
    assert_close(loss, ref[0], dtype)
    assert_close(grad, ref[1], dtype)
    assert_close(fx.kl_div(x, t, reduction="sum", log_target=log_target), np.sum(ref[0]), dtype)
