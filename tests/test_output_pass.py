"""The float-lane output pass (softmax and the gradient without label smoothing: fx_split,
fx_blk_scalef, fx_row_axpw) checked in C for every instruction set the extension is built for.

The suite runs only the build this machine picks; here tests/cpu_host/fx_mulf_check.c is
compiled once per instruction set (the x86-64 baseline has no FMA, and there the passes
multiply in double; aarch64 has it) with -fopenmp-simd, as the extension's omp simd loops are,
and run where the CPU (or qemu) can: each result must be the float of the double product but
for the rare product within 2^-46 of a rounding midpoint, and the split must refuse every
scale outside [2^-100, 2^100].
"""
import pytest

from cpu_host_lib import builds, needs_gcc, run_check

pytestmark = [needs_gcc, pytest.mark.main_run_only]

@pytest.mark.parametrize("level, cc", builds())
def test_output_pass_rounds_as_the_double_product(level, cc, tmp_path):
    run_check("fx_mulf_check", level, ["-fopenmp-simd"], tmp_path, cc)
