"""python -m fastxent demo | info | bench run and report what they should."""
import json

import numpy as np

import fastxent as fx
from fastxent import _bench
from fastxent.__main__ import main


def test_demo_prints_the_worked_examples(capsys):
    assert main(["demo", "--shape", "256", "50", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    for value in ("0.6931", "0.2231", "1.2762", "0.3048", "0.7054"):
        assert value in out
    assert "plain NumPy" in out


def test_info_reports_openmp(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "openmp" in out and "threads" in out


def test_numpy_reference_matches_fastxent():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 7)), rng.integers(0, 7, 40)
    loss, grad = _bench.numpy_cross_entropy(x, t, grad=True)
    ref = fx.cross_entropy(x, t, return_grad=True)
    np.testing.assert_allclose(loss, ref[0], rtol=1e-13)
    np.testing.assert_allclose(grad, ref[1], atol=1e-15)


def test_bench_report_and_json(tmp_path, capsys):
    report = _bench.run([(32, 10), (8, 300)], rounds=1, budget=0.0, threads=1,
                        progress=False)
    assert [r["shape"] for r in report["results"]] == [[32, 10], [8, 300]]
    keys = report["results"][0]["median_s"]
    for key in ("fastxent/fwd", "fastxent/fb", "fastxent/fb_out", "numpy/fb", "floor/fb",
                "torch/fb"):
        assert keys[key] > 0
    text = _bench.table(report)
    assert "x best peer" in text and "(8, 300)" in text
    path = tmp_path / "bench.json"
    main(["bench", "--quick", "--rounds", "1", "--json", str(path)])
    assert json.loads(path.read_text())["results"]


def test_fit_bench_report_and_json(tmp_path, capsys):
    path = tmp_path / "fit.json"
    assert main(["fit-bench", "--quick", "--rounds", "1", "--threads", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "LogisticRegression" in out and "fastxent float32" in out
    report = json.loads(path.read_text())
    for result in report["results"]:
        objective = result["objective"]
        # Same problem, same optimiser: the objectives agree (float32 to its precision).
        assert abs(objective["fastxent"] - objective["LogisticRegression"]) < 1e-6
        assert abs(objective["fastxent float32"] - objective["LogisticRegression"]) < 1e-4
