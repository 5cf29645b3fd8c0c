"""``python -m fastxent fit-bench``: CrossEntropyClassifier against LogisticRegression.

Both fit the same objective with L-BFGS-B from zero at the same tolerance and iteration cap,
on standardised data, interleaved, with the median of `rounds` fits reported next to each
fit's iteration count and final objective (so that a faster fit that stopped earlier shows
itself). Threads: fastxent gets ``n_threads``; LogisticRegression gets the same number of
BLAS and OpenMP threads through threadpoolctl (its loss kernel runs on one thread whatever
the setting). Each fit starts after a pause of PAUSE_S, once the previous fit's idle
threads have stopped spinning. Needs scikit-learn.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

#: Idle time before each timed fit, so the previous fit's thread pools are asleep.
PAUSE_S = 0.25


def problems(quick):
    """name -> (X, y): digits, and a 100-class synthetic problem (1/10 of the rows if quick)."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    n = 20_000 if quick else 200_000
    Xs, ys = make_classification(n_samples=n, n_features=100, n_informative=40,
                                 n_classes=100, n_clusters_per_class=1, random_state=0)
    return {"digits 1797x64, 10 classes": (StandardScaler().fit_transform(X), y),
            f"synthetic {n}x100, 100 classes": (StandardScaler().fit_transform(Xs), ys)}


def _objective_value(X, y, coef, intercept):
    """LogisticRegression's objective at a solution: mean log loss + ‖W‖² / (2 n)."""
    from .functional import cross_entropy
    z = X @ coef.T.astype(np.float64) + intercept
    return float(cross_entropy(z, y)) + float((coef.astype(np.float64) ** 2).sum()) / (2 * len(y))


def _fit(estimator, X, y, threads):
    from threadpoolctl import threadpool_limits
    # OpenBLAS's idle workers keep spinning for ~0.2 s after a call; a fit started at once
    # would share the cores with them (measured: digits 34 ms instead of 18).
    time.sleep(PAUSE_S)
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # ConvergenceWarning at the cap
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start


def run(quick=False, rounds=3, threads=(1, None), tol=1e-4, max_iter=100, progress=True):
    from sklearn.linear_model import LogisticRegression

    from .sklearn import CrossEntropyClassifier
    threads = [t or os.cpu_count() for t in threads]
    results = []
    data = problems(quick)
    steps, done = len(data) * len(threads) * rounds, 0
    for name, (X, y) in data.items():
        X32 = X.astype(np.float32)
        for n_threads in threads:
            contenders = {
                "LogisticRegression": (lambda: LogisticRegression(tol=tol, max_iter=max_iter),
                                       X),
                "fastxent": (lambda: CrossEntropyClassifier(tol=tol, max_iter=max_iter,
                                                            n_threads=n_threads), X),
                "fastxent float32": (lambda: CrossEntropyClassifier(
                    tol=tol, max_iter=max_iter, n_threads=n_threads), X32),
            }
            times = {key: [] for key in contenders}
            fitted = {}
            for _ in range(rounds):
                for key, (make, data_x) in contenders.items():
                    estimator = make()
                    times[key].append(_fit(estimator, data_x, y, n_threads))
                    fitted[key] = estimator
                done += 1
                if progress:
                    print(f"\r[{'#' * (30 * done // steps):<30}] {done}/{steps}", end="",
                          file=sys.stderr, flush=True)
            results.append({
                "problem": name, "threads": n_threads,
                "median_s": {k: float(np.median(v)) for k, v in times.items()},
                "n_iter": {k: int(e.n_iter_[0]) for k, e in fitted.items()},
                "objective": {k: _objective_value(X, y, e.coef_, e.intercept_)
                              for k, e in fitted.items()},
            })
    if progress:
        print(file=sys.stderr)
    return {"tol": tol, "max_iter": max_iter, "rounds": rounds, "results": results}


def table(report) -> str:
    lines = [f"fit time, median of {report['rounds']} interleaved fits, tol={report['tol']}, "
             f"max_iter={report['max_iter']}; ratio = LogisticRegression time / ours"]
    lines.append(f"{'problem':<36}{'thr':>4}  {'estimator':<20}{'ms':>10}{'iter':>6}"
                 f"{'objective':>16}{'ratio':>8}")
    for res in report["results"]:
        base = res["median_s"]["LogisticRegression"]
        for key, seconds in res["median_s"].items():
            ratio = "" if key == "LogisticRegression" else f"{base / seconds:.2f}x"
            lines.append(f"{res['problem']:<36}{res['threads']:>4}  {key:<20}"
                         f"{seconds * 1e3:10.1f}{res['n_iter'][key]:>6}"
                         f"{res['objective'][key]:16.10f}{ratio:>8}")
    return "\n".join(lines)


def main(args) -> int:
    from ._bench import emit
    report = run(quick=args.quick, rounds=args.rounds, threads=args.threads)
    return emit(report, table(report), args.json)
