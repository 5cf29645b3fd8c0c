"""Arguments -> canonical problems. The only module that raises for bad input.

Every message names the argument, what was expected and what was given:
``"<arg> must be ...; got ..."``. Checks are O(size of the argument): the target range is
one pass over the targets, never over the logits. Inputs are never modified and never
required to be writeable; copies are made only where a layout cannot be expressed as the
kernels' 3-D views (``class_view``, ``elementwise_views``) or a dtype must be widened.
"""
from __future__ import annotations

import functools
import math
import operator

import numpy as np

from . import _half
from ._cpu._xent import target_range
from ._problem import ClassProblem, ElementwiseProblem
from ._threads import threads_for

REDUCTIONS = ("none", "mean", "sum")


# --- scalars and options ---------------------------------------------------------------

def reduction(value, allowed=REDUCTIONS) -> str:
    if not isinstance(value, str):
        raise TypeError(f"reduction must be one of {_choices(allowed)}; got {value!r}")
    if value not in allowed:
        raise ValueError(f"reduction must be one of {_choices(allowed)}; got {value!r}")
    return value


def _choices(allowed):
    return ", ".join(repr(a) for a in allowed)


def flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def integer(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None


def real(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        if not (isinstance(value, np.ndarray) and value.ndim == 0
                and value.dtype.kind in "iuf"):
            raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    return float(value)


def label_smoothing(value) -> float:
    eps = real("label_smoothing", value)
    if not 0.0 <= eps <= 1.0:       # also rejects NaN; PyTorch silently takes eps < 0 as 0
        raise ValueError(f"label_smoothing must be in [0, 1]; got {value!r}")
    return eps


def axis(value, ndim: int, name: str = "axis") -> int:
    ax = integer(name, value)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim}) for a {ndim}-d input; got {ax}")
    return ax % ndim


def transform_input(value, axis_value):
    """The input of logsumexp, softmax or log_softmax, and its axis.

    The axis is None (every element), an axis in ``[0, ndim)``, or a sorted tuple of
    distinct axes taken as one (``()`` included: each element its own row); a tuple of one
    axis is that axis.
    """
    if type(axis_value) is int:             # the usual call, checked first
        return class_input(value, axis_value, name="x")
    if axis_value is None:
        return float_array("x", value), None
    if isinstance(axis_value, tuple):
        x = float_array("x", value)
        if any(isinstance(a, (bool, np.bool_)) or not hasattr(type(a), "__index__")
               for a in axis_value):
            raise TypeError(f"axis must be {_TRANSFORM_AXIS}; got {axis_value!r}")
        axes = sorted(axis(a, x.ndim) for a in axis_value)
        if len(set(axes)) < len(axes):
            raise ValueError(f"axis must name each axis once; got {axis_value!r}")
        return x, axes[0] if len(axes) == 1 else tuple(axes)
    if isinstance(axis_value, (bool, np.bool_)) or not hasattr(type(axis_value), "__index__"):
        float_array("x", value)             # a bad input is named first, as with any axis
        raise TypeError(f"axis must be {_TRANSFORM_AXIS}; got {type(axis_value).__name__}")
    return class_input(value, axis_value, name="x")


_TRANSFORM_AXIS = "an integer, a tuple of integers or None"


# --- arrays ---------------------------------------------------------------------------

def _asarray(name: str, value) -> np.ndarray:
    if type(value) is np.ndarray:
        return native(value)
    # A subclass goes to its base ndarray: np.matrix keeps two dimensions through every
    # reshape, and a masked array's mask would be silently dropped, so one with masked
    # elements is refused rather than read as if nothing were masked.
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise TypeError(f"{name} must not have masked elements; fill them (np.ma.filled) "
                        f"first, or leave elements out with weight= or ignore_index=")
    try:
        a = np.asarray(value)
    except MemoryError:
        raise
    except Exception as exc:
        # Whatever a foreign object's __array__ raises (a torch tensor that requires grad
        # raises RuntimeError) means it cannot be read as an array.
        raise TypeError(f"{name} must be an array or array-like; got "
                        f"{type(value).__name__} ({exc})") from None
    return native(a)


def native(a):
    """`a` in native byte order: a swapped array (NumPy, or a Dask array of NumPy chunks) as
    its native copy, anything else as it is.

    The kernels read native numbers and the dtype checks compare with native dtypes (a
    big-endian float64 is not np.float64), so a swapped array is computed, and its results
    returned, in native order, as NumPy's own functions return them. CuPy needs it too: it
    copies a host array's bytes as they lie and reads them as native (cupy/cupy#3652).
    """
    dtype = getattr(a, "dtype", None)
    if dtype is None or dtype.isnative:
        return a
    return a.astype(dtype.newbyteorder("="))


def stand_in(a):
    """A zero-memory NumPy array with `a`'s shape and dtype (None stays None).

    For arrays whose values cannot be read here (Dask, CuPy): the ``check_only`` validators
    run on it and raise exactly what the NumPy path raises. Anything without a NumPy dtype
    goes through ``np.asarray`` first, as in the NumPy path.
    """
    if a is None:
        return None
    if not isinstance(getattr(a, "dtype", None), np.dtype):
        a = _asarray("argument", a)
    return _zeros_view(a.dtype, tuple(a.shape))


@functools.lru_cache(maxsize=256)
def _zeros_view(dtype, shape):
    # read-only, so one can serve every call of that dtype and shape (each GPU and Dask
    # call makes three or four, at about 2.5 us each)
    return np.broadcast_to(np.zeros((), dtype), shape)


def is_float_dtype(dtype: np.dtype) -> bool:
    # dtype.name is slow (it is built in Python), so test the kind first; bfloat16 from
    # ml_dtypes is a kind-"V" dtype.
    if dtype.kind == "f":
        return dtype.itemsize <= 8          # not longdouble
    return dtype.kind == "V" and dtype.name == "bfloat16"


def float_array(name: str, value) -> np.ndarray:
    a = _asarray(name, value)
    if not is_float_dtype(a.dtype):
        raise TypeError(f"{name} must be a floating-point array (float16, float32, float64 "
                        f"or bfloat16); got dtype {a.dtype}")
    return a


def real_array(name: str, value) -> np.ndarray:
    """An array of real numbers (integer or floating-point, not bool or complex)."""
    a = _asarray(name, value)
    if not (is_float_dtype(a.dtype) or a.dtype.kind in "iu"):
        raise TypeError(f"{name} must be an array of real numbers (integer or floating-point);"
                        f" got dtype {a.dtype}")
    return a


_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


def compute_dtype(*dtypes) -> np.dtype:
    """float64 if any operand is float64, else float32 (float16 and bfloat16 are widened)."""
    for d in dtypes:
        if d == _FLOAT64:
            return _FLOAT64
    return _FLOAT32


def writes_through(view, base, xp=np) -> bool:
    """True when `view` is a kernel-usable view of `base` (writes land in `base`): it shares
    `base`'s memory and steps in whole elements. `xp`: NumPy, or CuPy for CuPy arrays."""
    return base.size == 0 or (xp.may_share_memory(view, base)
                              and not any(s % view.itemsize for s in view.strides))


def _aligned(a: np.ndarray) -> np.ndarray:
    # The kernels count strides in elements.
    item = a.itemsize
    for s in a.strides:
        if s % item and a.size:
            return a.copy(order="C")        # NumPy or CuPy alike
    return a


def class_view(a: np.ndarray, ax: int) -> np.ndarray:
    """The (outer, C, inner) view of `a` around axis `ax`.

    NumPy's reshape returns a view whenever the dimensions before and after the class axis
    merge into one stride each (C order, Fortran-ordered 2-D, sliced rows, class-last,
    permuted 3-D views), and a copy otherwise.
    """
    outer = math.prod(a.shape[:ax])
    inner = math.prod(a.shape[ax + 1:])
    return _aligned(a.reshape(outer, a.shape[ax], inner))


def _c_ordered(a: np.ndarray) -> bool:
    """Whether `a` is C-contiguous or one value broadcast (all strides 0)."""
    return a.flags.c_contiguous or not any(a.strides)


def elementwise_views(x: np.ndarray, *others: np.ndarray):
    """Permute every operand into `x`'s memory order and merge dimensions jointly.

    `others` already have x's shape (broadcast views with zero strides are fine). Returns
    ``(perm, permuted_shape, views)`` with (d0, d1, d2) views; an operand is copied only when
    more than three dimensions remain after merging or its strides are not whole elements.
    """
    if all(_c_ordered(a) for a in (x, *others)):
        # The common case in a quarter of the time (a (16, 10) loss's budget is 15 us): the
        # loop below would merge every dimension into one.
        shape3 = (1, 1, x.size)
        return tuple(range(x.ndim)), x.shape, [_aligned(a.reshape(shape3)) for a in (x, *others)]
    if x.flags.c_contiguous:    # already in memory order (a broadcast operand stops the above)
        perm, arrays = tuple(range(x.ndim)), [x, *others]
    else:
        perm = tuple(sorted(range(x.ndim), key=lambda d: -abs(x.strides[d])))
        arrays = [a.transpose(perm) for a in (x, *others)]
    pshape = arrays[0].shape
    sizes, last = [], None
    for d, n in enumerate(pshape):
        if n == 1:
            continue
        st = [a.strides[d] for a in arrays]
        if last is not None and all(p == s * n for p, s in zip(last, st)):
            sizes[-1] *= n
        else:
            sizes.append(n)
        last = st
    if len(sizes) > 3:
        sizes = [math.prod(sizes[:-2]), *sizes[-2:]]
    shape3 = (1,) * (3 - len(sizes)) + tuple(sizes)
    return perm, pshape, [_aligned(a.reshape(shape3)) for a in arrays]


# --- class-axis problems (cross_entropy, nll_loss, softmax family) ---------------------

def class_input(value, axis_value, *, name="input", default_axis=None):
    """The input array and its class axis."""
    x = float_array(name, value)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes); got a 0-d "
                         "array")
    if axis_value is None:
        ax = default_axis(x.ndim) if default_axis else x.ndim - 1
    else:
        ax = axis(axis_value, x.ndim)
    return x, ax


def _torch_class_axis(ndim: int) -> int:
    # PyTorch: (C,) unbatched -> 0, otherwise dim 1.
    return 0 if ndim == 1 else 1


_NO_WEIGHT = np.empty(0, np.float64)        # the kernels' "no class weight"
_NO_WEIGHT.flags.writeable = False


def _class_weight(weight, C: int) -> np.ndarray:
    if weight is None:
        return _NO_WEIGHT
    w = real_array("weight", weight)
    if w.shape != (C,):
        raise ValueError(f"weight must have shape ({C},), one value per class; got shape "
                         f"{w.shape}")
    return np.ascontiguousarray(w, dtype=np.float64)


def _index_target(t: np.ndarray, C: int, ignore: int, outer: int, inner: int):
    """int64 (outer, inner) targets with ignored entries as -1; checks the range (O(N)).

    Returns the targets and whether any is ignored.
    """
    # uint64 may not fit int64: it takes the general path, which compares exactly.
    if t.size and (t.dtype.kind == "i" or t.itemsize < 8):
        t64 = np.ascontiguousarray(t.reshape(outer, inner), dtype=np.int64)
        lo, hi = target_range(t64.reshape(-1), threads_for(t64.size))
        if 0 <= lo and hi < C and not lo <= ignore <= hi:     # the common case: all valid
            return t64, False
    ignored = t == ignore
    bad = ~ignored & ((t < 0) | (t >= C))
    if bad.any():
        raise index_error(C, ignore, t[bad].flat[0])
    t64 = np.array(t.reshape(outer, inner), dtype=np.int64, order="C")
    t64[ignored.reshape(outer, inner)] = -1
    return t64, True


def index_error(C: int, ignore: int, first) -> IndexError:
    """The error for a class index outside [0, C) that is not ignore_index (`first`)."""
    return IndexError(f"target must hold class indices in [0, {C}) or ignore_index="
                      f"{ignore}; got {first}")


def index_denominator(t64: np.ndarray, any_ignored: bool, w: np.ndarray) -> float:
    """What reduction="mean" divides by: the summed class weights of the counted targets."""
    valid = t64[t64 >= 0] if any_ignored else t64
    return float(w[valid].sum()) if w.size else float(valid.size)


def class_problem(input, target, *, weight, ignore_index, reduction_value,
                  label_smoothing_value, axis_value, allow_probs, check_only=False):
    """Validate cross_entropy / nll_loss arguments into a ClassProblem.

    With `check_only`, stop after the checks that need only shapes and dtypes (what a lazy
    caller can check before it has the values) and return ``(class axis, probs)``.
    """
    x, ax = class_input(input, axis_value, default_axis=_torch_class_axis)
    red = reduction(reduction_value)
    eps = label_smoothing(label_smoothing_value)
    ignore = integer("ignore_index", ignore_index)
    C = x.shape[ax]
    if C == 0:
        raise ValueError(f"input must have at least one class along axis {ax}; got shape "
                         f"{x.shape}")
    loss_shape = x.shape[:ax] + x.shape[ax + 1:]
    outer, inner = math.prod(x.shape[:ax]), math.prod(x.shape[ax + 1:])
    w = _class_weight(weight, C)
    t = _asarray("target", target)

    if is_float_dtype(t.dtype):
        if not allow_probs:
            raise TypeError(f"target must be an integer array of class indices; got dtype "
                            f"{t.dtype} (probability targets are for cross_entropy)")
        if t.shape != x.shape:
            if t.shape == loss_shape or (x.ndim == 1 and t.shape == (1,)):
                raise TypeError(f"target of shape {t.shape} holds class indices and must be "
                                f"an integer array; got dtype {t.dtype} (probability "
                                f"targets have the input's shape {x.shape})")
            raise ValueError(f"target must have shape {loss_shape} (class indices) or "
                             f"{x.shape} (class probabilities); got {t.shape}")
        if ignore != -100:
            raise ValueError(f"ignore_index must be left at -100 with probability targets; "
                             f"got {ignore}")
        if check_only:
            return ax, True
        cdt = compute_dtype(x.dtype, t.dtype)
        return ClassProblem(
            x=class_view(_half.widen(x, cdt), ax),
            target=class_view(_half.widen(t, cdt), ax),
            probs=True, weight=w, label_smoothing=eps, reduction=red, shape=x.shape,
            loss_shape=loss_shape, loss_dtype=x.dtype, grad_dtype=x.dtype,
            denominator=float(math.prod(loss_shape)))

    if t.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array of class indices or a "
                        f"floating-point array of probabilities; got dtype {t.dtype}")
    if x.ndim == 1 and t.shape == (1,):
        t = t.reshape(())          # PyTorch takes a (1,) target for an unbatched input
    if t.shape != loss_shape:
        if t.shape == x.shape:
            raise TypeError(f"target of the input's shape {x.shape} holds class "
                            f"probabilities and must be floating-point; got dtype {t.dtype}")
        raise ValueError(f"target must have shape {loss_shape} (the input's shape {x.shape} "
                         f"without class axis {ax}); got {t.shape}")
    if check_only:
        return ax, False
    t64, any_ignored = _index_target(t, C, ignore, outer, inner)
    denominator = index_denominator(t64, any_ignored, w)
    cdt = compute_dtype(x.dtype)
    return ClassProblem(
        x=class_view(_half.widen(x, cdt), ax), target=t64, probs=False, weight=w,
        label_smoothing=eps, reduction=red, shape=x.shape, loss_shape=loss_shape,
        loss_dtype=x.dtype, grad_dtype=x.dtype, denominator=denominator)


# --- element-wise problems (binary losses, kl_div) -------------------------------------

def _broadcastable(name: str, a: np.ndarray, shape) -> None:
    # NumPy's rule for np.broadcast_to(a, shape), checked here in a fifth of
    # np.broadcast_shapes' time (a (16, 10) loss's budget is 15 us)
    if a.shape == shape or a.ndim == 0:
        return
    lead = len(shape) - a.ndim
    if lead < 0 or any(n != 1 and n != m for n, m in zip(a.shape, shape[lead:])):
        raise ValueError(f"{name} must broadcast to the input's shape {shape}; got shape "
                         f"{a.shape}")


def broadcast(a: np.ndarray, shape) -> np.ndarray:
    """np.broadcast_to(a, shape) for reading only: `a` itself when it has the shape, else a
    read-only view, built directly on a C-contiguous `a`.

    np.broadcast_to costs about 1.8 us a call, a quarter of a (16, 10) loss; the view built
    here 0.7 us. `a` must broadcast to `shape` (checked by the caller).
    """
    if a.shape == shape:
        return a
    if not a.flags.c_contiguous:
        return np.broadcast_to(a, shape)
    lead = len(shape) - a.ndim
    strides = (0,) * lead
    if a.ndim:
        strides += tuple(0 if n == 1 else st for n, st in zip(a.shape, a.strides))
    out = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    out.flags.writeable = False
    return out


def _broadcast(a: np.ndarray, shape, dtype) -> np.ndarray:
    return broadcast(_half.widen(a, dtype), shape)


def splat(value, shape) -> np.ndarray:
    """A float64 array of `shape` holding `value` everywhere, for reading only (zero strides,
    read-only unless `shape` is ())."""
    return broadcast(np.array(value, np.float64), shape)


def _in_unit_interval(name: str, a: np.ndarray) -> None:
    if a.size and not (a.min() >= 0 and a.max() <= 1):     # NaN fails both comparisons
        raise ValueError(f"{name} must hold values in [0, 1]; got values in "
                         f"[{a.min()}, {a.max()}]")


def elementwise_problem(input, target, *, weight=None, pos_weight=None, reduction_value,
                        same_shape=True, probabilities=False, reductions=REDUCTIONS,
                        batch_denominator=False, check_only=False):
    """Validate binary_cross_entropy(_with_logits) / kl_div arguments.

    Targets may be floating-point, integer or bool (0/1 labels); they are read in the
    compute dtype, float64 when the input or the target is float64 and float32 otherwise.
    With `check_only`, stop after the shape and dtype checks (see :func:`class_problem`).
    """
    x = float_array("input", input)
    red = reduction(reduction_value, reductions)
    t = _asarray("target", target)
    if not (is_float_dtype(t.dtype) or t.dtype.kind in "iub"):
        raise TypeError(f"target must be an array of real numbers; got dtype {t.dtype}")
    if same_shape and t.shape != x.shape:
        raise ValueError(f"target must have the input's shape {x.shape}; got {t.shape}")
    w = None if weight is None else real_array("weight", weight)
    pw = None if pos_weight is None else real_array("pos_weight", pos_weight)
    for name, a in (("target", t), ("weight", w), ("pos_weight", pw)):
        if a is not None:
            _broadcastable(name, a, x.shape)
    if check_only:
        return None
    if probabilities:
        _in_unit_interval("input", x)
        _in_unit_interval("target", t)
    cdt = compute_dtype(x.dtype, t.dtype)
    operands = [_broadcast(t, x.shape, cdt),
                splat(1.0, x.shape) if w is None else _broadcast(w, x.shape, np.float64)]
    if pw is not None:
        operands.append(_broadcast(pw, x.shape, np.float64))
    perm, pshape, views = elementwise_views(_half.widen(x, cdt), *operands)
    denominator = float(x.size)
    if batch_denominator:          # kl_div's "batchmean": the first dimension
        denominator = float(x.shape[0]) if x.ndim else 1.0
    return ElementwiseProblem(
        x=views[0], target=views[1], weight=views[2],
        pos_weight=views[3] if pos_weight is not None else None, reduction=red,
        shape=x.shape, permuted_shape=pshape, perm=perm, loss_dtype=x.dtype,
        grad_dtype=x.dtype, denominator=denominator)


# --- gradient options ------------------------------------------------------------------

def gradient_options(return_grad, grad_output, grad_out):
    want = flag("return_grad", return_grad)
    if not want and grad_output is not None:
        raise ValueError("grad_output is only used with return_grad=True; got grad_output "
                         "without it")
    if not want and grad_out is not None:
        raise ValueError("grad_out is only used with return_grad=True; got grad_out "
                         "without it")
    return want


def grad_output(value, red: str, loss_shape) -> np.ndarray:
    """d(total)/d(loss) as float64: a scalar for mean/sum, the loss's shape for none."""
    g = np.float64(1.0) if value is None else real_array("grad_output", value)
    if red == "none":
        try:
            # the kernels step through it in whole elements
            return np.broadcast_to(_aligned(g.astype(np.float64, copy=False)), loss_shape)
        except ValueError:
            raise ValueError(f"grad_output must broadcast to the loss's shape {loss_shape}; "
                             f"got shape {g.shape}") from None
    if g.ndim != 0:
        raise ValueError(f"grad_output must be a scalar for reduction={red!r}; got shape "
                         f"{g.shape}")
    return np.float64(g)


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:      # too costly to decide exactly: assume overlap
        return True


def grad_out(value, input, others) -> np.ndarray | None:
    """Check a caller-provided gradient buffer: shape, dtype, writeable and no bad aliasing."""
    if value is None:
        return None
    if not isinstance(value, np.ndarray):
        raise TypeError(f"grad_out must be a NumPy array; got {type(value).__name__}")
    value = np.asarray(value)       # a subclass's base array, which writes through to it
    x = np.asarray(input)
    if value.shape != x.shape:
        raise ValueError(f"grad_out must have the input's shape {x.shape}; got {value.shape}")
    want = x.dtype.newbyteorder("=")        # either byte order takes the gradient
    if value.dtype.newbyteorder("=") != want:
        raise TypeError(f"grad_out must have the input's dtype {want}; got {value.dtype}")
    if not value.flags.writeable:
        raise ValueError("grad_out must be writeable; got a read-only array")
    for name, other in others.items():
        if isinstance(other, np.ndarray) and _overlaps(value, other):
            raise ValueError(f"grad_out must not share memory with {name}")
    if _overlaps(value, x):
        same = (value.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                and value.strides == x.strides)
        if not same:
            raise ValueError("grad_out must be the input itself (an in-place gradient) or "
                             "not overlap it; got a partial overlap")
    return value
