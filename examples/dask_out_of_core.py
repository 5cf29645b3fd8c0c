"""Cross entropy and its gradient over logits larger than any worker's memory.

A LocalCluster of process workers on loopback, each limited to ``--memory-limit``, computes
the mean cross entropy of ``--gb`` GB of float32 logits (generated on the workers, never on
the client) and writes the gradient to a ``.npy`` file on disk, in one pass over the
logits. With ``--compare`` the same call runs in memory with ``fastxent.cross_entropy`` on
the same numbers, and the two losses are compared.

    python examples/dask_out_of_core.py                  # 4 GB, 2 workers of 1 GiB each
    python examples/dask_out_of_core.py --gb 0.5 --compare --class-chunks 4
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import numpy as np


class NpyTarget:
    """A ``dask.array.store`` target that writes each block into a ``.npy`` file.

    It holds only the path, so it pickles to process workers; each write opens the file as
    a memory map, so nothing else of the gradient stays in memory.
    """

    def __init__(self, path, shape, dtype):
        self.path = path
        np.lib.format.open_memmap(path, mode="w+", shape=shape, dtype=dtype).flush()

    def __setitem__(self, index, block):
        out = np.load(self.path, mmap_mode="r+")
        out[index] = block
        out.flush()


def logits_and_targets(n, c, row_chunk, class_chunk, seed):
    import dask.array as da
    rng = da.random.default_rng(seed)
    logits = rng.standard_normal((n, c), chunks=(row_chunk, class_chunk), dtype=np.float32)
    targets = rng.integers(0, c, size=n, chunks=row_chunk)
    return logits, targets


class PeakMemory:
    """Polls every worker's resident memory (the scheduler's view) while a block runs."""

    def __init__(self, client, interval=0.1):
        self.client, self.interval, self.peak = client, interval, {}
        self._stop = threading.Event()

    def _poll(self):
        while not self._stop.is_set():
            for address, info in self.client.scheduler_info()["workers"].items():
                rss = info["metrics"]["memory"]
                self.peak[address] = max(self.peak.get(address, 0), rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0, help="size of the logits in GB")
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--row-chunk", type=int, default=512)
    parser.add_argument("--class-chunks", type=int, default=1,
                        help="chunks along the classes (1: whole rows per block)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--out", default=None, help="directory for grad.npy (default: a "
                        "temporary one, removed afterwards)")
    parser.add_argument("--compare", action="store_true",
                        help="also run the in-memory call on the same numbers")
    args = parser.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    import fastxent as fx
    import fastxent.dask as fxd

    n = max(1, int(args.gb * 1e9 / (4 * args.classes)))
    c = args.classes
    class_chunk = -(-c // args.class_chunks)
    logits, targets = logits_and_targets(n, c, args.row_chunk, class_chunk, seed=0)
    print(f"logits {n} x {c} float32 = {logits.nbytes / 1e9:.2f} GB in {logits.npartitions} "
          f"chunks of {args.row_chunk} x {class_chunk} "
          f"({args.row_chunk * class_chunk * 4 / 1e6:.0f} MB); "
          f"{args.workers} process workers x 1 thread, memory limit {args.memory_limit} each")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(args.out or tmp, "grad.npy")
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address="127.0.0.1:0",
                          memory_limit=args.memory_limit) as cluster, Client(cluster) as client:
            loss, grad = fxd.cross_entropy(logits, targets, return_grad=True)
            store = grad.store(NpyTarget(path, grad.shape, grad.dtype), lock=False,
                               compute=False)
            with PeakMemory(client) as memory:
                start = time.perf_counter()
                loss_value, _ = dask.compute(loss, store)
                seconds = time.perf_counter() - start
            gradient = np.load(path, mmap_mode="r")
            rows = slice(0, min(n, 4096))
            head = np.array(gradient[rows])       # kept to compare with the in-memory call
            del gradient
            print(f"gradient:  {path} ({logits.nbytes / 1e9:.2f} GB), rows sum to "
                  f"{float(np.abs(head.sum(axis=1)).max()):.1e} (0 up to rounding)")
            # The same pipeline without the loss: generate the logits and write them out.
            copy = logits.store(NpyTarget(path, grad.shape, grad.dtype), lock=False,
                                compute=False)
            start = time.perf_counter()
            dask.compute(copy)
            base_seconds = time.perf_counter() - start
        peak = max(memory.peak.values())
        print(f"dask:      loss {float(loss_value):.7f}  {seconds:.2f} s  "
              f"{logits.nbytes / seconds / 1e9:.2f} GB/s of logits  "
              f"peak worker memory {peak / 2**30:.2f} GiB")
        print(f"baseline:  generating and writing the logits alone takes {base_seconds:.2f} s "
              f"(the loss and gradient add {seconds - base_seconds:.2f} s)")

        if args.compare:
            x, t = dask.compute(logits, targets)
            start = time.perf_counter()
            mem_loss, mem_grad = fx.cross_entropy(x, t, return_grad=True)
            mem_seconds = time.perf_counter() - start
            print(f"in memory: loss {float(mem_loss):.7f}  {mem_seconds:.2f} s "
                  f"({fx.get_num_threads()} threads)  dask/in-memory time "
                  f"{seconds / mem_seconds:.1f}x  |loss difference| "
                  f"{abs(float(mem_loss) - float(loss_value)):.1e}  max |grad difference| "
                  f"(first rows) {float(np.abs(mem_grad[rows] - head).max()):.1e}")
    return 0


if __name__ == "__main__":         # process workers re-import this file; keep the run here
    raise SystemExit(main())
