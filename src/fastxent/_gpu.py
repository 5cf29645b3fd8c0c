"""The CuPy backend: the same functions on ``cupy.ndarray`` inputs, run on the device.

``functional`` sends a call here when its input is a CuPy array. Shapes, dtypes and options
are checked by the CPU path's own validators (``_validate`` with ``check_only=True``) on
zero-memory stand-ins, so both backends raise the same errors with the same messages before
any work. The kernels (``_cuda/*.cu``) are compiled on first use per device through
``cupy.RawModule`` (nothing compiles at import; ``import fastxent`` never imports CuPy).

No call synchronises with the host (but once a device, for a constant it keeps). What needs
the values is checked on the device: a class index outside [0, C) sets a flag and gives a
NaN loss and gradient row, and BCE inputs outside [0, 1] set another; the flags are copied
to pinned memory behind the call's work, and the next fastxent call on the device, or
:func:`check_errors`, raises the IndexError / ValueError once the copy has landed.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np

from . import _cuda_sources as S
from . import _gpu_plan as P
from . import _validate as V
from ._problem import from_views, to_views

_SUPPORTED = ("float16", "float32", "float64", "bfloat16")


_GPU_TYPES = {}


def is_gpu_array(a) -> bool:
    """True for a ``cupy.ndarray`` (checked by module name: CuPy is not imported), answered
    once per type (a call asks about each of its arguments)."""
    kind = type(a)
    found = _GPU_TYPES.get(kind)
    if found is None:
        found = _GPU_TYPES[kind] = kind.__module__.split(".", 1)[0] == "cupy"
    return found


def _cp():
    import cupy
    return cupy


def _cpx():
    import cupyx
    return cupyx


def _on_input_device(fn):
    """`fn` run on its first argument's device. CuPy launches a kernel on the current device,
    and a kernel given another device's memory faults there, which ends the CUDA context:
    so every other device array among the arguments must be on that device too, or the call
    is refused before anything runs. Results are made there."""
    params = fn.__code__.co_varnames[1:fn.__code__.co_argcount]

    @functools.wraps(fn)
    def call(first, *args, **kwargs):
        device = first.device
        for name, value in (*zip(params, args), *kwargs.items()):
            if is_gpu_array(value) and value.device.id != device.id:
                raise ValueError(f"{name} must be on the input's device (GPU {device.id}); "
                                 f"got an array on GPU {value.device.id}")
        with device:
            return fn(first, *args, **kwargs)
    return call


@functools.lru_cache(maxsize=None)
def _module(kind: str, op: str, dtype: str, device: int):
    cp = _cp()
    file, names = S.module(kind, op, dtype)
    return cp.RawModule(code=S.source(file), options=S.OPTIONS, name_expressions=names)


def _kernel(kind: str, op: str, dtype: str, name: str):
    return _module(kind, op, dtype, _cp().cuda.Device().id).get_function(name)


@functools.lru_cache(maxsize=None)
def _one(device: int):
    """A float64 1.0 on `device` (the current one), made once: the kernels only read it, and
    a copy from host memory in every call would wait for the stream to drain. Its fill is
    waited for here, once a device: a later call on another stream would not wait for the
    stream that fills it."""
    cp = _cp()
    one = cp.full((), 1.0, cp.float64)
    cp.cuda.get_current_stream().synchronize()
    return one


def _float64(value):
    """`value` as a float64 device array; Python and NumPy numbers by a fill, not a copy."""
    cp = _cp()
    if value is None:
        return _one(cp.cuda.Device().id)
    if isinstance(value, (int, float, np.number)):
        return cp.full((), value, cp.float64)
    return cp.asarray(V.native(value), dtype=cp.float64)


@functools.lru_cache(maxsize=None)
def _n_sm(device: int) -> int:
    return int(_cp().cuda.Device(device).attributes["MultiProcessorCount"])


# --- deferred value errors -----------------------------------------------------------------

_pending = []      # (event, pinned int32 flag, exception type, message), of every thread
# held only to add to _pending or to take its entries out: a thread checking them while
# another defers or checks would otherwise lose that one's entry, or raise an error twice
_pending_lock = threading.Lock()
_collector = threading.local()      # .pending: this thread's list inside errors_now()


def _defer(flag, exc, message):
    """Raise `exc(message)` later if the int32 (1,) device flag `flag` turns out non-zero."""
    cp = _cp()
    host = _cpx().empty_pinned((1,), np.int32)
    stream = cp.cuda.get_current_stream()
    flag.get(out=host, stream=stream, blocking=False)
    event = cp.cuda.Event(block=False, disable_timing=True)
    event.record(stream)
    entry = (event, host, exc, message)
    pending = getattr(_collector, "pending", None)
    if pending is not None:                 # this thread's own, inside errors_now()
        pending.append(entry)
        return
    with _pending_lock:
        _pending.append(entry)


def check_errors(wait: bool = True) -> None:
    """Raise the first value error found on the device by an earlier call.

    With `wait`, wait for those calls' work; otherwise look only at what has finished.
    The entries are taken out while they are looked at (so another thread's check does
    not raise them too), and those not yet finished go back ahead of newer ones.
    """
    with _pending_lock:
        mine = _pending[:]
        _pending.clear()
    try:
        _raise_first(mine, wait)
    finally:
        with _pending_lock:
            _pending[:0] = mine


@contextlib.contextmanager
def errors_now():
    """Raise the value errors of the calls made inside the block when it ends (waiting for
    their work), not at a later call: for a caller whose work ends there, a Dask task.
    Other threads' calls are not looked at, and leave theirs pending as before."""
    outer = getattr(_collector, "pending", None)
    mine = _collector.pending = []
    try:
        yield
    finally:
        _collector.pending = outer
    _raise_first(mine, wait=True)


def _raise_first(pending, wait):
    keep, error = [], None
    for event, host, exc, message in pending:
        if wait:
            event.synchronize()
        elif not event.done:
            keep.append((event, host, exc, message))
            continue
        if host[0] and error is None:
            error = exc(message)
    pending[:] = keep
    if error is not None:
        raise error


# --- shared helpers ---------------------------------------------------------------------

def _device(a, dtype=None):
    cp = _cp()
    return cp.asarray(V.native(a), dtype=dtype)     # CuPy would copy swapped bytes as they lie


def _input(x, name="input"):
    check_errors(wait=False)
    if P.dtype_name(x.dtype) not in _SUPPORTED:
        V.float_array(name, V.stand_in(x))            # raises the CPU path's TypeError
    return x


def _whole_elements(a):
    cp = _cp()
    if a.size and any(s % a.itemsize for s in a.strides):
        return cp.ascontiguousarray(a)
    return a


def _grad_out(value, x, others):
    """Check a caller's gradient buffer (CuPy array of x's shape and dtype, not aliasing a
    target or weight, and either x itself or disjoint from it)."""
    if value is None:
        return None
    cp = _cp()
    if not is_gpu_array(value):
        raise TypeError(f"grad_out must be a CuPy array for CuPy input; got "
                        f"{type(value).__name__}")
    if value.shape != x.shape:
        raise ValueError(f"grad_out must have the input's shape {x.shape}; got {value.shape}")
    if value.dtype != x.dtype:
        raise TypeError(f"grad_out must have the input's dtype {x.dtype}; got {value.dtype}")
    for name, other in others.items():
        if is_gpu_array(other) and cp.may_share_memory(value, other):
            raise ValueError(f"grad_out must not share memory with {name}")
    if cp.may_share_memory(value, x):
        if not (value.data.ptr == x.data.ptr and value.strides == x.strides):
            raise ValueError("grad_out must be the input itself or not overlap it")
    return value


def _grad_output(grad_output, red, loss_shape):
    """`grad_output` as the kernels take it: ``(go, value)``, a float64 device array and a
    number it is multiplied by, checked by the CPU path's validator before anything is
    launched. A device array is ``(it, None)``; a number or a 0-d host array rides as the
    number with a cached 1.0 array, so that it costs no device fill and no copy (a copy
    from host memory would wait for the stream to drain)."""
    if grad_output is None:
        return _float64(None), 1.0
    if is_gpu_array(grad_output):
        V.grad_output(V.stand_in(grad_output), red, loss_shape)
        return _float64(grad_output), None
    checked = V.grad_output(grad_output, red, loss_shape)
    if np.ndim(grad_output) == 0:       # "none" broadcasts it (flat[0] copies nothing)
        return _float64(None), float(checked.flat[0]) if checked.size else 1.0
    return _float64(grad_output), None


def _scale(go, value, red, denominator, loss_shape):
    """d total / d loss from `_grad_output`'s ``(go, value)`` as the kernels take it: a
    device array (loss-shaped for "none", else 0-d) and a number it is multiplied by. "mean"
    divides by a denominator the host knows: a number by that number on the host (the same
    float64 division), which spares a kernel in every call; a device array on the device."""
    cp = _cp()
    mul = 1.0 if value is None else value
    if red == "none":
        return cp.broadcast_to(go, loss_shape), mul
    if red == "sum":
        return go, mul
    if value is None:                       # "mean", or kl_div's "batchmean"
        return _mean(go, denominator), 1.0
    return go, (value / denominator if denominator else float("nan"))


@functools.lru_cache(maxsize=None)
def _fused_mean():
    cp = _cp()

    def fastxent_mean(total, denominator):          # the name of the fused CUDA kernel
        return cp.where(denominator == 0, cp.nan,
                        total / cp.where(denominator == 0, 1.0, denominator))
    return cp.fuse(fastxent_mean)


def _mean(total, denominator):
    """total / denominator, NaN for a zero denominator (PyTorch's mean over nothing): one
    fused kernel, where its five array operations would each cost a launch. For a
    denominator the host knows; a class-index "mean" finds its own on the device
    (_mean_scale)."""
    return _fused_mean()(total, denominator)


def _reduce_kernel(name):
    return _kernel("reduce", "reduce", "any", name)


def _reduced_loss(red, denominator, partial, dtype, counter, grid):
    """The arguments that make a row or element-wise kernel of `grid` blocks also write the
    reduced loss (_gpu_plan._reduction_args), its 0-d result as "out": the sum, or for
    "mean" that over `denominator` (a device scalar, or a number the host knows), as
    `dtype`; with `partial`, the float64 sum (the Dask path adds its blocks' sums before it
    divides, as on the CPU). `counter`: one zeroed int32 for the kernel's ticket."""
    cp = _cp()
    reduce = dict(counter=counter, partial=cp.empty(grid, cp.float64), mode="sum",
                  denominator_value=0.0, out=cp.empty((), np.float64 if partial else dtype))
    if red != "sum" and not partial:        # "mean", or kl_div's "batchmean"
        if is_gpu_array(denominator):
            reduce.update(mode="mean by pointer", denominator=denominator)
        else:
            reduce.update(mode="mean by value", denominator_value=float(denominator))
    return reduce


# --- class-axis problems -------------------------------------------------------------------

def _launch_rows(op, x3, *, t2=None, ignore_index=-100, q3=None, w=None, eps=0.0,
                 gscale2=None, gmul=1.0, g3=None, err=None, reduce_to=None):
    """Run fx::rows for `op`; returns ``(rows, loss)``: its float64 per-row results, and with
    `reduce_to` (`_reduced_loss`'s arguments but the grid) the reduced loss the kernel also
    writes (else None). `err`: a zeroed int32 (1,) flag, which the class-index ops set for
    an invalid target (the others never read it)."""
    cp = _cp()
    outer, C, inner = x3.shape
    rows = cp.empty(outer * inner, cp.float64)
    if rows.size == 0 and reduce_to is None:
        return rows, None
    dtype = P.dtype_name(x3.dtype)
    config = P.row_config(C, x3.strides[1] // x3.itemsize, x3.itemsize)
    target = None if t2 is None else P.dtype_name(t2.dtype)
    name = S.row_kernel(op, dtype, target, config)
    kernel = _kernel("rows", op, dtype, name)
    smem = P.row_shared_bytes(C, config, x3.itemsize)
    if smem > 48 * 1024:
        kernel.max_dynamic_shared_size_bytes = smem
    grid = P.row_grid(outer * inner, config, _n_sm(cp.cuda.Device().id))
    # the reduced loss of no row is written too (the kernel's one block adds nothing)
    reduce = {} if reduce_to is None else _reduced_loss(*reduce_to, grid)
    args = P.row_args(x3, t2=t2, ignore_index=ignore_index, q3=q3, w=w, eps=eps,
                      gscale2=gscale2, gmul=gmul, rows_out=rows, g3=g3, err=err, **reduce)
    kernel((grid,), (config[1],), args, shared_mem=smem)
    return rows, reduce.get("out")


def _index_targets(t, C, ignore):
    """Targets the kernels read: int32 / int64 as they are, other integers as int64 (an
    unsigned value past int64's range becomes C, which the kernel reports as invalid)."""
    cp = _cp()
    if t.dtype in (cp.int32, cp.int64):
        return t
    if t.dtype == cp.uint64:
        return cp.where(t > np.uint64(2 ** 63 - 1), np.int64(C), t.astype(cp.int64))
    return t.astype(cp.int64)


def _mean_scale(t2, ignore, w, C, go, go_value, counter):
    """"mean"'s denominator over (outer, inner) class-index targets `t2` (the summed class
    weights of the counted targets; ignore_index and an out-of-range index count nothing)
    and the gradient scale go · go_value / denominator (`_grad_output`'s pair; a value of
    None is 1), as float64 0-d device arrays, by one kernel (fx::mean_scale). `counter`: one
    zeroed int32 for its ticket."""
    cp = _cp()
    grid = P.reduce_grid(t2.size, _n_sm(cp.cuda.Device().id))
    buf = cp.empty(2 + grid, cp.float64)             # denominator, scale, block partials
    args = P.mean_scale_args(t2, ignore_index=ignore, C=C, w=w, grad_output=go,
                             grad_output_mul=1.0 if go_value is None else go_value,
                             partials=buf[2:], counter=counter, out=buf[:2])
    _reduce_kernel(S.mean_scale_kernel(P.dtype_name(t2.dtype)))((grid,), (S.REDUCE_BLOCK,), args)
    return buf[0], buf[1]


@_on_input_device
def index_denominator(t, ignore, w, C):
    """"mean"'s denominator of class-index targets `t` (int32 / int64, any shape) and
    float64 weights `w` (or None), as a float64 0-d device array."""
    cp = _cp()
    return _mean_scale(t.reshape(-1, 1), ignore, w, C, _float64(None), 1.0,
                       cp.zeros(1, cp.int32))[0]


def _class_call(fn, op, input, target, *, weight, ignore_index, reduction, label_smoothing,
                axis, return_grad, grad_output, grad_out, partial=False):
    cp = _cp()
    want = V.gradient_options(return_grad, grad_output, grad_out)    # first, as on the CPU
    x = _input(input)
    ax, probs = V.class_problem(V.stand_in(x), V.stand_in(target), weight=V.stand_in(weight),
                                ignore_index=ignore_index, reduction_value=reduction,
                                label_smoothing_value=label_smoothing, axis_value=axis,
                                allow_probs=fn == "cross_entropy", check_only=True)
    red = V.reduction(reduction)
    eps = V.label_smoothing(label_smoothing)
    ignore = V.integer("ignore_index", ignore_index)
    t = _device(target)
    if x.ndim == 1 and not probs and t.shape == (1,):
        t = t.reshape(())
    grad_out = _grad_out(grad_out, x, {"target": t, "weight": weight})
    C = x.shape[ax]
    loss_shape = x.shape[:ax] + x.shape[ax + 1:]
    outer, inner = math.prod(x.shape[:ax]), math.prod(x.shape[ax + 1:])
    go, go_value = (_grad_output(grad_output, red, loss_shape) if want
                    else (_float64(None), 1.0))
    w = None if weight is None else cp.ascontiguousarray(_device(weight, cp.float64))
    # the error flag, mean_scale's ticket and the row kernel's, zeroed by one memset
    # (probabilities flag nothing, and "none" takes no ticket)
    flags = cp.zeros(3, cp.int32) if not (probs and red == "none") else None

    scale = None
    if probs:
        cdt = np.dtype(V.compute_dtype(x.dtype, t.dtype)) if t.dtype != x.dtype else x.dtype
        xk, q = x.astype(cdt, copy=False), t.astype(cdt, copy=False)
        q3 = _whole_elements(V.class_view(q, ax))
        t2 = None
        denominator = math.prod(loss_shape)
        kop = "ce_prob"
    else:
        xk, q3 = x, None
        t2 = _index_targets(t, C, ignore).reshape(outer, inner)
        denominator = None
        if red == "mean":
            denominator, scale = _mean_scale(t2, ignore, w, C, go, go_value, flags[1:2])
        kop = op
    x3 = _whole_elements(V.class_view(xk, ax))

    g3 = gscale2 = finish = None
    gmul = 1.0
    if want:
        if scale is None:
            scale, gmul = _scale(go, go_value, red, denominator, loss_shape)
        gscale2 = (scale.reshape(outer, inner) if red == "none"
                   else cp.broadcast_to(scale, (outer, inner)))
        if grad_out is not None and grad_out.dtype == xk.dtype:
            g3 = grad_out.reshape(x3.shape)
            if not V.writes_through(g3, grad_out, cp):
                g3 = None                           # could not view: write a temporary
        if g3 is None:
            # laid out as the kernel's view of the input, as the CPU path's: for logits
            # with a class stride (Fortran order, permuted views) a C-ordered gradient would
            # take each row's writes a class stride apart, where its reads are adjacent
            g3 = cp.empty_like(x3)

            def finish():
                g_full = g3.reshape(xk.shape)       # once the kernel has written g3
                if grad_out is None:
                    return g_full.astype(x.dtype, copy=False)
                grad_out[...] = g_full.astype(x.dtype, copy=False)
                return grad_out
        else:
            def finish():
                return grad_out

    err = None if probs else flags[:1]
    reduce_to = None if red == "none" else (red, denominator, partial, x.dtype, flags[2:])
    rows, loss = _launch_rows(kop, x3, t2=t2, ignore_index=ignore, q3=q3, w=w, eps=eps,
                              gscale2=gscale2, gmul=gmul, g3=g3, err=err,
                              reduce_to=reduce_to)
    if err is not None:
        _defer(err, IndexError, f"target held a class index outside [0, {C}) that is not "
                                f"ignore_index={ignore} (found on the device; the loss and "
                                f"gradient rows of those targets are NaN)")
    if red == "none":        # rows is this call's own array: float64 results need no copy
        loss = rows.reshape(loss_shape).astype(x.dtype, copy=False)
    return (loss, finish()) if want else loss


@_on_input_device
def cross_entropy(input, target, **options):
    return _class_call("cross_entropy", "ce_index", input, target, **options)


@_on_input_device
def nll_loss(input, target, **options):
    return _class_call("nll_loss", "nll", input, target, label_smoothing=0.0, **options)


def _transform(op, x, axis):
    cp = _cp()
    x = _input(x, "x")
    ax = V.transform_input(V.stand_in(x), axis)[1]     # never a tuple: the API merges those
    if ax is None:
        x2 = x.reshape(1, -1)
        ax = 1
    else:
        x2 = x
    x3 = _whole_elements(V.class_view(x2, ax))
    if op == "logsumexp":
        return _launch_rows(op, x3)[0], x2, ax
    out3 = cp.empty_like(x3)                   # the CPU path's layout (see _class_call)
    _launch_rows(op, x3, g3=out3)
    return out3.reshape(x.shape), x2, ax


@_on_input_device
def logsumexp64(x, axis):
    """The float64 log-sum-exp over `axis` (None: every element) with x's shape less that
    axis (0-d for None), and the axis as a non-negative int."""
    rows, x2, ax = _transform("logsumexp", x, axis)
    return rows.reshape(x2.shape[:ax] + x2.shape[ax + 1:] if axis is not None else ()), ax


@_on_input_device
def logsumexp(x, axis=-1, keepdims=False):
    keepdims = V.flag("keepdims", keepdims)
    rows, ax = logsumexp64(x, axis)
    out = rows.astype(x.dtype, copy=False)
    if axis is None:
        out = out.reshape(())
        return out.reshape((1,) * x.ndim) if keepdims else out
    return out.reshape(x.shape[:ax] + (1,) + x.shape[ax + 1:]) if keepdims else out


@_on_input_device
def softmax(x, axis=-1):
    return _transform("softmax", x, axis)[0]


@_on_input_device
def log_softmax(x, axis=-1):
    return _transform("log_softmax", x, axis)[0]


# --- element-wise problems -------------------------------------------------------------

def _elementwise_call(op, input, target, *, weight=None, pos_weight=None, reduction,
                      log_target=False, return_grad, grad_output, grad_out, probabilities,
                      reductions=V.REDUCTIONS, batch_denominator=False, partial=False):
    cp = _cp()
    want = V.gradient_options(return_grad, grad_output, grad_out)    # first, as on the CPU
    log_target = V.flag("log_target", log_target)
    x = _input(input)
    V.elementwise_problem(V.stand_in(x), V.stand_in(target), weight=V.stand_in(weight),
                          pos_weight=V.stand_in(pos_weight), reduction_value=reduction,
                          same_shape=op != "kl_div", probabilities=probabilities,
                          reductions=reductions, check_only=True)
    red = V.reduction(reduction, reductions)
    t = _device(target)
    grad_out = _grad_out(grad_out, x, {"target": t, "weight": weight,
                                       "pos_weight": pos_weight})
    per_element = red == "none"
    go = _grad_output(grad_output, red, x.shape) if want else None
    cdt = x.dtype if t.dtype == x.dtype else np.dtype(V.compute_dtype(x.dtype, t.dtype))
    xk = x.astype(cdt, copy=False)
    shape = x.shape
    operands = [cp.broadcast_to(t.astype(cdt, copy=False), shape)]
    if op != "kl_div":
        operands.append(cp.broadcast_to(_float64(weight), shape))
    if pos_weight is not None:
        operands.append(cp.broadcast_to(_float64(pos_weight), shape))
    n = x.size
    denominator = float(shape[0] if (batch_denominator and x.ndim) else
                        (1.0 if batch_denominator else n))
    inputs = [xk, *operands]
    gmul = 1.0
    if want:
        scale, gmul = _scale(*go, red, denominator, shape)
        inputs.append(cp.broadcast_to(scale, shape))
    # Every operand in the input's memory order, its dimensions merged (the CPU path's
    # views): consecutive threads read neighbouring elements of a Fortran-ordered or
    # permuted input, and fresh outputs are laid out as the input is.
    perm, pshape, views = V.elementwise_views(*inputs)
    x3, shape3 = views[0], views[0].shape
    loss3 = cp.empty(shape3, cdt) if per_element else None
    g3 = None
    if want and grad_out is not None and grad_out.dtype == cdt:
        g3 = to_views(grad_out, perm, shape3)
        if not V.writes_through(g3, grad_out, cp):
            g3 = None                               # could not view: write a temporary
    direct = g3 is not None
    if want and g3 is None:
        g3 = cp.empty(shape3, cdt)

    grid = P.elementwise_grid(max(n, 1), _n_sm(cp.cuda.Device().id))
    # binary_cross_entropy's value flag and the reduction's ticket
    flags = cp.zeros(2, cp.int32) if probabilities or not per_element else None
    # the kernel's last block adds the blocks' partials and writes the loss
    reduce = ({} if per_element
              else _reduced_loss(red, denominator, partial, x.dtype, flags[1:], grid))
    if n or reduce:                 # the reduced loss of no element is written too
        k = len(operands)
        args = P.elementwise_args(x3, views[1], w3=views[2] if op != "kl_div" else None,
                                  pw3=views[k] if pos_weight is not None else None,
                                  log_target=log_target, gscale3=views[k + 1] if want else None,
                                  gmul=gmul, loss3=loss3, g3=g3,
                                  err=flags[:1] if probabilities else None, **reduce)
        # a per-class pos_weight or weight keeps a second axis (INDEXED): positions then
        # move by carries, which the one-axis kernel's group loop has no use for
        name = S.elementwise_kernel(op, P.dtype_name(cdt), indexed=shape3[0] * shape3[1] != 1)
        _kernel("elementwise", op, P.dtype_name(cdt), name)((grid,), (S.ELEMENTWISE_BLOCK,), args)
    if probabilities:       # after every check made at the call: a refused call defers none
        _defer(flags[:1], ValueError, "input and target of binary_cross_entropy must hold "
                                      "values in [0, 1] (found on the device)")
    loss = (from_views(loss3, perm, pshape).astype(x.dtype, copy=False) if per_element
            else reduce["out"])
    if not want:
        return loss
    if grad_out is None:
        return loss, from_views(g3, perm, pshape).astype(x.dtype, copy=False)
    if not direct:
        grad_out[...] = from_views(g3, perm, pshape).astype(x.dtype, copy=False)
    return loss, grad_out


@_on_input_device
def binary_cross_entropy(input, target, *, weight=None, reduction="mean", return_grad=False,
                         grad_output=None, grad_out=None, partial=False):
    return _elementwise_call("bce", input, target, weight=weight, reduction=reduction,
                             return_grad=return_grad, grad_output=grad_output,
                             grad_out=grad_out, probabilities=True, partial=partial)


@_on_input_device
def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, grad_output=None,
                                     grad_out=None, partial=False):
    return _elementwise_call("bce_logits", input, target, weight=weight,
                             pos_weight=pos_weight, reduction=reduction,
                             return_grad=return_grad, grad_output=grad_output,
                             grad_out=grad_out, probabilities=False, partial=partial)


@_on_input_device
def kl_div(input, target, *, reduction="mean", log_target=False, return_grad=False,
           grad_output=None, grad_out=None, partial=False):
    return _elementwise_call("kl_div", input, target, reduction=reduction,
                             log_target=log_target, return_grad=return_grad,
                             grad_output=grad_output, grad_out=grad_out,
                             probabilities=False, reductions=("none", "batchmean", "mean",
                                                              "sum"),
                             batch_denominator=reduction == "batchmean", partial=partial)
