"""A stand-in for CuPy on the CPU, for the GPU backend's tests without a GPU.

Its arrays are NumPy memory under a ``cupy``-named ndarray subclass (the module name is what
fastxent's dispatch checks), and its "kernels" are the CUDA sources' own row and element
bodies compiled by g++ (cuda_host_lib), called with the launcher's argument tuples. Like
CuPy, an operation that mixes a host array into device arrays raises TypeError, so code
that forgets to move an operand fails here as it would on the device.
"""
import ctypes
import re
import sys
import threading
import time
import types

import numpy as np

from fastxent import _cuda_sources as S

import cuda_host_lib


def _refuse_host(value):
    """CuPy's rule: a host array among a device operation's operands is a TypeError (NumPy
    scalars and Python numbers are fine)."""
    if type(value) is np.ndarray:
        raise TypeError("Unsupported type <class 'numpy.ndarray'> (a host array in a "
                        "device operation)")
    if isinstance(value, (list, tuple)):
        for v in value:
            _refuse_host(v)
    elif isinstance(value, dict):
        for v in value.values():
            _refuse_host(v)


def _refuse_other_devices(arrays):
    """CuPy's element-wise kernels refuse an array that is not on the current device."""
    for a in arrays:
        if isinstance(a, ndarray) and a.device_id != current_device():
            raise ValueError(f"Array device must be same as the current device: array device "
                             f"= {a.device_id} while current = {current_device()}")


# .device: the current device's id;
# .depth: NumPy functions running on stand-in arrays; .listed: inside an operation that
# WORK lists already (its inner operations are not listed again)
_inside = threading.local()

# What a call asked the device to do, in order: each entry would be a launch, a memset or
# a copy on a GPU, each of which costs CuPy's host tens of microseconds (allocations and
# views are not listed). install() empties it.
WORK = []


_NO_WORK = {"broadcast_to", "empty_like", "reshape", "may_share_memory", "shares_memory"}


def _did(what):
    if not getattr(_inside, "depth", 0) and not getattr(_inside, "listed", 0):
        WORK.append(what)


def current_device():
    """The current device's id (``with cp.cuda.Device(k):`` sets it), 0 by default."""
    return getattr(_inside, "device", 0)


class ndarray(np.ndarray):
    """NumPy memory under a CuPy-like type (its module name is what the dispatch checks).
    Like CuPy's, an array lives on a device: a new one on the current device, a view on its
    base's."""

    def __array_finalize__(self, obj):
        self.device_id = getattr(obj, "device_id", None)
        if self.device_id is None:
            self.device_id = current_device()

    @property
    def device(self):
        return Device(self.device_id)

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def get(self, out=None, stream=None, blocking=True):
        _did("copy to host")
        if out is None:
            return np.array(self)
        out[...] = self
        return out

    def astype(self, dtype, *args, **kwargs):
        if np.dtype(dtype) != self.dtype or kwargs.get("copy", True):
            _did("astype")
        with np.errstate(all="ignore"):     # CuPy's casts overflow to inf silently
            return super().astype(dtype, *args, **kwargs)

    def __setitem__(self, key, value):
        _did("copy")
        super().__setitem__(key, value)

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) or (isinstance(key, tuple) and any(
                isinstance(k, np.ndarray) for k in key)):
            _did("take")                    # advanced indexing: a gather kernel
        item = super().__getitem__(key)
        # CuPy has no scalars: an element is a 0-d array
        return on_device(np.asarray(item)) if isinstance(item, np.generic) else item

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "order" in kwargs:       # a NumPy ufunc keyword that CuPy's ufuncs refuse
            raise TypeError(f"Wrong arguments {{'order': {kwargs['order']!r}}}")
        if not getattr(_inside, "depth", 0):
            _refuse_host(inputs)
            _refuse_host(kwargs)
            _refuse_other_devices(inputs)
        _did(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        plain = [i.view(np.ndarray) if isinstance(i, ndarray) else i for i in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in out)
        with np.errstate(all="ignore"):     # a GPU raises no floating-point warnings
            result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(on_device(np.asarray(r)) for r in result)
        return on_device(np.asarray(result))     # CuPy reduces to 0-d arrays, not scalars

    def __array_function__(self, func, types_, args, kwargs):
        if not getattr(_inside, "depth", 0):    # NumPy's own nested calls mix freely
            _refuse_host(args)
            _refuse_host(kwargs)
        if func.__name__ not in _NO_WORK:
            _did(func.__name__)
        _inside.depth = getattr(_inside, "depth", 0) + 1
        try:
            result = super().__array_function__(func, types_, args, kwargs)
        finally:
            _inside.depth -= 1
        # NumPy's C functions (where, concatenate, ...) return base-class arrays; CuPy's
        # functions return CuPy arrays
        if isinstance(result, (tuple, list)):
            return type(result)(on_device(r) for r in result)
        return on_device(result)


ndarray.__module__ = "cupy._core.core"


def on_device(a):
    """A host array's copy-free view as a stand-in device array."""
    return a.view(ndarray) if isinstance(a, np.ndarray) else a


def _wrap(fn, work=None):
    """`fn` returning device arrays; `work` names what it asks of the device (None: nothing,
    an allocation or a view)."""
    def call(*args, **kwargs):
        if not work:
            return on_device(fn(*args, **kwargs))
        _did(work)
        _inside.listed = getattr(_inside, "listed", 0) + 1   # not again for its ufunc
        try:
            return on_device(fn(*args, **kwargs))
        finally:
            _inside.listed -= 1
    return call


def _poisoned(make):
    """`make` (np.empty or np.empty_like) with every byte set: NaN in any float dtype, -1 in
    any integer one. A device's fresh memory holds whatever was there before, so reading
    an element no kernel wrote is a bug, which this makes show."""
    def poisoned(*args, **kwargs):
        a = make(*args, **kwargs)
        # its own buffer of nbytes, in some order of the axes (empty_like keeps the input's)
        ctypes.memset(a.__array_interface__["data"][0], 0xFF, a.nbytes)
        return a
    return poisoned


def _copied(out, a):
    return not (isinstance(a, np.ndarray)
                and np.shares_memory(out.view(np.ndarray), a.view(np.ndarray)))


def _asarray(a, dtype=None):
    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        # CuPy copies a host array's bytes as they lie and reads them as native numbers
        # (cupy/cupy#3652): a big-endian array arrives as other values
        a = a.view(a.dtype.newbyteorder("="))
    out = np.asarray(a, dtype=dtype)
    if _copied(out, a):
        _did("asarray")
    return on_device(out)


def _ascontiguousarray(a):
    out = np.ascontiguousarray(a)
    if _copied(out, a):
        _did("ascontiguousarray")
    return on_device(out)


class Event:
    done = True

    def __init__(self, **_):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class Stream:
    """The current stream: waiting for it is listed as device work."""

    def synchronize(self):
        _did("synchronize")


class Device:
    """A device by id (the current one without); ``with`` makes it current."""

    def __init__(self, device=None):
        self.id = current_device() if device is None else device
        self.attributes = {"MultiProcessorCount": 3}
        self._outer = []

    def __enter__(self):
        self._outer.append(current_device())
        _inside.device = self.id
        return self

    def __exit__(self, *exc):
        _inside.device = self._outer.pop()


class TimingEvent(Event):
    """A CUDA event that times on the CPU: ``record`` reads the clock."""

    def __init__(self, **_):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()


def for_benchmarks(cp, compute_capability="90", seed=0):
    """`cp` with what the benchmark scripts (gpu_sweep.py, gpu_ncu.py) call beyond the
    backend: events that time on the CPU and the milliseconds between them, a device's
    synchronize (nothing to wait for) and compute capability, the memory pool's
    free_all_blocks, and random arrays."""
    rng = np.random.default_rng(seed)
    cp.random = types.SimpleNamespace(
        standard_normal=lambda shape, dtype: on_device(
            rng.standard_normal(shape).astype(dtype)),
        randint=lambda low, high, n: on_device(rng.integers(low, high, n)))
    cp.cuda.Event = TimingEvent
    cp.cuda.get_elapsed_time = lambda start, end: 1e3 * (end.t - start.t)
    cp.cuda.Device = type("Device", (Device,), {
        "synchronize": lambda self: None, "compute_capability": compute_capability})
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    return cp


class _Module(types.SimpleNamespace):
    """The names set explicitly, and NumPy's other functions returning device arrays."""

    def __getattr__(self, name):
        value = getattr(np, name)
        return (_wrap(value, name) if callable(value) and not isinstance(value, type)
                else value)


def _fuse(fn):
    """cupy.fuse: the function's array operations, run unfused, listed as one kernel."""
    def fused(*args):
        _did("fused " + fn.__name__)
        _inside.listed = getattr(_inside, "listed", 0) + 1
        try:
            return fn(*args)
        finally:
            _inside.listed -= 1
    return fused


def fake_cupy():
    cp = _Module(
        ndarray=ndarray, float64=np.float64, int32=np.int32, int64=np.int64,
        uint64=np.uint64, nan=np.nan,
        asarray=_asarray,
        asnumpy=lambda a: np.array(a),
        empty=_wrap(_poisoned(np.empty)), empty_like=_wrap(_poisoned(np.empty_like)),
        zeros=_wrap(np.zeros, "zeros"), full=_wrap(np.full, "full"),
        where=_wrap(np.where, "where"),
        broadcast_to=_wrap(lambda a, s: np.broadcast_to(a, s, subok=True)),
        ascontiguousarray=_ascontiguousarray, isnan=_wrap(np.isnan, "isnan"),
        may_share_memory=np.may_share_memory,
        fuse=_fuse,
        cuda=types.SimpleNamespace(Device=Device, get_current_stream=Stream,
                                   Event=Event))
    cpx = types.SimpleNamespace(empty_pinned=lambda shape, dtype: np.zeros(shape, dtype))
    return cp, cpx


def _ll(n):
    return ctypes.c_longlong(n)       # a bare Python int would pass as a 32-bit C int


class HostKernel:
    """A 'kernel' that runs the host build of its template body over the whole problem."""

    def __init__(self, lib, kind, op, dtype, name):
        self.lib, self.kind, self.op, self.dtype, self.name = lib, kind, op, dtype, name
        self.launches = 0

    def __call__(self, grid, block, args, shared_mem=0):
        self.launches += 1
        _did("kernel " + (self.kind if self.kind != "reduce" else
                          self.name[4:self.name.index("<")]))
        assert isinstance(grid, tuple) and isinstance(block, tuple)
        # a kernel runs on the current device; another device's memory would fault there
        assert all(a.device_id == current_device() for a in args if isinstance(a, ndarray)), \
            ([a.device_id for a in args if isinstance(a, ndarray)], current_device())
        cargs = [cuda_host_lib.c_arg(np.asarray(a) if isinstance(a, np.ndarray) else a)
                 for a in args]
        code = cuda_host_lib.DTYPE_CODES.get(self.dtype)
        if self.kind == "rows":
            params = re.match(r"fx::rows(_cluster)?<(\d+), [^,]+, ([^,]+), (\d+), (\d+), "
                              r"(\w+)>", self.name)
            target = 0 if params.group(3) == "int" else 1
            cached = params.group(6) == "true"
            if params.group(1):                  # a cluster of K blocks per row
                assert grid[0] % int(params.group(4)) == 0
                self.lib.fx_host_set_cluster(int(params.group(4)))
            block_threads = int(params.group(5))
            lanes = block_threads if params.group(1) else int(params.group(4))
            try:
                assert self.lib.fx_host_rows(int(params.group(2)), code, target,
                                             int(cached), _ll(grid[0]), block_threads, lanes,
                                             *cargs) == 0
            finally:
                self.lib.fx_host_set_cluster(1)
        elif self.kind == "elementwise":
            indexed = re.fullmatch(r"fx::elementwise<\d+, [^,]+, \d+, (true|false)>",
                                    self.name).group(1) == "true"
            assert self.lib.fx_host_elementwise(S.ELEMENTWISE_OPS[self.op], code, int(indexed),
                                                _ll(grid[0]), _ll(block[0]), *cargs) == 0
        else:
            target = {S.mean_scale_kernel(t): i for i, t in enumerate(S.TARGETS)}[self.name]
            assert self.lib.fx_host_mean_scale(target, _ll(grid[0]), *cargs) == 0


def install(monkeypatch, lib, _gpu):
    """Point fastxent._gpu at the stand-in; returns ``(cp, kernels)``, the fake module and
    the list of kernels the backend has asked for, in order."""
    cp, cpx = fake_cupy()
    kernels = []
    WORK.clear()

    def kernel(kind, op, dtype, name):
        assert name in S.module(kind, op, dtype)[1]       # a name the module compiles
        kernels.append(HostKernel(lib, kind, op, dtype, name))
        return kernels[-1]

    # Dask registers its CuPy functions on first meeting a "cupy" type, by importing cupy
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(_gpu, "_cp", lambda: cp)
    monkeypatch.setattr(_gpu, "_cpx", lambda: cpx)
    monkeypatch.setattr(_gpu, "_kernel", kernel)
    return cp, kernels
