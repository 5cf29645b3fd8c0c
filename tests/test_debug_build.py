"""The suite again, against the Debug build (CMake Debug: -O0 -g, Cython's boundscheck on),
compiled with AddressSanitizer and UndefinedBehaviorSanitizer wherever gcc has their
runtimes: `.ci/debug_build`.

With bounds checking on, an index past a typed memoryview's end raises IndexError instead
of reading or writing out of bounds, and the sanitizers stop the run at a C kernel's
out-of-bounds access or undefined behaviour; a kernel bug that the Release build hides
fails here. The script checks that the suite imports that build, and says what it leaves
out, and why.

The run starts in the background when the suite's collection ends (conftest.py), and this
test, run last, waits for it.
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

import background

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 2400


RUNNING = pytest.StashKey()       # the started run: its process and log's path


def start():
    """Start `.ci/debug_build`; its process and log's path. OpenMP threads wait passively:
    spinning, they and the main run's would take each other's cores."""
    log = pathlib.Path(tempfile.mkdtemp(prefix="fastxent_debug_run_")) / "log"
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    return background.start(["bash", str(ROOT / ".ci" / "debug_build")], log, cwd=ROOT,
                            env=env), log


def stop(config):
    """End the started run if it is still going, and remove its log."""
    running = config.stash.get(RUNNING, None)
    if running is not None:
        del config.stash[RUNNING]
        background.stop([running[0]])
        shutil.rmtree(running[1].parent, ignore_errors=True)


def _sanitizer_runtimes():
    if shutil.which("gcc") is None:
        return False
    names = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                            text=True).stdout.strip() for lib in ("libasan.so", "libubsan.so")]
    return all(os.path.isabs(name) and os.path.exists(name) for name in names)


@pytest.mark.skipif(os.environ.get("FASTXENT_DEBUG_RUN") == "1",
                    reason="this is the Debug run itself")
def test_suite_passes_on_the_debug_build(request):
    proc, log_path = request.config.stash[RUNNING]  # started at collection's end
    try:
        code, log = background.result(proc, log_path, timeout=TIMEOUT_S)
    finally:
        stop(request.config)
    assert code == 0, log[-8000:]
    summary = [line for line in log.splitlines() if re.search(r"\d+ passed", line)]
    assert summary and " failed" not in summary[-1] and " error" not in summary[-1], log[-8000:]
    # CI's machine has the runtimes: there the build must be the sanitized one.
    assert ("Debug build with AddressSanitizer" in log) == _sanitizer_runtimes(), log[:2000]
