"""Every float32 bit pattern through fastxent's 16-bit conversions against NumPy's float16 and
ml_dtypes' bfloat16 casts, and every 16-bit pattern back (a release check; the test suite
runs a sample: tests/test_half_precision.py::test_conversions_are_numpys_casts).

    python .ci/half_casts.py        # about 5 minutes on 2 cores; prints the mismatches
"""
import sys

import ml_dtypes
import numpy as np

from fastxent._cpu import _half

BF16 = np.dtype(ml_dtypes.bfloat16)


def main() -> int:
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    bad = 0
    for bfloat16, dtype in ((False, np.dtype(np.float16)), (True, BF16)):
        out = np.empty(every.size, np.float32)
        _half.widen(every, out, bfloat16, 2)
        bad += int((out.view(np.uint32) != every.view(dtype).astype(np.float32)
                    .view(np.uint32)).sum())
    piece = 1 << 26
    with np.errstate(all="ignore"):
        for start in range(0, 1 << 32, piece):
            f = np.arange(start, start + piece, dtype=np.uint64).astype(np.uint32).view(
                np.float32)
            for bfloat16, dtype in ((False, np.dtype(np.float16)), (True, BF16)):
                got = np.empty(f.size, np.uint16)
                _half.narrow(f, got, bfloat16, 2)
                wrong = np.flatnonzero(got != f.astype(dtype).view(np.uint16))
                bad += wrong.size
                for i in wrong[:3]:
                    print(f"{dtype}: float32 0x{f.view(np.uint32)[i]:08x} gave "
                          f"0x{got[i]:04x}, the cast 0x{f.astype(dtype).view(np.uint16)[i]:04x}")
    print(f"{bad} mismatches over all 2^32 float32 and 2^16 16-bit patterns, each type")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
