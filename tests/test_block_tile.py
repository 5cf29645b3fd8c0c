"""The block kernels' transposed tile (fx_block.inc: fx_blk_tile, fx_blk_untile) checked in C
for every instruction set the extension is built for.

The extension picks its AVX-512, AVX2 or baseline build at run time, so the suite exercises
only the one this machine runs (each build transposes in its own registers: blocks of 16,
8 or 4 float rows). Here tests/cpu_host/fx_tile_check.c is compiled once per
instruction set and path, under AddressSanitizer and UndefinedBehaviorSanitizer where gcc
has them, and run where the CPU can: the tile must hold every element where the plain
element-by-element transposition puts it, and no vector load or store may reach past the
block's rows, which the check allocates to their exact span.
"""
import pytest

from cpu_host_lib import builds, needs_gcc, run_check

pytestmark = [needs_gcc, pytest.mark.main_run_only]


@pytest.mark.parametrize("level, cc", builds())
def test_tile_and_untile_match_the_plain_transposition(level, cc, tmp_path):
    run_check("fx_tile_check", level, [], tmp_path, cc)
