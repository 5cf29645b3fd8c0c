"""Subprocesses started early and waited for late: long, mostly single-threaded runs (nvcc
compiles, the parity suite on a narrower build, the Debug run) overlap the rest of the
suite on CI's two cores instead of running in turn."""
import os
import signal
import subprocess


def start(argv, log_path, **popen_kwargs):
    """Start `argv` in a process group of its own, its stdout and stderr going to
    `log_path`: to a pipe, a long log (ptxas -v, a failing pytest) would fill it, and the
    process would wait for a reader."""
    with open(log_path, "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen_kwargs)


def result(proc, log_path, timeout):
    """Wait for `proc`; its return code and log."""
    proc.wait(timeout=timeout)
    return proc.returncode, log_path.read_text()


def stop(procs):
    """End the processes still running (their tests deselected or failed), with what they
    started (a script's own children), and reap all: a terminate first, so a script's exit
    trap removes its temporary files."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:      # the group ended meanwhile
                pass
            proc.wait()
