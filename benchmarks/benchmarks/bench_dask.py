"""fastxent.dask on an in-memory Dask array against the NumPy call on the same data.

The threaded scheduler with 2 Dask threads and one OpenMP thread per task
(`n_threads=1`, the default), over chunks of whole rows and over class chunks; the
`track_` method is the Dask time as a multiple of the NumPy call's, measured in the same
run. `examples/dask_out_of_core.py` is the out-of-core run on a LocalCluster.
"""
import importlib.util

import numpy as np

from .common import SkipNotImplemented, logits, median_time, parse, targets

CHUNKINGS = {"rows": lambda n, c: (max(n // 8, 1), c),
             "rows-and-classes": lambda n, c: (max(n // 4, 1), max(c // 4, 1))}


class DaskCrossEntropy:
    params = [["8192x1000", "2048x32000"], list(CHUNKINGS)]
    param_names = ["shape", "chunks"]
    timeout = 300

    def setup(self, shape, chunks):
        if importlib.util.find_spec("dask") is None:
            raise SkipNotImplemented("dask is not installed")
        import dask
        import dask.array as da

        import fastxent as fx
        import fastxent.dask as fxd
        self.x, self.t = logits(shape, "float32", "C"), targets(shape)
        X = da.from_array(self.x, chunks=CHUNKINGS[chunks](*parse(shape)))

        def run_dask():
            return dask.compute(*fxd.cross_entropy(X, self.t, return_grad=True),
                                scheduler="threads", num_workers=2)
        self.run_dask = run_dask
        self.run_numpy = lambda: fx.cross_entropy(self.x, self.t, return_grad=True)

    def time_dask_loss_and_grad(self, shape, chunks):
        self.run_dask()

    def peakmem_dask_loss_and_grad(self, shape, chunks):
        self.run_dask()

    def track_x_numpy(self, shape, chunks):
        return median_time(self.run_dask) / median_time(self.run_numpy)
    track_x_numpy.unit = "x NumPy call"
