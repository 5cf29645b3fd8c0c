"""Subprocesses a test module starts together in a fixture and its tests wait for: long,
mostly single-threaded runs (nvcc compiles, the parity suite on a narrower build) overlap
on CI's two cores instead of running in turn."""
import subprocess


def start(argv, log_path, **popen_kwargs):
    """Start `argv`, its stdout and stderr going to `log_path`: to a pipe, a long log (ptxas
    -v, a failing pytest) would fill it, and the process would wait for a reader."""
    with open(log_path, "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen_kwargs)


def result(proc, log_path, timeout):
    """Wait for `proc`; its return code and log."""
    proc.wait(timeout=timeout)
    return proc.returncode, log_path.read_text()


def stop(procs):
    """Kill the processes still running (their tests deselected or failed), and reap all."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
