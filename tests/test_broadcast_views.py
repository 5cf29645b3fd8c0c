"""The element-wise losses' operand plumbing (_validate.py): broadcasting and the merged views,
whose fast paths for small calls must give what NumPy's general functions give."""
import itertools

import numpy as np
import pytest

from fastxent import _validate as V

SHAPES = [(), (1,), (5,), (3, 4), (0, 4), (2, 1, 5), (2, 3, 5)]


def _candidates(shape):
    # every shape NumPy might broadcast to `shape`, and some it cannot
    out = {(), (7,), (2, 7)}
    for k in range(len(shape) + 1):
        tail = shape[len(shape) - k:]
        for ones in itertools.product([False, True], repeat=k):
            out.add(tuple(1 if o else n for o, n in zip(ones, tail)))
    out.add((1,) + tuple(shape))
    return sorted(out)


@pytest.mark.parametrize("shape", SHAPES)
def test_broadcastable_is_numpys_rule(shape):
    for a_shape in _candidates(shape):
        a = np.zeros(a_shape)
        try:
            expected = np.broadcast_shapes(a_shape, shape) == shape
        except ValueError:
            expected = False
        if expected:
            V._broadcastable("weight", a, shape)
        else:
            with pytest.raises(ValueError, match="weight must broadcast"):
                V._broadcastable("weight", a, shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["C", "strided"])
def test_broadcast_is_numpys(shape, layout):
    rng = np.random.default_rng(0)
    for a_shape in _candidates(shape):
        try:
            if np.broadcast_shapes(a_shape, shape) != shape:
                continue
        except ValueError:
            continue
        a = rng.random(a_shape)
        if layout == "strided":     # every other element of an array twice the size
            a = rng.random(tuple(2 * n for n in a_shape))[(slice(None, None, 2),) * len(a_shape)]
            a = np.asarray(a)       # a 0-d view comes back as a scalar
        b = V.broadcast(a, shape)
        np.testing.assert_array_equal(b, np.broadcast_to(a, shape))
        assert b.shape == shape and b.dtype == a.dtype
        assert b is a or not b.flags.writeable
        assert np.shares_memory(b, a) or a.size == 0 or b.size == 0


def test_splat():
    s = V.splat(2.5, (3, 4))
    np.testing.assert_array_equal(s, np.full((3, 4), 2.5))
    assert s.dtype == np.float64 and s.strides == (0, 0) and not s.flags.writeable


@pytest.mark.parametrize("shape", [(), (5,), (16, 10), (0, 4), (2, 3, 4, 5)])
def test_c_ordered_operands_merge_into_one_run_without_copies(shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    y = np.asarray(x + 1)
    w = V.splat(3.0, shape)
    perm, pshape, views = V.elementwise_views(x, y, w)
    assert perm == tuple(range(len(shape))) and pshape == shape
    for v, a in zip(views, (x, y, w)):
        assert v.shape == (1, 1, x.size)
        np.testing.assert_array_equal(v.reshape(shape), a)
        assert x.size == 0 or np.shares_memory(v, a)


def test_other_layouts_take_the_general_path():
    # a Fortran-ordered input merges in its own memory order; a broadcast row does not merge
    x = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    perm, pshape, views = V.elementwise_views(x, x + 0.0, V.broadcast(np.ones(4), (3, 4)))
    assert perm == (1, 0) and pshape == (4, 3)
    assert views[0].shape == (1, 4, 3)
    np.testing.assert_array_equal(views[0].reshape(4, 3).T, x)


def test_a_broadcast_row_keeps_a_c_ordered_input_in_its_order():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    row = V.broadcast(np.arange(4.0), (3, 4))
    perm, pshape, views = V.elementwise_views(x, row)
    assert perm == (0, 1) and pshape == (3, 4)
    assert views[0].shape == views[1].shape == (1, 3, 4)
    np.testing.assert_array_equal(views[1][0], np.broadcast_to(np.arange(4.0), (3, 4)))
    assert np.shares_memory(views[0], x)
