"""The suite again, against the Debug build (CMake Debug: -O0 -g, Cython's boundscheck on),
compiled with AddressSanitizer and UndefinedBehaviorSanitizer wherever gcc has their
runtimes: `.ci/debug_build`.

With bounds checking on, an index past a typed memoryview's end raises IndexError instead
of reading or writing out of bounds, and the sanitizers stop the run at a C kernel's
out-of-bounds access or undefined behaviour; a kernel bug that the Release build hides
fails here. The script says what it leaves out, and why.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sanitizer_runtimes():
    if shutil.which("gcc") is None:
        return False
    names = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                            text=True).stdout.strip() for lib in ("libasan.so", "libubsan.so")]
    return all(os.path.isabs(name) and os.path.exists(name) for name in names)


@pytest.mark.skipif(os.environ.get("FASTXENT_DEBUG_RUN") == "1",
                    reason="this is the Debug run itself")
def test_suite_passes_on_the_debug_build():
    run = subprocess.run(["bash", str(ROOT / ".ci" / "debug_build")], cwd=ROOT,
                         capture_output=True, text=True, timeout=2400)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    first, last = run.stdout.strip().splitlines()[0], run.stdout.strip().splitlines()[-1]
    assert " passed" in last and " failed" not in last, last
    # CI's machine has the runtimes: there the build must be the sanitized one.
    assert ("with AddressSanitizer" in first) == _sanitizer_runtimes(), first
