"""benchmarks/gpu_ncu.py without a GPU: its child's calls on the CuPy stand-in, and its
parent end to end against a stand-in ``ncu`` that prints the CSV table ncu prints."""
import importlib.util
import json
import pathlib
import sys
import textwrap
import types

import pytest

from fastxent import _cuda_sources as S
from fastxent import _gpu_plan as P

pytestmark = pytest.mark.main_run_only

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_ncu.py"


@pytest.fixture(scope="module")
def gpu_ncu():
    """The script as a module; it imports gpu_sweep as its folder's neighbour (run as a
    script, that folder is on sys.path), so the folder is on it for the import."""
    spec = importlib.util.spec_from_file_location("gpu_ncu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def _child_cupy(gpu, cuda_host, compute_capability):
    """The stand-in for the benchmark scripts, with RawModule: each function a HostKernel,
    listed in gpu.kernels as the backend's are."""
    from cupy_stand_in import HostKernel, for_benchmarks
    cp = for_benchmarks(gpu.cp, compute_capability)

    def raw_module(code, options, name_expressions):
        def get_function(name):
            dtype = next(d for d, c in S.DTYPES.items() if f", {c}, " in name)
            gpu.kernels.append(HostKernel(cuda_host, "rows", "ce_index", dtype, name))
            gpu.kernels[-1].options = options
            return gpu.kernels[-1]
        assert code == S.source("rows.cu") and len(name_expressions) == 1
        return types.SimpleNamespace(get_function=get_function)
    cp.RawModule = raw_module
    return cp


@pytest.mark.parametrize("compute_capability", ["90", "80"])
def test_child_launches_the_row_kernel_once_per_case(gpu, cuda_host, gpu_ncu, capsys,
                                                     compute_capability):
    """What ncu profiles: one fx::rows launch per case, in order, and a line naming it.
    Whole calls take the backend's kernel for their shape and dtype (bfloat16 made from
    float32's top halves); variants are compiled with their knobs and launched with their
    lane mapping, a cluster only from sm_90."""
    pytest.importorskip("ml_dtypes")
    _child_cupy(gpu, cuda_host, compute_capability)
    cases = [[6, 40, "float32", None], [3, 3000, "bfloat16", None], [4, 10, "float16", None]]
    cases += [[5, 3000, d, i] for d in ("float32", "bfloat16")
              for i in range(len(gpu_ncu.VARIANTS))]
    gpu_ncu.child(cases)
    rows = [k for k in gpu.kernels if k.kind == "rows"]
    ran = [c for c in cases if c[3] is None or compute_capability == "90"
           or gpu_ncu.VARIANTS[c[3]][1] is None
           or gpu_ncu.VARIANTS[c[3]][1][0] <= gpu_ncu.VARIANTS[c[3]][1][1]]
    assert len(ran) == len(cases) - (2 if compute_capability == "80" else 0)
    assert [(k.dtype, k.launches) for k in rows] == [(c[2], 1) for c in ran]
    for k, (N, C, dtype, variant) in zip(rows, ran):
        if variant is None:
            assert k.name == S.row_kernel("ce_index", dtype, "int64",
                                          P.row_config(C, 1, 2 if dtype != "float32" else 4))
            continue
        knobs, config = gpu_ncu.VARIANTS[variant]
        config = config or P.row_config(C, 1, 2 if dtype == "bfloat16" else 4)
        assert k.name == S.row_kernel("ce_index", dtype, "int64", config)
        assert k.options == S.tuning_options(**knobs)
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("profiled: ")] == [
        "profiled: " + gpu_ncu.label(*c) for c in ran]
    assert sum(line.startswith("skipped") for line in err) == len(cases) - len(ran)
    assert len({gpu_ncu.label(*c) for c in gpu_ncu.all_cases()}) == len(gpu_ncu.all_cases())


def test_units_scale_to_base_units(gpu_ncu):
    assert gpu_ncu.number("1,234.5", "usecond") == pytest.approx(1.2345e-3)
    assert gpu_ncu.number("2.5", "Gbyte") == 2.5e9
    assert gpu_ncu.number("1.98", "cycle/nsecond") == pytest.approx(1.98e9)
    assert gpu_ncu.number("87.5", "%") == 87.5
    assert gpu_ncu.number("128", "register/thread") == 128
    assert gpu_ncu.number("n/a", "byte") is None


# A stand-in for ncu: refuses a run asking for the metric named in its first argument, as
# ncu refuses a metric it does not know, or every run ("counters"), or hangs ("sleep").
# Otherwise it runs no child, but prints what one would print to stderr for each case of
# the command's last argument but the last (as if it could not run there), and ncu's --csv
# details table, one launch per case run, some metrics in units of their own.
FAKE_NCU = '''
import importlib.util, json, os, sys
refused = sys.argv[1]
args = sys.argv[2:]
metrics = args[args.index("--metrics") + 1].split(",")
if refused == "sleep":
    print("==PROF== Connected to process 1 (python)", file=sys.stderr, flush=True)
    import time
    time.sleep(60)
if refused == "counters":
    print("==ERROR== ERR_NVGPUCTRPERM - no permission to read the performance counters")
    sys.exit(1)
if any(m.startswith(refused) for m in metrics):
    print("==ERROR== Failed to find metric " + refused)
    sys.exit(1)
sys.path.insert(0, os.path.dirname(args[-3]))                        # the script's folder
spec = importlib.util.spec_from_file_location("gpu_ncu", args[-3])    # the script itself
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
cases = json.loads(args[-1])
VALUE = lambda m, i: 10.0 + i + sum(map(ord, m)) % 997 / 100
units = {"gpu__time_duration.sum": ("usecond", lambda i: 1000.0 * (i + 1)),
         "dram__bytes_read.sum": ("Mbyte", lambda i: 2.0 * SIZE / 1e6),
         "dram__bytes_write.sum": ("byte", lambda i: SIZE),
         "sm__cycles_elapsed.avg.per_second": ("cycle/nsecond", lambda i: 1.75)}
print("==PROF== Connected to process 1 (python)")
print('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
      '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
      '"Metric Value"')
for i, (n, c, dtype, variant) in enumerate(cases[:-1]):
    print("profiled: " + script.label(n, c, dtype, variant), file=sys.stderr)
    SIZE = n * c * (2 if dtype == "bfloat16" else 4)
    for m in metrics:
        unit, value = units.get(m, ("", lambda i: VALUE(m, i)))
        print(f'"{i}","1","python","h","void fx::rows<0, float, long long, 512, 512, '
              f'true>(const T2 *, long long)","1","7","(512, 1, 1)","(528, 1, 1)","0",'
              f'"9.0","Command line profiler metrics","{m}","{unit}","{value(i):,.2f}"')
print("skipped (no clusters before sm_90): the last", file=sys.stderr)
print("==PROF== Disconnected from process 1")
'''


def _fake_ncu(tmp_path, refused):
    body = tmp_path / "fake_ncu.py"
    body.write_text(FAKE_NCU)
    ncu = tmp_path / "ncu"
    ncu.write_text(f"#!/bin/sh\nexec {sys.executable} {body} {refused} \"$@\"\n")
    ncu.chmod(0o755)
    return str(ncu)


def test_the_parent_drops_a_metric_ncu_refuses_and_tables_every_case(gpu_ncu, tmp_path,
                                                                      capsys):
    refused = "smsp__average_warps_issue_stalled_imc_miss_per_issue_active"
    out = tmp_path / "out"
    assert gpu_ncu.main(["--out", str(out), "--ncu", _fake_ncu(tmp_path, refused)]) == 0
    printed = capsys.readouterr().out
    assert "does not know ['" + refused + ".ratio']" in printed
    results = json.loads((out / "results.json").read_text())
    assert not any(m.startswith(refused) for m in results["metrics"])
    assert len(results["metrics"]) == len(gpu_ncu.METRICS) - 1
    rows = results["rows"]
    assert [r["case"] for r in rows] == [gpu_ncu.label(*c) for c in gpu_ncu.all_cases()[:-1]]
    for i, r in enumerate(rows):
        assert r["ms"] == pytest.approx(i + 1)                  # 1000 us, 2000 us, ...
        assert r["read x floor"] == pytest.approx(2.0, rel=1e-4)   # Mbyte, 2 decimals
        assert r["write x floor"] == pytest.approx(1.0)
        assert "fx::rows<0, float, long long, 512, 512, true>" in r["kernel"]
    n, c, _ = gpu_ncu.CASES[0]
    assert rows[0]["floor GB/s"] == pytest.approx(2 * n * c * 4 / 1e-3 / 1e9)
    # the four stalls that cost most, the largest first (the fake's value of a metric: 10
    # plus the case's index plus its name's character codes modulo 997, over 100: no ties)
    names = {r: f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio"
             for r in gpu_ncu.STALLS if r != "imc_miss"}
    value = {r: 11.0 + sum(map(ord, m)) % 997 / 100 for r, m in names.items()}
    want = sorted(value, key=value.get, reverse=True)[:4]
    assert [name for name, _ in rows[1]["top stalls"]] == want
    assert [v for _, v in rows[1]["top stalls"]] == pytest.approx([value[r] for r in want])
    table = (out / "table.md").read_text()
    assert table.count("\n") == len(gpu_ncu.all_cases()) - 1 + 2
    assert "| 16384x32000 float32, backend call | 1.000 |" in table
    assert "| 16384x32000 bfloat16, cluster of 2 x 256, cached |" not in table   # skipped
    assert "| 16384x32000 bfloat16, 512 lanes, block 512, cached, FX_PREFETCH=1 |" in table


def test_a_failed_ncu_run_is_reported(gpu_ncu, tmp_path, capsys):
    """A refusal that names none of the metrics (ncu cannot read the counters) ends the
    run with its output, not a table."""
    out = tmp_path / "out"
    assert gpu_ncu.main(["--out", str(out), "--ncu",
                         _fake_ncu(tmp_path, "counters")]) == 1
    assert "exited 1" in capsys.readouterr().err
    assert not (out / "results.json").exists()


def test_an_ncu_run_past_its_time_is_reported(gpu_ncu, tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_ncu.main(["--out", str(out), "--ncu", _fake_ncu(tmp_path, "sleep"),
                         "--timeout-s", "3"]) == 1
    assert "ncu ran past 3 s:\n==PROF== Connected" in capsys.readouterr().err


def test_the_csv_table_is_found_among_other_output(gpu_ncu):
    text = textwrap.dedent('''\
        ==PROF== Connected to process 7
        profiled: 4x10 float32
        "ID","Kernel Name","Metric Name","Metric Unit","Metric Value"
        "0","rows","gpu__time_duration.sum","nsecond","1,500"
        "1","rows","gpu__time_duration.sum","msecond","2"
        "0","rows","dram__bytes_read.sum","Kbyte","3"
        ==PROF== Disconnected from process 7
        ''')
    launches = gpu_ncu.parse_csv(text)
    assert launches == [("rows", {"gpu__time_duration.sum": pytest.approx(1.5e-6),
                                  "dram__bytes_read.sum": 3000.0}),
                        ("rows", {"gpu__time_duration.sum": pytest.approx(2e-3)})]
    with pytest.raises(ValueError, match="no ncu CSV table"):
        gpu_ncu.parse_csv("==ERROR== ERR_NVGPUCTRPERM")
