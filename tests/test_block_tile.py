"""The block kernels' transposed tile (fx_block.inc: fx_blk_tile, fx_blk_untile) checked in C
for every instruction set the extension is built for.

The extension picks its AVX-512, AVX2 or baseline clone at load time, so the suite exercises
only the one this machine runs. Here tests/cpu_host/fx_tile_check.c is compiled once per
instruction set and path, under AddressSanitizer and UndefinedBehaviorSanitizer where gcc
has them, and run where the CPU can: the tile must hold every element where the plain
element-by-element transposition puts it, and no vector load or store may reach past the
block's rows, which the check allocates to their exact span.
"""
import os
import pathlib
import shutil
import subprocess
import sysconfig

import pytest

HERE = pathlib.Path(__file__).resolve().parent
KERNELS = HERE.parent / "src" / "fastxent" / "_cpu"
LEVELS = ("x86-64", "x86-64-v3", "x86-64-v4")

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or os.uname().machine != "x86_64",
    reason="needs gcc on x86-64 (the instruction sets of the extension's clones)")


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


# The AVX2 and baseline clones transpose in registers only on a CPU that would run the
# AVX-512 clone instead (FX_WIDE_SHUFFLES); defining the CPU test to 0 gives them the path
# they take on their own CPUs, the element-by-element copies.
CASES = [(level, "transpose") for level in LEVELS] + [
    (level, "copy") for level in LEVELS if level != "x86-64-v4"]


@pytest.mark.parametrize("level,path", CASES)
def test_tile_and_untile_match_the_plain_transposition(level, path, tmp_path):
    exe = tmp_path / f"fx_tile_check_{level}_{path}"
    copy = ["-D__builtin_cpu_supports(feature)=0"] if path == "copy" else []
    subprocess.run(["gcc", "-std=c11", "-O2", f"-march={level}", "-w", *copy,
                    *_sanitizers(tmp_path), "-I", str(KERNELS),
                    "-I", sysconfig.get_paths()["include"],
                    str(HERE / "cpu_host" / "fx_tile_check.c"), "-o", str(exe)],
                   check=True, capture_output=True, env=_env(), timeout=300)
    if not _cpu_runs(level, tmp_path):
        pytest.skip(f"this CPU does not run {level} code (the check compiled)")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr[-3000:]
