"""The whole suite again, against the Debug build (CMake Debug: -O0 -g, Cython boundscheck),
and against an AddressSanitizer + UndefinedBehaviorSanitizer build (`.ci/sanitizers`).

With bounds checking on, an index past a typed memoryview's end raises IndexError instead
of reading or writing out of bounds, so a kernel bug that the Release build hides fails
here. The wheel is built with `FASTXENT_DEBUG=1` (pyproject's override) in an isolated
build environment and installed into a temporary directory. The suite runs in a
``python -S`` subprocess whose path starts with that directory: without ``site``, no
installed ``.pth`` import hook (an editable install's) can shadow it.

Left out of the Debug run: this file, and the > 2**31-element views, which take minutes at
-O0 and exercise sizes, not bounds.
"""
import os
import pathlib
import shutil
import site
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("FASTXENT_DEBUG_RUN") == "1",
                    reason="this is the Debug run itself")
def test_suite_passes_on_the_debug_build(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    env = dict(os.environ, FASTXENT_DEBUG="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, env=env, timeout=900)
    wheel, = wheels.glob("fastxent-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    path = os.pathsep.join([str(target)] + site.getsitepackages()
                           + [site.getusersitepackages()])
    env = dict(os.environ, FASTXENT_DEBUG_RUN="1", PYTHONPATH=path)
    where = subprocess.run([sys.executable, "-S", "-c", "import fastxent; print(fastxent.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert pathlib.Path(where.strip()).is_relative_to(target), where
    run = subprocess.run([sys.executable, "-S", "-m", "pytest", "-q", "-x",
                          "-p", "no:cacheprovider", str(ROOT / "tests"),
                          "--ignore", str(ROOT / "tests" / "test_large_views.py")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert " passed" in summary


def _sanitizer_runtimes():
    if shutil.which("gcc") is None:
        return False
    names = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                            text=True).stdout.strip() for lib in ("libasan.so", "libubsan.so")]
    return all(os.path.isabs(name) and os.path.exists(name) for name in names)


@pytest.mark.skipif(os.environ.get("FASTXENT_DEBUG_RUN") == "1",
                    reason="this is a Debug or sanitizer run itself")
@pytest.mark.skipif(not _sanitizer_runtimes(), reason="gcc's libasan/libubsan not found")
def test_suite_passes_under_address_and_undefined_behaviour_sanitizers():
    run = subprocess.run(["bash", str(ROOT / ".ci" / "sanitizers")], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.strip().splitlines()[-1]
