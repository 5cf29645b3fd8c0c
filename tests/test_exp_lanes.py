"""fx_simd.h's exponentials and logarithm checked in C for every instruction set the extension
is built for (aarch64 through qemu where it is installed): the vector lanes bit for bit
against the scalar form (which the row kernels' short tails use), the float one within an ulp
of exp, the logarithm within 2 ulp of libm's, and the AVX2 and AVX-512 builds bit for bit
against each other, though the AVX-512 one masks by a compare and scales by vscalefps
(tests/cpu_host/fx_exp_check.c has the arguments).
"""
import re

import pytest

from cpu_host_lib import builds, needs_gcc, run_check

pytestmark = [needs_gcc, pytest.mark.main_run_only]


@pytest.mark.parametrize("level, cc", builds())
def test_vector_exponentials_match_the_scalar_ones(level, cc, tmp_path):
    run_check("fx_exp_check", level, [], tmp_path, cc)


def test_avx2_and_avx512_exponentials_agree(tmp_path):
    hashes = {}
    for level in ("x86-64-v3", "x86-64-v4"):
        err = run_check("fx_exp_check", level, [], tmp_path)
        hashes[level] = re.search(r"hash ([0-9a-f]{16})", err).group(1)
    assert hashes["x86-64-v3"] == hashes["x86-64-v4"], hashes
