"""The C checks of tests/cpu_host: each compiled for one instruction set the extension's
kernels are built for (x86-64, -v3, -v4), under AddressSanitizer and UndefinedBehaviorSanitizer
where gcc has them, and run where this CPU can; and for aarch64 (the generic code on 16-byte
NEON registers, which other CPUs build) where a cross compiler and qemu-aarch64 are installed
(Debian: gcc-aarch64-linux-gnu, and qemu-user or qemu-user-static). Each is compiled by the
level's default compiler and, where installed, by GCC 11 and Clang as well (builds())."""
import functools
import os
import pathlib
import shutil
import subprocess
import sysconfig
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
KERNELS = HERE.parent / "src" / "fastxent" / "_cpu"
LEVELS = ("x86-64", "x86-64-v3", "x86-64-v4", "aarch64")
# A level's cross compiler and the emulators that run its code, any one of them.
CROSS = {"aarch64": ("aarch64-linux-gnu-gcc", ("qemu-aarch64", "qemu-aarch64-static"))}
# Compilers that build a level's code besides its default, where installed: GCC 11, the
# oldest the kernels support and still Ubuntu 22.04's and RHEL 9's, which has no
# __builtin_shufflevector (fx_simd.h: FX_SHUFFLEVECTOR); and Clang for x86-64.
OTHER_COMPILERS = {"aarch64": ("aarch64-linux-gnu-gcc-11",)}
X86_OTHER_COMPILERS = ("gcc-11", "clang")


def default_compiler(level):
    return CROSS[level][0] if level in CROSS else "gcc"


def builds():
    """pytest parameters (level, compiler): every level with its default compiler, then with
    each other compiler this machine has."""
    params = [pytest.param(level, default_compiler(level), id=level) for level in LEVELS]
    for level in LEVELS:
        for cc in OTHER_COMPILERS.get(level, X86_OTHER_COMPILERS):
            if shutil.which(cc):
                params.append(pytest.param(level, cc, id=f"{level}-{cc}"))
    return params

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or os.uname().machine != "x86_64",
    reason="needs gcc on x86-64 (the instruction sets of the extension's kernels)")


def _env():
    # The sanitizer run preloads libasan into Python; the compiler and the check must not
    # inherit it (the check links its own).
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _sanitizers(cc, tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    built = subprocess.run([cc, *flags, str(probe), "-o", str(tmp_path / "probe")],
                           capture_output=True, env=_env())
    return flags if built.returncode == 0 else []


@functools.cache
def _cpu_level():
    """The widest x86-64 level this CPU runs, 2 (v4), 1 (v3) or 0, as the extension finds
    it (fx_simd.h: fx_find_isa), without FASTXENT_CPU_KERNELS' cap."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = pathlib.Path(tmp) / "level.c"
        probe.write_text('#include <stdio.h>\n#include "fx_simd.h"\n'
                         'int main(void) { printf("%d\\n", fx_isa_level()); return 0; }\n')
        subprocess.run(["gcc", "-O1", "-DFX_MULTI_ISA=1", "-I", str(KERNELS), "-I",
                        sysconfig.get_paths()["include"], str(probe), "-o", f"{tmp}/level",
                        "-lm"], check=True, capture_output=True, env=_env())
        env = {k: v for k, v in _env().items() if k != "FASTXENT_CPU_KERNELS"}
        return int(subprocess.run([f"{tmp}/level"], check=True, capture_output=True,
                                  text=True, env=env).stdout)


def _cpu_runs(level):
    return _cpu_level() >= {"x86-64": 0, "x86-64-v3": 1, "x86-64-v4": 2}[level]


def run_check(name, level, flags, tmp_path, cc=None):
    """Compiles tests/cpu_host/<name>.c for `level` with `flags` and compiler `cc` (the
    level's default if None) and runs it; skips when this CPU cannot run `level` code (after
    compiling, which every machine can). The check must print ok and exit 0. Returns what it
    wrote to stderr."""
    cc = cc or default_compiler(level)
    exe = tmp_path / f"{name}_{level}_{cc}"
    if level in CROSS:
        emulators = CROSS[level][1]
        emulator = next(filter(None, map(shutil.which, emulators)), None)
        if shutil.which(cc) is None or emulator is None:
            pytest.skip(f"no {cc} and {' or '.join(emulators)} to build and run {level} code")
        target, runner = ["-static"], [emulator]
    else:
        target, runner = [f"-march={level}", *_sanitizers(cc, tmp_path)], []
    # gnu17, GCC's default and so the extension's: ISO modes turn off FMA contraction,
    # which the AVX2 and AVX-512 builds' arithmetic relies on. Python's headers only give
    # Py_ssize_t.
    subprocess.run([cc, "-std=gnu17", "-O2", "-w", *target, *flags, "-I", str(KERNELS),
                    "-I", sysconfig.get_paths()["include"],
                    str(HERE / "cpu_host" / f"{name}.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, env=_env(), timeout=300)
    if not runner and not _cpu_runs(level):
        pytest.skip(f"this CPU does not run {level} code (the check compiled)")
    run = subprocess.run([*runner, str(exe)], capture_output=True, text=True, env=_env(),
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr[-3000:]
    return run.stderr
