"""The GPU backend's CUDA sources, checked without a GPU.

1. nvcc compiles every module the backend can request, with the backend's options, for
   sm_80 and sm_90: every name expression becomes a kernel, and none spills registers.
2. g++ compiles the same sources' host+device code (the row and element bodies the kernels
   run), and the tests run it on the CPU with the argument tuples the GPU launcher builds
   (fastxent._gpu_plan), against fastxent's CPU backend (itself tested against PyTorch):
   every class-axis op and element-wise loss, every storage dtype, both row-cache modes,
   strided layouts, weights, smoothing, ignored and invalid targets, non-finite logits.
"""
import os
import re
import shutil

import numpy as np
import pytest

import fastxent as fx
from fastxent import _cuda_sources as S
from fastxent import _gpu_plan as P
import background
import cuda_host_lib
from cuda_host_lib import DTYPE_CODES, c_arg as _c

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
NP_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
             "float16": np.dtype(np.float16), "bfloat16": BF16}

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None and not os.environ.get("CI"),
                                reason="nvcc not installed (CI has it)")
pytestmark = pytest.mark.main_run_only


# --- 1. nvcc -----------------------------------------------------------------------------

def _translation_unit(file, names):
    """One file's source with `names` instantiated (their addresses taken, so nvcc
    instantiates exactly the name expressions NVRTC would)."""
    keep = ",\n".join(f"    (void*)&{n}" for n in names)
    return S.source(file) + f"\nvoid* fx_instantiations[] = {{\n{keep}\n}};\n"


ARCHS = ("sm_80", "sm_90")
FILES = ("rows.cu", "elementwise.cu", "reduce.cu")
# Two of gpu_sweep.py's variant modules, between them every launch knob and block size it
# compiles that the backend does not (the rest differ only in the knobs' values).
SWEEP_VARIANTS = (("float32", {"FX_IN_FLIGHT": 8, "FX_MIN_BLOCKS": 1, "FX_PREFETCH": 1}),
                  ("bfloat16", {"FX_IN_FLIGHT": 4, "FX_MIN_BLOCKS": 2, "FX_PREFETCH": 0}))


def _sweep_module(gpu_sweep, dtype, knobs):
    found = [(opts, names) for d, k, opts, names in gpu_sweep.modules()
             if d == dtype and k == knobs]
    assert len(found) == 1, (dtype, knobs)
    return found[0]


@pytest.fixture(scope="module")
def nvcc_runs(tmp_path_factory, gpu_sweep):
    """Every nvcc compile, started at once in the background; the tests wait for their own.
    Why: each compile of rows.cu takes 45 to 85 s on one core (half of it ptxas), and in
    turn with NVRTC's they took two of the suite's six minutes on two cores."""
    if NVCC is None:
        yield None
        return
    jobs = {}
    for file in FILES:
        names = [n for (_, _, _, f, ns) in S.all_modules() if f == file for n in ns]
        for arch in ARCHS:
            jobs[file, arch] = file, S.OPTIONS, names, arch
    for dtype, knobs in SWEEP_VARIANTS:
        options, names = _sweep_module(gpu_sweep, dtype, knobs)
        jobs["sweep", dtype] = "rows.cu", options, names, "sm_90"
    jobs["sweep", "clusters"] = ("rows.cu", S.OPTIONS,
                                 [n for _, _, names in gpu_sweep.cluster_modules()
                                  for n in names], "sm_90")
    runs = {}
    for key, (file, options, names, arch) in jobs.items():
        d = tmp_path_factory.mktemp(f"nvcc_{arch}")
        src = d / file
        src.write_text(_translation_unit(file, names))
        proc = background.start([NVCC, *options, f"-arch={arch}", "-cubin",
                                 "-Werror", "all-warnings", "-Xptxas", "-v",
                                 "-o", str(d / "out.cubin"), str(src)], d / "log")
        runs[key] = proc, d / "log", names
    yield runs
    background.stop(proc for proc, _, _ in runs.values())


def _entries(nvcc_runs, key):
    """Wait for one compile; its log and the entry functions ptxas compiled."""
    assert nvcc_runs is not None, "nvcc is required on CI"
    proc, log_path, names = nvcc_runs[key]
    code, log = background.result(proc, log_path, timeout=600)
    assert code == 0, log[-6000:]
    entries = re.findall(r"Compiling entry function '(\w+)'", log)
    assert len(entries) == len(names) == len(set(entries)), (len(entries), len(names))
    return log, entries


def _nvrtc_program(nvrtc, file, names, options):
    """One NVRTC program: `file` with `names` as name expressions, compiled with `options`
    and every name lowered; the caller destroys it."""
    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    options = [o.encode() for o in S.OPTIONS + options]
    err, prog = nvrtc.nvrtcCreateProgram(S.source(file).encode(), file.encode(), 0, [], [])
    assert err == ok
    for name in names:
        assert nvrtc.nvrtcAddNameExpression(prog, name.encode())[0] == ok
    err, = nvrtc.nvrtcCompileProgram(prog, len(options), options)
    if err != ok:
        size = nvrtc.nvrtcGetProgramLogSize(prog)[1]
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        pytest.fail(f"{file}: {log.decode()[:3000]}")
    for name in names:
        assert nvrtc.nvrtcGetLoweredName(prog, name.encode())[0] == ok, name
    return prog


@pytest.mark.usefixtures("nvcc_runs")    # nvcc compiles on the other core meanwhile
def test_every_module_compiles_with_nvrtc(gpu_sweep):
    """NVRTC is what CuPy's RawModule runs (cuda-bindings + the NVRTC wheel work without a
    driver): the sources with the backend's options, every name expression instantiated
    and lowered.

    Each file is one program holding every name of every module the backend builds from it
    (a module compiles a subset of them, with the same options), gpu_sweep.py's cluster
    kernels included. NVRTC's front end is where it differs from nvcc's (no host compiler,
    fewer builtins: an undefined __builtin_memcpy fails here), so the programs stop after
    it; the nvcc tests take the same kernels through code generation. Compiled to PTX,
    rows.cu's 140 kernels took NVRTC a minute. The cluster kernels go on to PTX, which
    must carry their launch bounds."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")
    front = ("-arch=compute_90", "--device-as-default-execution-space",
             "--fdevice-syntax-only")
    programs = {}
    for _, _, _, file, names in S.all_modules():
        programs.setdefault(file, []).extend(names)
    clusters = [n for _, _, names in gpu_sweep.cluster_modules() for n in names]
    programs["rows.cu"] += clusters
    for file, names in programs.items():
        assert len(set(names)) == len(names), file
        nvrtc.nvrtcDestroyProgram(_nvrtc_program(nvrtc, file, names, front))
    prog = _nvrtc_program(nvrtc, "rows.cu", clusters, front[:2])
    try:
        _check_cluster_launch_bounds(nvrtc, prog, len(clusters))
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _check_cluster_launch_bounds(nvrtc, prog, n):
    """Each cluster kernel's PTX asks for 512 threads' worth of blocks per multiprocessor:
    a 256-thread block two (so each keeps to 128 registers), a 512-thread block one."""
    size = nvrtc.nvrtcGetPTXSize(prog)[1]
    ptx = b" " * size
    nvrtc.nvrtcGetPTX(prog, ptx)
    bounds = re.findall(r"\.maxntid (\d+), 1, 1\s+\.minnctapersm (\d+)\s+\.explicitcluster",
                        ptx.decode())
    assert len(bounds) == n and {(b, m) for b, m in bounds} == {("512", "1"), ("256", "2")}, \
        bounds


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", FILES)
def test_every_kernel_compiles_with_nvcc(nvcc_runs, file, arch):
    log, entries = _entries(nvcc_runs, (file, arch))
    # Each entry's resource line: no float32 / 16-bit kernel spills registers. (float64
    # kernels with probability targets call libdevice's double exp and log and may spill a
    # few bytes; they are not the hot path.)
    spills = dict(re.findall(r"Function properties for (\w+)\n\s+\d+ bytes stack frame, "
                             r"(\d+) bytes spill stores", log))
    # and the row kernels' reduced-loss epilogue, a function of its own (not inlined)
    called = set(spills) - set(entries)
    assert set(entries) <= set(spills) and all("finish_rows" in f for f in called), called
    assert all(spills[f] == "0" for f in called), {f: spills[f] for f in called}
    hot = [e for e in entries if not re.match(r"_ZN2fx\w+?ILi\d+Ed", e)]
    assert hot and all(spills[e] == "0" for e in hot), {e: spills[e] for e in hot
                                                        if spills[e] != "0"}


@needs_nvcc
@pytest.mark.parametrize("dtype", [d for d, _ in SWEEP_VARIANTS])
def test_sweep_variants_compile_with_nvcc(nvcc_runs, dtype):
    """The launch knobs reach the compiler: gpu_sweep.py's variants build, and with
    FX_MIN_BLOCKS=2 a 512-thread block's kernels keep to 64 registers a thread, where the
    backend's own (one block) take more. Spills are allowed here: a variant that spills is
    measured, not shipped."""
    log, entries = _entries(nvcc_runs, ("sweep", dtype))
    knobs = dict(SWEEP_VARIANTS)[dtype]
    used = dict(re.findall(r"Compiling entry function '(\w+)'.*?\n(?:.*\n)*?.*?Used (\d+) "
                           r"registers", log))
    assert set(used) == set(entries)
    cap = 65536 // (512 * knobs["FX_MIN_BLOCKS"])
    block512 = [int(used[e]) for e in entries if "Li512ELi512E" in e]
    assert block512 and max(block512) <= cap, (cap, block512)


@needs_nvcc
def test_cluster_kernels_compile_for_sm_90(nvcc_runs):
    """gpu_sweep.py's cluster-per-row kernels (distributed shared memory, cluster barriers;
    inline PTX, no headers) build for sm_90 without spills."""
    log, entries = _entries(nvcc_runs, ("sweep", "clusters"))
    assert all("rows_cluster" in e for e in entries)
    spills = dict(re.findall(r"Function properties for (\w+)\n\s+\d+ bytes stack frame, "
                             r"(\d+) bytes spill stores", log))
    assert set(entries) <= set(spills) and set(spills.values()) == {"0"}, spills
    # a cluster block of 256 threads is held to two blocks' registers per multiprocessor
    used = dict(re.findall(r"Compiling entry function '(\w+)' for 'sm_90'\n.*?"
                           r"Used (\d+) registers", log, re.S))
    block256 = [int(used[e]) for e in entries if "Li256ELb1E" in e]
    assert block256 and max(block256) <= 128, block256


def test_cluster_plans():
    """A cluster config's grid is a multiple of its blocks, and each block caches a slice
    of whole vectors, at least C / K classes."""
    for C, k in ((128256, 4), (128256, 2), (3, 8), (50000, 8)):
        config = (512 * k, 512, True)
        per = P.cluster_slice_classes(C, k)
        assert per % 8 == 0 and -(-C // k) <= per < -(-C // k) + 8
        assert P.row_shared_bytes(C, config, 4) == P.row_cache_bytes(per, 4)
        for nrows in (1, 7, 16384):
            grid = P.row_grid(nrows, config, 132)
            assert grid % k == 0 and k <= grid <= k * nrows
    assert S.row_kernel("ce_index", "bfloat16", "int64", (2048, 512, True)) == \
        "fx::rows_cluster<0, fx::bf16, long long, 4, 512, true>"


def test_tuning_options_name_known_knobs():
    assert S.tuning_options() == S.OPTIONS
    assert S.tuning_options(FX_MIN_BLOCKS=2, FX_IN_FLIGHT=8) == S.OPTIONS + (
        "-DFX_IN_FLIGHT=8", "-DFX_MIN_BLOCKS=2")
    with pytest.raises(ValueError, match="FX_IN_FLIGHTS"):
        S.tuning_options(FX_IN_FLIGHTS=8)
    for bad in (2.0, True, "4"):
        with pytest.raises(ValueError, match="FX_MIN_BLOCKS must be an int"):
            S.tuning_options(FX_MIN_BLOCKS=bad)
    with pytest.raises(ValueError, match="FX_MIN_BLOCKS must be a positive int"):
        S.tuning_options(FX_MIN_BLOCKS=0)
    assert S.tuning_options(FX_PREFETCH=0) == S.OPTIONS + ("-DFX_PREFETCH=0",)
    with pytest.raises(ValueError, match="FX_PREFETCH must be 0 or 1"):
        S.tuning_options(FX_PREFETCH=2)
    # the defaults are the source's own
    code = S.source("rows.cu")
    for knob, value in S.TUNING_DEFAULTS.items():
        assert f"#define {knob} {value}\n" in code


def test_catalogue_names_every_op_and_dtype():
    modules = S.all_modules()
    assert {(m[1], m[2]) for m in modules} == {
        (op, dt) for dt in S.DTYPES for op in (*S.ROW_OPS, *S.ELEMENTWISE_OPS)} | {
        ("reduce", "any")}
    for kind, op, dtype, file, names in modules:
        assert names and all(n.startswith("fx::") for n in names)
        code = S.source(file)
        assert '#include "' not in code and "FX_DEVICE_CUH" in code


# --- 2. the kernel bodies on the CPU -------------------------------------------------------

def _finite_halves():
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    return h[np.isfinite(h)]


def test_16_bit_conversions_match_numpy(cuda_host):
    bits = np.arange(1 << 16, dtype=np.uint16)
    f16 = np.array([cuda_host.fx_host_from_f16(int(b)) for b in bits], np.float32)
    np.testing.assert_array_equal(f16, bits.view(np.float16).astype(np.float32))
    b16 = np.array([cuda_host.fx_host_from_bf16(int(b)) for b in bits], np.float32)
    np.testing.assert_array_equal(b16, bits.view(BF16).astype(np.float32))
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(4000).astype(np.float32) * np.float32(10.0) ** rng.integers(
            -9, 6, 4000).astype(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 6e-8, 3e-8,
                  2.98e-8, 5.96e-8, 1e-40, 3.4e38], np.float32),
        _finite_halves() + np.float32(1e-4),      # between neighbours: rounding ties
    ])
    with np.errstate(over="ignore"):
        halves = values.astype(np.float16).view(np.uint16)
        bhalves = values.astype(BF16).view(np.uint16)
    for v, want, want_b in zip(values, halves, bhalves):
        got = cuda_host.fx_host_to_f16(float(v))
        assert got == want or (np.isnan(v) and (got & 0x7c00) == 0x7c00 and got & 0x3ff), v
        got_b = cuda_host.fx_host_to_bf16(float(v))
        assert got_b == want_b or (np.isnan(v) and np.isnan(
            np.uint16(got_b).view(BF16).astype(np.float32))), v


def _rows(host, op, x, *, t=None, q=None, w=None, eps=0.0, go=None, ignore_index=-100,
          axis=1, cached=False, in_place=False, lanes=1):
    """Run fx::rows's body for `op` on `x` (class axis `axis`) with `lanes` lanes per row
    (threads meeting at every reduction), or ``("cluster", K)``: rows_cluster's body, K
    blocks of one lane on each row, each on its slice of the classes. Returns (rows, out,
    err)."""
    xm = np.moveaxis(x, axis, 1)
    outer, C = xm.shape[0], xm.shape[1]
    x3 = xm.reshape(outer, C, -1)
    assert np.shares_memory(x3, x) or x.size == 0
    inner = x3.shape[2]
    t2 = None if t is None else t.reshape(outer, inner)
    q3 = None if q is None else np.moveaxis(q, axis, 1).reshape(outer, C, inner)
    wants_out = op not in ("logsumexp",) and (go is not None or op in ("softmax",
                                                                       "log_softmax"))
    if in_place:
        g3 = x3
    elif wants_out:
        g = np.full(x.shape, np.nan, x.dtype)          # poisoned: every element is written
        g3 = np.moveaxis(g, axis, 1).reshape(outer, C, inner)
    else:
        g3 = None
    gs2 = None if go is None else np.ascontiguousarray(go, np.float64).reshape(outer, inner)
    rows = np.full(outer * inner, np.nan)
    err = np.zeros(1, np.int32)
    args = P.row_args(x3, t2=t2, ignore_index=ignore_index, q3=q3,
                      w=None if w is None else np.ascontiguousarray(w, np.float64), eps=eps,
                      gscale2=gs2, rows_out=rows, g3=g3, err=err)
    target = 0 if t is not None and t.dtype == np.int32 else 1
    cluster = lanes[1] if isinstance(lanes, tuple) else 1
    host.fx_host_set_lanes(1 if cluster > 1 else lanes)
    host.fx_host_set_cluster(cluster)
    try:
        code = host.fx_host_rows(S.ROW_OPS[op], DTYPE_CODES[x.dtype.name], target,
                                 int(cached), _c(np.int64(1)), 1, 1, *map(_c, args))
    finally:
        host.fx_host_set_lanes(1)
        host.fx_host_set_cluster(1)
    assert code == 0
    out = None if g3 is None else np.moveaxis(g3.reshape(xm.shape), 1, axis)
    return rows.reshape(xm.shape[:1] + xm.shape[2:]), out, int(err[0])


_close = cuda_host_lib.assert_close
# one lane, three lanes meeting at each reduction, a cluster of three blocks on slices
LANES = [1, 3, ("cluster", 3)]
LANE_IDS = ["1 lane", "3 lanes", "cluster of 3"]


def _data(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(NP_DTYPES[dtype])


LAYOUTS = {
    "rows": dict(shape=(7, 5), axis=1),
    "long rows": dict(shape=(3, 300), axis=1),          # aligned rows: four per load
    "odd long rows": dict(shape=(3, 301), axis=1),      # rows 1 and 2 start unaligned
    # a view one element in: its rows start off the vector boundary where the fresh
    # gradient's rows start on it, so the output pass cannot pair their vectors
    "offset rows": dict(shape=(3, 300), axis=1, offset=1),
    "spatial": dict(shape=(3, 4, 2, 3), axis=1),
    "class-last": dict(shape=(2, 3, 6), axis=2),
    "fortran": dict(shape=(6, 4), axis=1, order="F"),
}


def _layout(rng, name, dtype):
    spec = LAYOUTS[name]
    x = _data(rng, spec["shape"], dtype)
    if spec.get("offset"):
        k = spec["offset"]
        wide = np.empty(x.shape[:-1] + (x.shape[-1] + k,), x.dtype)
        wide[..., k:] = x
        x = wide[..., k:]
    if spec.get("order") == "F":
        x = np.asfortranarray(x)
    return x, spec["axis"]


@pytest.mark.parametrize("lanes", LANES, ids=LANE_IDS)
@pytest.mark.parametrize("cached", [False, True], ids=["global", "cached"])
@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("options", ["plain", "weight", "smoothing", "weight+smoothing",
                                     "ignored", "int32"])
def test_cross_entropy_index_rows(cuda_host, lanes, layout, dtype, cached, options):
    rng = np.random.default_rng(len(layout) + len(options))
    x, axis = _layout(rng, layout, dtype)
    C = x.shape[axis]
    loss_shape = x.shape[:axis] + x.shape[axis + 1:]
    t = rng.integers(0, C, loss_shape).astype(np.int32 if options == "int32" else np.int64)
    kw = {}
    if "weight" in options:
        kw["weight"] = rng.uniform(0.2, 2.0, C)
    if "smoothing" in options:
        kw["label_smoothing"] = 0.15
    if options == "ignored":
        t.flat[::3] = -100
    go = rng.uniform(0.5, 1.5, loss_shape)
    rows, grad, err = _rows(cuda_host, "ce_index", x, t=t, w=kw.get("weight"),
                            eps=kw.get("label_smoothing", 0.0), go=go, axis=axis,
                            cached=cached, lanes=lanes)
    want, want_grad = fx.cross_entropy(x, t, axis=axis, reduction="none", return_grad=True,
                                       grad_output=go, **kw)
    assert err == 0
    _close(rows, want.astype(np.float64) if dtype in ("float32", "float64") else
           fx.cross_entropy(x.astype(np.float32), t, axis=axis, reduction="none", **kw),
           dtype, "loss")
    _close(grad, want_grad, dtype, "grad")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_non_finite_and_in_place(cuda_host, dtype):
    x = np.array([[1.0, -np.inf, 2.0], [np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0],
                  [-np.inf, -np.inf, -np.inf], [1e30, 0.0, -1e30], [3.0, 1.0, 0.0],
                  [-np.inf, 0.0, 1.0], [-np.inf, -np.inf, 1.0]],
                 NP_DTYPES[dtype])
    t = np.array([0, 1, 2, 0, 1, -100, 2, 2])
    for eps, cached, lanes in ((0.0, False, 1), (0.2, False, 1), (0.2, True, 1),
                               (0.0, False, 2), (0.2, False, 2), (0.2, True, 2),
                               (0.0, True, ("cluster", 2)), (0.2, True, ("cluster", 2))):
        go = np.ones(len(t))
        rows, grad, _ = _rows(cuda_host, "ce_index", x, t=t, eps=eps, go=go, cached=cached,
                              lanes=lanes)
        want, want_grad = fx.cross_entropy(x, t, reduction="none", label_smoothing=eps,
                                           return_grad=True, grad_output=go)
        _close(rows, want, dtype, f"loss eps={eps}")
        _close(grad, want_grad, dtype, f"grad eps={eps}")
    # grad_out=input: the gradient overwrites the logits
    x2 = np.random.default_rng(1).standard_normal((5, 300)).astype(NP_DTYPES[dtype])
    t2 = np.arange(5) * 7
    want, want_grad = fx.cross_entropy(x2, t2, reduction="none", return_grad=True,
                                       grad_output=np.ones(5), weight=np.linspace(1, 2, 300),
                                       label_smoothing=0.1)
    for cached, lanes in ((False, 1), (True, 1), (False, 4), (True, 4),
                          (True, ("cluster", 3)), (False, ("cluster", 3))):
        work = x2.copy()
        rows, grad, _ = _rows(cuda_host, "ce_index", work, t=t2, go=np.ones(5), in_place=True,
                              w=np.linspace(1, 2, 300), eps=0.1, cached=cached, lanes=lanes)
        _close(rows, want, dtype, "in-place loss")
        _close(work, want_grad, dtype, "in-place grad")


@pytest.mark.parametrize("lanes", LANES, ids=LANE_IDS)
@pytest.mark.parametrize("cached", [False, True], ids=["global", "cached"])
@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_non_finite_weight_of_an_untargeted_class(cuda_host, lanes, cached,
                                                                 dtype, bad, eps):
    # Without smoothing the weight never reaches a row (finite results, as in PyTorch);
    # with it, every row is NaN or inf in that class, and ignored rows are NaN throughout.
    rng = np.random.default_rng(6)
    x = _data(rng, (6, 301), dtype)
    t = np.array([0, 5, -100, 300, 7, -100])
    w = rng.uniform(0.5, 2.0, 301)
    w[4] = bad
    go = rng.uniform(0.5, 1.5, 6)
    rows, grad, err = _rows(cuda_host, "ce_index", x, t=t, w=w, eps=eps, go=go, cached=cached,
                            lanes=lanes)
    want, want_grad = fx.cross_entropy(x, t, weight=w, label_smoothing=eps, reduction="none",
                                       return_grad=True, grad_output=go)
    assert err == 0
    if eps == 0:
        assert np.isfinite(grad).all()
    else:
        assert np.isnan(grad[[2, 5]]).all()
    _close(grad, want_grad, dtype, "grad")
    _close(rows, want if dtype in ("float32", "float64") else
           fx.cross_entropy(x.astype(np.float32), t, weight=w, label_smoothing=eps,
                            reduction="none"), dtype, "loss")


def test_invalid_targets_flag_the_error_and_poison_their_row(cuda_host):
    x = np.zeros((4, 3), np.float32)
    for op in ("ce_index", "nll"):
        for bad, lanes in ((3, 1), (-1, 2), (-101, 3), (3, ("cluster", 2))):
            t = np.array([0, bad, 2, -100])
            rows, grad, err = _rows(cuda_host, op, x, t=t, go=np.ones(4), lanes=lanes)
            assert err == 1
            assert np.isnan(rows[1]) and np.isnan(grad[1]).all()
            assert np.isfinite(rows[[0, 2, 3]]).all() and np.isfinite(grad[[0, 2, 3]]).all()
        rows, grad, err = _rows(cuda_host, op, x, t=np.array([0, 1, 2, -100]), go=np.ones(4))
        assert err == 0


@pytest.mark.parametrize("lanes", LANES, ids=LANE_IDS)
@pytest.mark.parametrize("cached", [False, True], ids=["global", "cached"])
@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cross_entropy_probability_rows(cuda_host, lanes, layout, dtype, cached):
    rng = np.random.default_rng(7)
    x, axis = _layout(rng, layout, dtype)
    q = rng.uniform(0, 1, x.shape)
    q = (q / q.sum(axis=axis, keepdims=True)).astype(x.dtype)
    C = x.shape[axis]
    w = rng.uniform(0.5, 1.5, C)
    go = rng.uniform(0.5, 1.5, x.shape[:axis] + x.shape[axis + 1:])
    rows, grad, err = _rows(cuda_host, "ce_prob", x, q=q, w=w, eps=0.1, go=go, axis=axis,
                            cached=cached, lanes=lanes)
    want, want_grad = fx.cross_entropy(x, q, weight=w, label_smoothing=0.1, axis=axis,
                                       reduction="none", return_grad=True, grad_output=go)
    _close(rows, want if dtype in ("float32", "float64") else fx.cross_entropy(
        x.astype(np.float32), q.astype(np.float32), weight=w, label_smoothing=0.1,
        axis=axis, reduction="none"), dtype, "loss")
    _close(grad, want_grad, dtype, "grad")


@pytest.mark.parametrize("lanes", LANES, ids=LANE_IDS)
@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nll_rows(cuda_host, lanes, layout, dtype):
    rng = np.random.default_rng(11)
    x, axis = _layout(rng, layout, dtype)
    C = x.shape[axis]
    t = rng.integers(0, C, x.shape[:axis] + x.shape[axis + 1:])
    t.flat[::4] = -100
    w = rng.uniform(0.5, 1.5, C)
    go = rng.uniform(0.5, 1.5, t.shape)
    rows, grad, err = _rows(cuda_host, "nll", x, t=t, w=w, go=go, axis=axis, lanes=lanes)
    want, want_grad = fx.nll_loss(x, t, weight=w, axis=axis, reduction="none",
                                  return_grad=True, grad_output=go)
    _close(rows, want, dtype, "loss")
    _close(grad, want_grad, dtype, "grad")


@pytest.mark.parametrize("lanes", LANES, ids=LANE_IDS)
@pytest.mark.parametrize("cached", [False, True], ids=["global", "cached"])
@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_transform_rows(cuda_host, lanes, layout, dtype, cached):
    rng = np.random.default_rng(13)
    x, axis = _layout(rng, layout, dtype)
    rows, _, _ = _rows(cuda_host, "logsumexp", x, axis=axis, cached=cached, lanes=lanes)
    _close(rows, fx.logsumexp(x.astype(np.float64), axis=axis), dtype, "logsumexp")
    for op, fn in (("softmax", fx.softmax), ("log_softmax", fx.log_softmax)):
        _, out, _ = _rows(cuda_host, op, x, axis=axis, cached=cached, lanes=lanes)
        _close(out, fn(x, axis=axis), dtype, op)


def test_transforms_non_finite(cuda_host):
    x = np.array([[1.0, np.inf, 0.0], [np.inf, np.nan, 0.0], [-np.inf, -np.inf, -np.inf],
                  [np.nan, 1.0, 2.0], [1e300, -1e300, 0.0], [np.nan, -np.inf, -np.inf],
                  [-np.inf, 0.0, 1.0]])
    for cached, lanes in ((False, 1), (True, 1), (False, 2), (True, 2),
                          (True, ("cluster", 2))):
        rows, _, _ = _rows(cuda_host, "logsumexp", x, cached=cached, lanes=lanes)
        _close(rows, fx.logsumexp(x, axis=1), "float64", "logsumexp")
        for op, fn in (("softmax", fx.softmax), ("log_softmax", fx.log_softmax)):
            _, out, _ = _rows(cuda_host, op, x, cached=cached, lanes=lanes)
            _close(out, fn(x, axis=1), "float64", op)


def _at_offset(values, offset):
    """A copy of the 1-d `values` that starts `offset` elements past a 16-byte boundary."""
    size = values.dtype.itemsize
    buf = np.empty(values.size + 16 // size + offset, values.dtype)
    start = (-buf.ctypes.data % 16) // size + offset
    out = buf[start:start + values.size]
    out[...] = values
    assert out.ctypes.data % 16 == offset * size
    return out


def _run_elementwise(host, op, dtype, args, *, indexed=False, grid=3, block=4):
    """elementwise.cu's kernel on the host build, `grid` blocks of `block` threads run
    thread by thread, with the launcher's argument tuple `args`."""
    assert host.fx_host_elementwise(S.ELEMENTWISE_OPS[op], DTYPE_CODES[dtype],
                                    _c(np.int32(indexed)), _c(np.int64(grid)),
                                    _c(np.int64(block)), *map(_c, args)) == 0


def _elementwise(host, op, x, y, *, w=None, pw=None, log_target=False, go=None,
                 spread=False, per_element=False, offset=None):
    """`spread`: weights, pos_weight and grad_output given as numbers are passed as arrays
    of that value (unit stride), not broadcast (stride 0, which the kernel reads once).
    `per_element`: a block per element, whose partial is that element's loss in the
    kernel's own arithmetic (before rounding to x's dtype); these partials are returned
    in place of the total. The target goes as a view of stride 2, which keeps each
    element on a thread of its own (a vector group of 16 bytes needs unit strides).
    `offset`: the loss and gradient start that many elements past a 16-byte boundary."""
    shape = x.shape

    def operand(v):
        v = np.broadcast_to(np.asarray(v, np.float64), shape)
        return (np.ascontiguousarray(v) if spread else v).reshape(1, 1, -1)

    x3, y3 = x.reshape(1, 1, -1), np.ascontiguousarray(y).reshape(1, 1, -1)
    if per_element:
        y3 = np.repeat(y3, 2, axis=2)[:, :, ::2]
    w3 = None if op == "kl_div" else operand(np.ones(1) if w is None else w)
    pw3 = None if pw is None else operand(pw)
    gs3 = None if go is None else operand(go)
    loss = np.full(shape, np.nan, x.dtype)
    grad = np.full(shape, np.nan, x.dtype)
    if offset is not None:
        loss, grad = (_at_offset(a.ravel(), offset).reshape(shape) for a in (loss, grad))
    grid, block = (max(x.size, 1), 1) if per_element else (3, 4)  # some blocks empty
    partial = np.full(grid, np.nan)
    total = np.full((), np.nan)
    err = np.zeros(1, np.int32)
    args = P.elementwise_args(x3, y3, w3=w3, pw3=pw3, log_target=log_target, gscale3=gs3,
                              loss3=loss.reshape(1, 1, -1),
                              g3=None if go is None else grad.reshape(1, 1, -1),
                              err=err, counter=np.zeros(1, np.int32),
                              partial=partial, out=total)
    _run_elementwise(host, op, x.dtype.name, args, grid=grid, block=block)
    return loss, grad, partial if per_element else float(total), int(err[0])


@pytest.mark.parametrize("dtype", list(NP_DTYPES))
def test_elementwise_losses(cuda_host, dtype):
    rng = np.random.default_rng(17)
    shape = (6, 5)
    logits = _data(rng, shape, dtype)
    p = rng.uniform(0.01, 0.99, shape).astype(NP_DTYPES[dtype])
    y = rng.uniform(0, 1, shape).astype(NP_DTYPES[dtype])
    w, pw, go = rng.uniform(0.5, 2, shape), rng.uniform(0.5, 3, shape[-1]), rng.uniform(
        0.5, 1.5, shape)
    cases = [
        ("bce_logits", logits, dict(w=w, pw=pw), fx.binary_cross_entropy_with_logits,
         dict(weight=w, pos_weight=pw)),
        ("bce_logits", logits, dict(), fx.binary_cross_entropy_with_logits, {}),
        ("bce", p, dict(w=w), fx.binary_cross_entropy, dict(weight=w)),
        ("kl_div", logits, dict(), fx.kl_div, {}),
        ("kl_div", logits, dict(log_target=True), fx.kl_div, dict(log_target=True)),
    ]
    for op, xin, kw, fn, fkw in cases:
        loss, grad, total, _ = _elementwise(cuda_host, op, xin, y, go=go, **kw)
        want, want_grad = fn(xin, y, reduction="none", return_grad=True, grad_output=go,
                             **fkw)
        _close(loss, want, dtype, f"{op} loss")
        _close(grad, want_grad, dtype, f"{op} grad")
        ref = fn(xin.astype(np.float64), y.astype(np.float64), reduction="sum",
                 **fkw) if dtype != "float64" else want.sum()
        _close(total, ref, "float32" if dtype != "float64" else dtype, f"{op} total")


@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("op", ["bce_logits", "bce", "kl_div"])
def test_elementwise_operands_of_one_value_are_read_once(cuda_host, op, dtype):
    # a weight, pos_weight and gradient scale of stride 0 are read and converted once per
    # thread (uniform_operands); the same values spread over every element give the same bits
    rng = np.random.default_rng(18)
    shape = (4, 9)
    x = (rng.uniform(0.05, 0.95, shape) if op == "bce" else
         rng.standard_normal(shape) * 3).astype(NP_DTYPES[dtype])
    y = rng.uniform(0, 1, shape).astype(NP_DTYPES[dtype])
    kw = {} if op == "kl_div" else dict(w=1.7)
    if op == "bce_logits":
        kw["pw"] = 2.5
    once = _elementwise(cuda_host, op, x, y, go=0.8, **kw)
    spread = _elementwise(cuda_host, op, x, y, go=0.8, spread=True, **kw)
    for a, b in zip(once, spread):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fn = {"bce_logits": fx.binary_cross_entropy_with_logits, "bce": fx.binary_cross_entropy,
          "kl_div": fx.kl_div}[op]
    fkw = {"w": "weight", "pw": "pos_weight"}
    want, want_grad = fn(x, y, reduction="none", return_grad=True, grad_output=np.full(
        shape, 0.8), **{fkw[k]: np.full(shape, v) for k, v in kw.items()})
    _close(once[0], want, dtype, "loss")
    _close(once[1], want_grad, dtype, "grad")


def _every_value(dtype, lo, hi):
    """Every finite value of a 16-bit dtype in [lo, hi], as that dtype."""
    values = np.arange(1 << 16, dtype=np.uint16).view(NP_DTYPES[dtype])
    with np.errstate(invalid="ignore"):         # the NaN patterns
        wide = values.astype(np.float64)
    return values[np.isfinite(wide) & (wide >= lo) & (wide <= hi)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_element_losses_keep_float_digits(cuda_host, dtype):
    """16-bit inputs take ln_approx, the series near 1 and exp_short (SHORT in
    elementwise.cu): every loss before rounding to 16 bits lies within 2**-17 of the
    float64 value (plus exp_short's |v| 2**-24), over every value of the dtype. The host
    build truncates log2 to the device's documented error; the device's approximate exp2
    adds its own 2**-22 on top, out of reach of this build."""
    exp_err = 60 * 2.0 ** -24                   # exp_short's rounding of v log2(e), |v| <= 60

    def check(op, x, y, want_of, rtol=2.0 ** -17, **kw):
        """y: the target, an array or one value; want_of(x, y) in float64."""
        yt = np.broadcast_to(np.asarray(y, x.dtype), x.shape)
        _, _, got, _ = _elementwise(cuda_host, op, x, yt, per_element=True, **kw)
        with np.errstate(divide="ignore", invalid="ignore"):
            want = want_of(x.astype(np.float64), yt.astype(np.float64))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"{op} {kw}")

    p = _every_value(dtype, 0.0, 1.0)
    for y in (1.0, 0.0, 0.3):      # each log alone, then both together (same signs)
        check("bce", p, y, lambda p, y: -(y * np.maximum(np.log(p), -100)
                                          + (1 - y) * np.maximum(np.log1p(-p), -100)))
    x = _every_value(dtype, -60.0, 60.0)
    # y = 1 leaves softplus(-x) alone, y = 0.3 adds -0.3 x of the same sign
    for y in (1.0, 0.3):
        check("bce_logits", x, y, lambda x, y: (1 - y) * x + np.log1p(np.exp(-np.abs(x)))
              + np.maximum(-x, 0), rtol=2.0 ** -17 + exp_err)
    # kl_div's input 0 leaves the target's own term: t ln t, or exp(t) t
    t = _every_value(dtype, 0.0, 60.0)
    check("kl_div", np.zeros_like(t), t, lambda _, t: np.where(t == 0, 0.0, t * np.log(t)))
    t = _every_value(dtype, -60.0, 60.0)
    check("kl_div", np.zeros_like(t), t, lambda _, t: np.exp(t) * t,
          rtol=2.0 ** -17 + exp_err, log_target=True)


@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("op", ["bce_logits", "bce", "kl_div"])
def test_elementwise_groups_at_every_offset(cuda_host, op, dtype):
    """Operands of unit stride at one offset from a 16-byte boundary go in 16-byte groups
    after a head of single elements (elem_split); at different offsets, element by element.
    Either way each loss and gradient entry is the CPU path's, whatever the offset and the
    length (the host build traps on a misaligned vector access)."""
    rng = np.random.default_rng(19)
    size = NP_DTYPES[dtype].itemsize
    group = 8 if size == 2 else 4           # fx_device.cuh's GROUP: float64 in two accesses
    fn = {"bce_logits": fx.binary_cross_entropy_with_logits, "bce": fx.binary_cross_entropy,
          "kl_div": fx.kl_div}[op]
    for n in (1, group - 1, 3 * group + 5):
        xs = (rng.uniform(0.05, 0.95, n) if op == "bce" else
              rng.standard_normal(n) * 3).astype(NP_DTYPES[dtype])
        ys = rng.uniform(0, 1, n).astype(NP_DTYPES[dtype])
        go = rng.uniform(0.5, 1.5, n)
        kw = {} if op == "kl_div" else dict(w=rng.uniform(0.5, 2, n))
        fkw = {} if op == "kl_div" else dict(weight=kw["w"])
        want, want_grad = fn(xs, ys, reduction="none", return_grad=True, grad_output=go, **fkw)
        offsets = 16 // size                # the element offsets from a 16-byte boundary
        for offset in range(offsets):
            for y_offset in {offset, (offset + 1) % offsets}:   # the same, or not
                x, y = _at_offset(xs, offset), _at_offset(ys, y_offset)
                loss, grad, total, _ = _elementwise(cuda_host, op, x, y, go=go, offset=offset,
                                                    **kw)
                what = f"{op} n={n} offsets {offset}, {y_offset}"
                _close(loss, want, dtype, what)
                _close(grad, want_grad, dtype, what)
                _close(total, want.astype(np.float64).sum(), dtype, what)


# (shape, weight's shape, pos_weight's shape, grad_output's order): operands that keep two or
# three axes of the view (_validate.elementwise_views) while the input, the target and the
# outputs stay dense in C order. None: no such operand.
KEPT_AXES = [((40, 13), (13,), (13,), "C"),         # per class: (N, C) keeps both axes
             ((97, 3), (97, 1), (3,), "C"),         # rows shorter than a group; per sample
             ((30, 16), None, (16,), "F"),          # grad_output in Fortran order
             ((5, 7, 11), (1, 7, 1), (7, 1), "C")]  # three axes


@pytest.mark.parametrize("dtype", list(NP_DTYPES))
@pytest.mark.parametrize("op", ["bce_logits", "bce", "kl_div"])
def test_elementwise_groups_of_views_that_keep_axes(cuda_host, op, dtype):
    """Where a per-class or per-sample operand keeps more than one axis of the view, the
    input, target and outputs can still be dense, and then go in 16-byte groups whose other
    operands follow each element's position (the INDEXED kernel). Either instantiation gives
    any view the CPU path's values, at every offset from a 16-byte boundary. Twelve threads
    take several groups each, so a thread's position moves with carries over every axis."""
    from fastxent import _validate as V
    rng = np.random.default_rng(23)
    np_dtype = NP_DTYPES[dtype]
    offsets = 16 // np_dtype.itemsize
    fn = {"bce_logits": fx.binary_cross_entropy_with_logits, "bce": fx.binary_cross_entropy,
          "kl_div": fx.kl_div}[op]
    for shape, w_shape, pw_shape, order in KEPT_AXES:
        xs = (rng.uniform(0.05, 0.95, shape) if op == "bce" else
              rng.standard_normal(shape) * 3).astype(np_dtype)
        ys = rng.uniform(0, 1, shape).astype(np_dtype)
        go = rng.uniform(0.5, 1.5, shape)
        go = np.asfortranarray(go) if order == "F" else go
        kw = {}
        if op != "kl_div" and w_shape:
            kw["weight"] = rng.uniform(0.5, 2, w_shape)
        if op == "bce_logits" and pw_shape:
            kw["pos_weight"] = rng.uniform(0.5, 3, pw_shape)
        want, want_grad = fn(xs, ys, reduction="none", return_grad=True, grad_output=go, **kw)
        for offset in range(offsets):
            for y_offset in {offset, (offset + 1) % offsets}:   # the same, or not
                x = _at_offset(xs.ravel(), offset).reshape(shape)
                y = _at_offset(ys.ravel(), y_offset).reshape(shape)
                others = [y]
                if op != "kl_div":
                    others.append(np.broadcast_to(np.asarray(kw.get("weight", 1.0)), shape))
                if "pos_weight" in kw:
                    others.append(np.broadcast_to(kw["pos_weight"], shape))
                perm, _, views = V.elementwise_views(x, *others, go)
                assert perm == tuple(range(len(shape)))
                d0, d1, d2 = views[0].shape
                assert (d0 * d1 != 1) == (len(kw) > 0 or order == "F"), views[0].shape
                for indexed in (False, True):
                    loss, grad = (_at_offset(np.full(xs.size, np.nan, np_dtype), offset)
                                  .reshape(d0, d1, d2) for _ in range(2))
                    partial, total = np.full(3, np.nan), np.full((), np.nan)
                    args = P.elementwise_args(
                        views[0], views[1], w3=views[2] if op != "kl_div" else None,
                        pw3=views[3] if "pos_weight" in kw else None, gscale3=views[-1],
                        loss3=loss, g3=grad, err=np.zeros(1, np.int32),
                        counter=np.zeros(1, np.int32), partial=partial, out=total)
                    _run_elementwise(cuda_host, op, dtype, args, indexed=indexed)  # 3 x 4
                    what = (f"{op} {shape} offsets {offset}, {y_offset}, "
                            f"{'indexed' if indexed else 'one axis'}")
                    _close(loss.reshape(shape), want, dtype, what)
                    _close(grad.reshape(shape), want_grad, dtype, what)
                    _close(float(total), want.astype(np.float64).sum(), dtype, what)


@pytest.mark.parametrize("shape3", [(1, 5, 0), (1, 0, 5), (2, 0, 3), (3, 4, 0)])
def test_elementwise_empty_views_that_keep_axes(cuda_host, shape3):
    """An empty view with more than one axis, one of them 0 long: the INDEXED kernel finds
    no group and divides by nothing (the host build would trap on a division by 0), and
    writes the reduced loss of no element, 0."""
    x = np.zeros(shape3, np.float32)
    pw = np.broadcast_to(np.full(shape3[1:], 2.0), shape3)
    partial, total = np.full(3, np.nan), np.full((), np.nan, np.float32)
    args = P.elementwise_args(x, x, w3=np.broadcast_to(np.ones(1), shape3), pw3=pw,
                              gscale3=np.broadcast_to(np.ones(1), shape3), g3=x.copy(),
                              err=np.zeros(1, np.int32), counter=np.zeros(1, np.int32),
                              partial=partial, out=total)
    _run_elementwise(cuda_host, "bce_logits", "float32", args, indexed=True)
    assert total == 0 and not partial.any()


def test_elementwise_non_finite(cuda_host):
    x = np.array([np.inf, -np.inf, np.nan, 40.0, -40.0, 0.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.5])
    loss, grad, _, _ = _elementwise(cuda_host, "bce_logits", x, y, go=np.ones(6))
    want, want_grad = fx.binary_cross_entropy_with_logits(x, y, reduction="none",
                                                          return_grad=True,
                                                          grad_output=np.ones(6))
    _close(loss, want, "float64", "loss")
    _close(grad, want_grad, "float64", "grad")
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    loss, grad, _, err = _elementwise(cuda_host, "bce", p, y, go=np.ones(6))
    want, want_grad = fx.binary_cross_entropy(p, np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
                                              reduction="none", return_grad=True,
                                              grad_output=np.ones(6))
    _close(loss, want, "float64", "bce loss")
    _close(grad, want_grad, "float64", "bce grad")
    assert err == 0


@pytest.mark.parametrize("dtype", list(NP_DTYPES))
def test_bce_flags_values_outside_the_unit_interval(cuda_host, dtype):
    """Input or target outside [0, 1], or NaN, sets the flag the host raises as a ValueError;
    the other element-wise losses never set it."""
    good = np.array([0.0, 0.25, 1.0, 0.5], NP_DTYPES[dtype])
    for bad in (-0.0625, 1.0078125, np.nan, np.inf):
        for which in ("input", "target"):
            x, y = good.copy(), good[::-1].copy()
            (x if which == "input" else y)[1] = bad
            assert _elementwise(cuda_host, "bce", x, y, go=np.ones(4))[3] == 1, (bad, which)
            for op in ("bce_logits", "kl_div"):
                assert _elementwise(cuda_host, op, x, y, go=np.ones(4))[3] == 0, op
    assert _elementwise(cuda_host, "bce", good, good[::-1].copy())[3] == 0


# --- the reductions: "mean"'s denominator and scale (reduce.cu), the reduced loss ---------

GRIDS = (1, 2, 5, 64)        # 64 blocks over fewer items: empty slices


def _mean_scale(host, t2, *, grid, w=None, C=5, ignore=-100, go=1.0):
    out = np.full(2, np.nan)
    partials = np.full(grid, np.nan)
    args = P.mean_scale_args(t2, ignore_index=ignore, C=C, w=w,
                             grad_output=np.full((), go), partials=partials,
                             counter=np.zeros(1, np.int32), out=out)
    target = 0 if t2.dtype == np.int32 else 1
    assert host.fx_host_mean_scale(target, _c(np.int64(grid)), *map(_c, args)) == 0
    return out


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("target", ["int32", "int64"])
def test_mean_denominator_and_scale(cuda_host, grid, target):
    """The denominator is the CPU path's (the summed weights of the counted targets), and
    the scale grad_output / denominator, whatever the blocks and the targets' strides;
    ignore_index and indices outside [0, C) count nothing; no counted target gives NaN."""
    rng = np.random.default_rng(grid)
    C = 5
    w = rng.uniform(0.5, 2.0, C)
    base = rng.integers(-1, C + 1, (7, 2, 9)).astype(target)    # -1 and C: out of range
    base[0, 0, :4] = -100
    for t2 in (base.reshape(7, 18), base[:, 1, ::2], base.transpose(2, 0, 1)[:, :, 0]):
        counted = (t2 >= 0) & (t2 < C)
        for weights in (None, w):
            want = counted.sum() if weights is None else weights[np.where(counted, t2, 0)][
                counted].sum()
            den, scale = _mean_scale(cuda_host, t2, grid=grid, w=weights, C=C, go=0.7)
            np.testing.assert_allclose(den, want, rtol=1e-14)
            np.testing.assert_allclose(scale, 0.7 / want, rtol=1e-14)
    den, scale = _mean_scale(cuda_host, np.full((3, 4), -100, target), grid=grid)
    assert den == 0 and np.isnan(scale)
    den, scale = _mean_scale(cuda_host, np.zeros((0, 4), target), grid=grid)
    assert den == 0 and np.isnan(scale)


def _rows_reduced(host, values, mode, *, grid, block=128, lanes=1, cluster=1, den=None,
                  den_value=0.0, dtype="float64"):
    """The reduced loss the row kernel writes for rows whose losses are `values` (nll_loss
    rows: -x[0]): `grid` blocks of `block` threads, `lanes` of them a row, or `cluster`
    blocks a row."""
    values = np.asarray(values, np.float64)
    x3 = np.stack([-values, np.zeros_like(values)], axis=1).reshape(-1, 2, 1)
    out = np.full((), np.nan, NP_DTYPES[dtype])
    rows = np.full(values.size, np.nan)
    args = P.row_args(x3, t2=np.zeros((values.size, 1), np.int64), rows_out=rows,
                      err=np.zeros(1, np.int32), partial=np.full(grid, np.nan),
                      counter=np.zeros(1, np.int32), mode=mode,
                      denominator=None if den is None else np.full((), den),
                      denominator_value=den_value, out=out)
    host.fx_host_set_cluster(cluster)
    try:
        assert host.fx_host_rows(S.ROW_OPS["nll"], DTYPE_CODES["float64"], 1, 0,
                                 _c(np.int64(grid)), block, block if cluster > 1 else lanes,
                                 *map(_c, args)) == 0
    finally:
        host.fx_host_set_cluster(1)
    np.testing.assert_array_equal(rows, values)
    return out


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("blocks", ["a thread a row", "a warp a row", "a block a row",
                                    "clusters of 2"])
def test_rows_reduce_in_their_last_block(cuda_host, grid, blocks):
    """A reduced class-axis loss needs no second kernel: each block adds the rows its
    threads led (led_rows, the device's own mapping: each row exactly once), the last block
    adds the partials in index order and writes the sum or the mean (over a device
    denominator or a number), rounded once; no row gives 0, or NaN for a mean."""
    kw = {"a thread a row": {}, "a warp a row": dict(lanes=32),
          "a block a row": dict(block=512, lanes=512),
          "clusters of 2": dict(block=512, cluster=2)}[blocks]
    grid = 2 * grid if "cluster" in blocks else grid
    rng = np.random.default_rng(grid)
    values = rng.standard_normal(37) * 10
    for n in (37, 1, 0):
        v = values[:n]
        total = _rows_reduced(cuda_host, v, "sum", grid=grid, **kw)
        np.testing.assert_allclose(total, v.sum(), rtol=1e-13, atol=1e-13)
        mean = v.sum() / 4.5 if n else 0.0
        for by in (dict(mode="mean by pointer", den=4.5),
                   dict(mode="mean by value", den_value=4.5)):
            np.testing.assert_allclose(_rows_reduced(cuda_host, v, grid=grid, **by, **kw),
                                       mean, rtol=1e-13, atol=1e-13)
        assert np.isnan(_rows_reduced(cuda_host, v, "mean by pointer", grid=grid, den=0.0,
                                      **kw))
        assert np.isnan(_rows_reduced(cuda_host, v, "mean by value", grid=grid,
                                      den_value=0.0, **kw))
        got = _rows_reduced(cuda_host, v, "mean by value", grid=grid, den_value=3.0,
                            dtype="bfloat16", **kw)
        want = cuda_host.fx_host_narrow_double(DTYPE_CODES["bfloat16"],
                                               float(_rows_reduced(cuda_host, v, "sum",
                                                                   grid=grid, **kw)) / 3.0)
        assert got.view(np.uint16) == want, (n, got)
    for special, want in (([1.0, np.inf], np.inf), ([np.inf, -np.inf], np.nan),
                          ([np.nan, 1.0], np.nan)):
        got = _rows_reduced(cuda_host, special * 3, "sum", grid=grid, **kw)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grid", GRIDS)
def test_elementwise_reduces_in_its_last_block(cuda_host, grid):
    """A reduced element-wise loss needs no second kernel: the last block adds the blocks'
    partials in index order and writes the sum or the mean, rounded once to the result's
    dtype (the input's, or float64); a loss of no element too (0, or NaN for a mean)."""
    rng = np.random.default_rng(grid)
    for n in (13, 1, 0):
        x, y = rng.standard_normal(n) * 3, rng.uniform(size=n)
        want_sum = fx.binary_cross_entropy_with_logits(x, y, reduction="sum")
        for mode, den in (("sum", 0.0), ("mean by value", 4.5), ("mean by value", 0.0)):
            for dtype, np_dtype in NP_DTYPES.items():
                out = np.full((), np.nan, np_dtype)
                partial = np.full(grid, np.nan)
                args = P.elementwise_args(
                    x.reshape(1, 1, -1), y.reshape(1, 1, -1),
                    w3=np.broadcast_to(np.ones(1), (1, 1, n)), err=np.zeros(1, np.int32),
                    partial=partial, counter=np.zeros(1, np.int32), mode=mode,
                    denominator_value=den, out=out)
                _run_elementwise(cuda_host, "bce_logits", "float64", args, grid=grid)
                total = 0.0
                for p in partial:               # the last block's order: block index
                    total += p
                np.testing.assert_allclose(total, want_sum, rtol=1e-13, atol=1e-13)
                value = total if mode == "sum" else (total / den if den else np.nan)
                if dtype == "float64":
                    np.testing.assert_array_equal(out, value)
                else:
                    bits = np.uint32 if dtype == "float32" else np.uint16
                    want = np.array(cuda_host.fx_host_narrow_double(DTYPE_CODES[dtype],
                                                                    value), bits)
                    assert out.view(bits) == want, (n, mode, den, dtype)


def _nearest(d, dtype):
    """The value of `dtype` nearest the double d, ties to even, by exact arithmetic."""
    from fractions import Fraction
    first = np.array(d).astype(dtype)           # within one step of the answer
    bits = first.view(np.uint16).astype(np.int64)
    candidates = [np.array(b, np.uint16).view(dtype) for b in (bits - 1, bits, bits + 1)
                  if 0 <= b < 1 << 16]
    finite = [c for c in candidates if np.isfinite(c.astype(np.float64))]
    exact = Fraction(d)
    return min(finite, key=lambda c: (abs(Fraction(float(c)) - exact),
                                      int(c.view(np.uint16)) & 1))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_loss_is_rounded_once(cuda_host, dtype):
    """A float64 total becomes a 16-bit loss by one rounding to nearest (through a float
    rounded to odd): 1 + 2**-8 + 2**-30 is past bfloat16's midpoint between 1 and 1 + 2**-7,
    though a rounding to float first lands on the midpoint, and the tie on 1."""
    rng = np.random.default_rng(3)
    np_dtype = NP_DTYPES[dtype]
    step = 2.0 ** (-8 if dtype == "bfloat16" else -11)
    mids = 1 + step * (2 * rng.integers(0, 1 << (7 if dtype == "bfloat16" else 10), 300) + 1)
    values = np.concatenate([
        mids * 2.0 ** rng.integers(-14, 14, 300),                  # on a midpoint: ties
        mids * (1 + rng.choice([-1, 1], 300) * 2.0 ** -rng.integers(25, 52, 300)),
        rng.standard_normal(300) * 10.0 ** rng.integers(-6, 5, 300),
        [1 + 2.0 ** -8 + 2.0 ** -30, 1e-9, -3e-8, 0.0, -0.0]])
    for d in values:
        got = np.array(cuda_host.fx_host_narrow_double(DTYPE_CODES[dtype], float(d)),
                       np.uint16).view(np_dtype)
        want = _nearest(float(d), np_dtype)
        assert got.view(np.uint16) == want.view(np.uint16), (d, got, want)
        if dtype == "float16":      # NumPy rounds a double to float16 once, too
            assert got.view(np.uint16) == np.float16(d).view(np.uint16), d
    for special in (np.inf, -np.inf, 1e6, -1e300):
        got = np.array(cuda_host.fx_host_narrow_double(DTYPE_CODES[dtype], special),
                       np.uint16).view(np_dtype).astype(np.float64)
        with np.errstate(over="ignore"):
            assert got == np.array(special).astype(np_dtype).astype(np.float64), special
    nan = np.array(cuda_host.fx_host_narrow_double(DTYPE_CODES[dtype], np.nan), np.uint16)
    assert np.isnan(nan.view(np_dtype).astype(np.float32))


def test_the_plan_asks_for_the_row_cache_the_kernel_uses(cuda_host):
    """_gpu_plan.row_cache_bytes, the dynamic shared memory of a launch, is the cache that
    row_work lays out (rows.cu: row_cache_elems): the row and a 16-byte group less one
    more class, so that it can start at the row's offset from a vector boundary."""
    for dtype, code in DTYPE_CODES.items():
        for C in (1, 7, 8, 9, 1000, 32000, 50257):
            assert cuda_host.fx_host_row_cache_bytes(code, C) == \
                P.row_cache_bytes(C, NP_DTYPES[dtype].itemsize)


def test_plans_cover_the_lane_mappings():
    assert P.row_config(10, 1, 4) == S.THREAD_PER_ROW
    assert P.row_config(5000, 7, 4) == S.THREAD_PER_ROW
    assert P.row_config(1000, 1, 4) == S.WARP_PER_ROW
    assert P.row_config(32000, 1, 4) == S.BLOCK_PER_ROW_CACHED
    assert P.row_config(128256, 1, 4) == S.BLOCK_PER_ROW
    assert P.row_config(32000, 1, 8) == S.BLOCK_PER_ROW
    # the 16-bit types cache their raw logits: twice the classes fit
    assert P.row_config(50257, 1, 2) == S.BLOCK_PER_ROW_CACHED
    assert P.row_config(128256, 1, 2) == S.BLOCK_PER_ROW
    # a 16-byte group less one more: 7 classes of a 16-bit type (3 of float32)
    assert P.row_shared_bytes(32000, S.BLOCK_PER_ROW_CACHED, 2) == 2 * 32007
    assert P.row_shared_bytes(32000, S.BLOCK_PER_ROW_CACHED, 4) == 4 * 32003
    assert P.row_shared_bytes(32000, S.BLOCK_PER_ROW, 4) == 0
    for nrows in (1, 5, 10 ** 6, 3 * 10 ** 9):
        for cfg in S.ROW_CONFIGS:
            grid = P.row_grid(nrows, cfg, 132)
            assert 1 <= grid < 2 ** 31
            assert grid * (cfg[1] // cfg[0]) >= min(nrows, 1)
