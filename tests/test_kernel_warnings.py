"""The C kernels (src/fastxent/_cpu: fx_simd.h and what it includes, and fx_half.h)
compile without a single warning under -Wall -Wextra, for every instruction set the
extension is built for, by each compiler of cpu_host_lib.builds() this machine has.

A build prints the compiler's warnings to a log nobody reads; a macro redefined between the
float and double passes of fx_block.inc, or a variable that only the two-half float path
uses, went unseen there. Each level compiles the header as the modules include it (the
baseline or generic build) and, for x86-64-v3 and -v4, as fx_isa.c with CMakeLists.txt's
FX_ISA definitions, and the run-time dispatch (FX_MULTI_ISA); aarch64 where the cross
compiler is installed (Debian: gcc-aarch64-linux-gnu). Clang warns of the kernels the header
defines and a file does not call (-Wunused-function), which every module calls.
"""
import shutil
import subprocess
import sysconfig

import pytest

from cpu_host_lib import KERNELS, builds, needs_gcc

pytestmark = [needs_gcc, pytest.mark.main_run_only]

FLAGS = ["-std=gnu17", "-O2", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-psabi",
         "-fopenmp", "-DFASTXENT_HAVE_OPENMP=1"]


def _compile(cc, flags, source):
    return subprocess.run([cc, *FLAGS, *flags, "-I", str(KERNELS),
                           "-isystem", sysconfig.get_paths()["include"], str(source)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("level, cc", builds())
def test_kernels_compile_without_warnings(level, cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"no {cc} to compile {level} code")
    march = [] if level == "aarch64" else [f"-march={level}"]
    if cc.endswith("clang"):
        march.append("-Wno-unused-function")
    header = tmp_path / "modules.c"
    header.write_text('#include "fx_simd.h"\n#include "fx_half.h"\n')
    sources = [(march, header)]           # one instruction set: -march=native, other compilers
    if level.startswith("x86-64") and cc.startswith("gcc"):   # CMakeLists.txt's three builds
        if level == "x86-64":             # the modules: the baseline kernels and the dispatch
            sources.append(([*march, "-DFX_MULTI_ISA=1"], header))
        else:
            isa = level.removeprefix("x86-64-")
            sources.append(([*march, f"-DFX_ISA={isa}", "-DFX_MULTI_ISA=1"],
                            KERNELS / "fx_isa.c"))
    for flags, source in sources:
        built = _compile(cc, flags, source)
        assert built.returncode == 0, f"{source.name} {flags}:\n{built.stderr[-4000:]}"
