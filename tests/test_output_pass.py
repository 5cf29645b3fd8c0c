"""The float-lane output pass (softmax and the gradient without label smoothing: fx_split,
fx_blk_scalef, fx_row_axpw) checked in C for every instruction set the extension is built for.

The suite runs only the clone this machine picks; here tests/cpu_host/fx_mulf_check.c is
compiled once per instruction set (and for the baseline one also with the CPU test off, as on
a CPU without FMA, where the passes multiply in double) with -fopenmp-simd, as the extension's
omp simd loops are, and run where the CPU can: each result must be the float of the double
product but for the rare product within 2^-46 of a rounding midpoint, and the split must
refuse every scale outside [2^-100, 2^100].
"""
import pytest

from cpu_host_lib import LEVELS, needs_gcc, run_check

pytestmark = needs_gcc

CASES = [(level, "fma") for level in LEVELS] + [("x86-64", "double")]


@pytest.mark.parametrize("level,path", CASES)
def test_output_pass_rounds_as_the_double_product(level, path, tmp_path):
    double = ["-D__builtin_cpu_supports(feature)=0"] if path == "double" else []
    run_check("fx_mulf_check", level, ["-fopenmp-simd", *double], tmp_path)
