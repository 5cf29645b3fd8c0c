"""The block kernels' transposed tile (fx_block.inc: fx_blk_tile, fx_blk_untile) checked in C
for every instruction set the extension is built for.

The extension picks its AVX-512, AVX2 or baseline clone at load time, so the suite exercises
only the one this machine runs. Here tests/cpu_host/fx_tile_check.c is compiled once per
instruction set and path, under AddressSanitizer and UndefinedBehaviorSanitizer where gcc
has them, and run where the CPU can: the tile must hold every element where the plain
element-by-element transposition puts it, and no vector load or store may reach past the
block's rows, which the check allocates to their exact span.
"""
import pytest

from cpu_host_lib import LEVELS, needs_gcc, run_check

pytestmark = needs_gcc


# The AVX2 and baseline clones transpose in registers only on a CPU that would run the
# AVX-512 clone instead (FX_WIDE_SHUFFLES); defining the CPU test to 0 gives them the path
# they take on their own CPUs, the element-by-element copies.
CASES = [(level, "transpose") for level in LEVELS] + [
    (level, "copy") for level in LEVELS if level != "x86-64-v4"]


@pytest.mark.parametrize("level,path", CASES)
def test_tile_and_untile_match_the_plain_transposition(level, path, tmp_path):
    copy = ["-D__builtin_cpu_supports(feature)=0"] if path == "copy" else []
    run_check("fx_tile_check", level, copy, tmp_path)
