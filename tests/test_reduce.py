"""The reduction helpers: the fixed-order sum of the row losses and the casts of the result."""
import math

import numpy as np
import pytest
import torch

import fastxent as fx
from fastxent._cpu._xent import row_total, target_range


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 1000, 100_003])
def test_row_total_is_an_accurate_sum(n):
    rng = np.random.default_rng(n)
    rows = rng.standard_normal((n, 1)) * 10.0 ** rng.integers(-6, 6, (n, 1))
    exact = math.fsum(rows.ravel())
    got = row_total(rows, 1)
    assert abs(got - exact) <= 1e-13 * max(1.0, np.abs(rows).sum())
    # the (outer, inner) shape does not change the order: the rows are summed flat
    if n and n % 2 == 0:
        assert row_total(rows.reshape(2, n // 2), 1) == got


# Counts around the pairwise tree's leaves (128) and splits, and thread counts that are not
# powers of two or exceed the 64 parts.
@pytest.mark.parametrize("n", [1, 129, 255, 256, 257, 1000, 4103, 65_536, 100_003])
@pytest.mark.parametrize("n_threads", [2, 3, 4, 7, 64, 65])
def test_row_total_on_threads_is_the_one_thread_sum_bit_for_bit(n, n_threads):
    rng = np.random.default_rng(n)
    # values of wildly different sizes: any other order of additions rounds differently
    rows = rng.standard_normal((n, 1)) * 10.0 ** rng.integers(-12, 12, (n, 1))
    assert row_total(rows, n_threads).hex() == row_total(rows, 1).hex()


def test_row_total_with_infinities_of_both_signs_is_nan_without_a_warning():
    rows = np.array([[1.0], [np.inf], [-np.inf]] * 50)
    assert np.isnan(row_total(rows, 1))     # pytest turns a RuntimeWarning into an error
    assert np.isnan(row_total(rows, 2))


def test_a_sum_of_nll_rows_of_both_signs_is_nan_as_in_torch():
    x = np.array([[np.inf, 0.0], [-np.inf, 0.0]], np.float32)
    t = np.array([0, 0])
    ref = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(t),
                                       reduction="sum")
    assert math.isnan(ref.item())
    assert np.isnan(fx.nll_loss(x, t, reduction="sum"))


def test_a_float32_sum_past_the_largest_float_is_inf_without_a_warning():
    x = np.full((2, 3), -3e38, np.float32)
    t = np.array([0, 1])
    ref = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(t),
                                       reduction="sum")
    got = fx.nll_loss(x, t, reduction="sum")
    assert got.dtype == np.float32 and got == ref.item() == np.inf


@pytest.mark.parametrize("values", [[3], [5, -1, 9, 2], list(range(100, -100, -3))])
@pytest.mark.parametrize("n_threads", [1, 2, 3, 64, 65])
def test_target_range(values, n_threads):
    t = np.array(values, np.int64)
    assert target_range(t, n_threads) == (t.min(), t.max())


@pytest.mark.parametrize("where", [0, 1, 4999, 5000, 9998, 9999])
@pytest.mark.parametrize("n_threads", [2, 3, 7])
def test_target_range_on_threads_finds_an_extreme_in_any_part(where, n_threads):
    t = np.full(10_000, 5, np.int64)
    t[where] = -7
    t[-1 - where] = 11
    assert target_range(t, n_threads) == (-7, 11)


def test_a_uint64_target_that_wraps_to_ignore_index_is_rejected():
    t = np.array([0, 2**64 - 100], np.uint64)      # -100 only after a wrapping cast
    with pytest.raises(IndexError, match=str(2**64 - 100)):
        fx.cross_entropy(np.zeros((2, 3)), t)


@pytest.mark.parametrize("shape", [(40, 10), (33, 70)])
def test_a_grad_output_with_strides_between_elements(shape):
    """reduction='none' with an upstream gradient whose stride is not a whole float64 (a
    view into a byte buffer) gives the same gradient as its contiguous copy."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    t = rng.integers(0, shape[1], shape[0])
    raw = np.zeros(12 * shape[0] + 8, np.uint8)
    go = np.ndarray((shape[0],), np.float64, buffer=raw, strides=(12,))
    go[...] = rng.uniform(0.5, 2.0, shape[0])
    _, got = fx.cross_entropy(x, t, reduction="none", return_grad=True, grad_output=go)
    _, ref = fx.cross_entropy(x, t, reduction="none", return_grad=True,
                              grad_output=go.copy())
    np.testing.assert_array_equal(got, ref)
