"""The C checks of tests/cpu_host: each compiled for one instruction set the extension's
kernels are built for (x86-64, -v3, -v4), under AddressSanitizer and UndefinedBehaviorSanitizer
where gcc has them, and run where this CPU can; and for aarch64 (the generic code on 16-byte
NEON registers, which other CPUs build) where a cross compiler and qemu-aarch64 are installed
(Debian: gcc-aarch64-linux-gnu, and qemu-user or qemu-user-static)."""
import os
import pathlib
import shutil
import subprocess
import sysconfig

import pytest

HERE = pathlib.Path(__file__).resolve().parent
KERNELS = HERE.parent / "src" / "fastxent" / "_cpu"
LEVELS = ("x86-64", "x86-64-v3", "x86-64-v4", "aarch64")
# A level's cross compiler and the emulators that run its code, any one of them.
CROSS = {"aarch64": ("aarch64-linux-gnu-gcc", ("qemu-aarch64", "qemu-aarch64-static"))}

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or os.uname().machine != "x86_64",
    reason="needs gcc on x86-64 (the instruction sets of the extension's kernels)")


def _env():
    # The sanitizer run preloads libasan into Python; the compiler and the check must not
    # inherit it (the check links its own).
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _sanitizers(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    built = subprocess.run(["gcc", *flags, str(probe), "-o", str(tmp_path / "probe")],
                           capture_output=True, env=_env())
    return flags if built.returncode == 0 else []


def _cpu_runs(level, tmp_path):
    probe = tmp_path / "cpu.c"
    probe.write_text(f'int main(void) {{ return !__builtin_cpu_supports("{level}"); }}\n')
    subprocess.run(["gcc", str(probe), "-o", str(tmp_path / "cpu")], check=True,
                   capture_output=True, env=_env())
    return subprocess.run([str(tmp_path / "cpu")], env=_env()).returncode == 0


def run_check(name, level, flags, tmp_path):
    """Compiles tests/cpu_host/<name>.c for `level` with `flags` and runs it; skips when this
    CPU cannot run `level` code (after compiling, which every machine can). The check must
    print ok and exit 0. Returns what it wrote to stderr."""
    exe = tmp_path / f"{name}_{level}"
    if level in CROSS:
        cc, emulators = CROSS[level]
        emulator = next(filter(None, map(shutil.which, emulators)), None)
        if shutil.which(cc) is None or emulator is None:
            pytest.skip(f"no {cc} and {' or '.join(emulators)} to build and run {level} code")
        target, runner = ["-static"], [emulator]
    else:
        cc, target, runner = "gcc", [f"-march={level}", *_sanitizers(tmp_path)], []
    # gnu17, GCC's default and so the extension's: ISO modes turn off FMA contraction,
    # which the AVX2 and AVX-512 builds' arithmetic relies on. Python's headers only give
    # Py_ssize_t.
    subprocess.run([cc, "-std=gnu17", "-O2", "-w", *target, *flags, "-I", str(KERNELS),
                    "-I", sysconfig.get_paths()["include"],
                    str(HERE / "cpu_host" / f"{name}.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, env=_env(), timeout=300)
    if not runner and not _cpu_runs(level, tmp_path):
        pytest.skip(f"this CPU does not run {level} code (the check compiled)")
    run = subprocess.run([*runner, str(exe)], capture_output=True, text=True, env=_env(),
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr[-3000:]
    return run.stderr
