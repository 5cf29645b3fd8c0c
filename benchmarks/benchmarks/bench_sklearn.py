"""Fitting a linear classifier: fastxent's CrossEntropyClassifier against scikit-learn's
LogisticRegression(solver="lbfgs") at the same tolerance, 1 and 2 threads.

`python -m fastxent fit-bench` runs the same comparison once, with the 200000-row problem and
iteration counts beside the times.
"""
import importlib.util
import warnings
from functools import lru_cache

import numpy as np

from .common import SkipNotImplemented

PROBLEMS = ["digits", "20000x100x100"]


@lru_cache(maxsize=2)
def _problem(name):
    from sklearn.datasets import load_digits, make_classification
    from sklearn.preprocessing import StandardScaler
    if name == "digits":
        X, y = load_digits(return_X_y=True)
    else:
        n, p, k = (int(v) for v in name.split("x"))
        X, y = make_classification(n_samples=n, n_features=p, n_informative=40, n_classes=k,
                                   n_clusters_per_class=1, random_state=0)
    return StandardScaler().fit_transform(X), y


class FitLinearClassifier:
    params = [PROBLEMS, ["fastxent", "fastxent-float32", "sklearn"], [1, 2]]
    param_names = ["problem", "estimator", "threads"]
    timeout = 300

    def setup(self, problem, estimator, threads):
        if importlib.util.find_spec("sklearn") is None:
            raise SkipNotImplemented("scikit-learn is not installed")
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        from fastxent.sklearn import CrossEntropyClassifier
        X, self.y = _problem(problem)
        self.X = X.astype(np.float32) if estimator == "fastxent-float32" else X
        if estimator == "sklearn":
            self.make = lambda: LogisticRegression(tol=1e-4, max_iter=100)
        else:
            self.make = lambda: CrossEntropyClassifier(tol=1e-4, max_iter=100,
                                                       n_threads=threads)
        self.limits = lambda: threadpool_limits(limits=threads)

    def _fit(self):
        with self.limits(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.make().fit(self.X, self.y)

    def time_fit(self, problem, estimator, threads):
        self._fit()

    def peakmem_fit(self, problem, estimator, threads):
        self._fit()

    def track_n_iter(self, problem, estimator, threads):
        return int(self._fit().n_iter_[0])
    track_n_iter.unit = "iterations"


class LogLoss:
    params = [["100000x10", "20000x1000"], ["fastxent", "sklearn"]]
    param_names = ["shape", "implementation"]

    def setup(self, shape, implementation):
        if importlib.util.find_spec("sklearn") is None:
            raise SkipNotImplemented("scikit-learn is not installed")
        n, k = (int(v) for v in shape.split("x"))
        rng = np.random.default_rng(0)
        p = rng.random((n, k))
        self.p = p / p.sum(axis=1, keepdims=True)
        self.y = rng.integers(0, k, n)
        if implementation == "sklearn":
            from sklearn.metrics import log_loss
        else:
            from fastxent.sklearn import log_loss
        self.log_loss = log_loss

    def time_log_loss(self, shape, implementation):
        self.log_loss(self.y, self.p)
