/* The kernels of fx_simd.h for one instruction set: CMakeLists.txt compiles this file once
 * per set with its -march and FX_ISA (v3, v4), and links the objects into every module,
 * which picks one per call (fx_simd.h: FX_PICK). */
#include "fx_simd.h"
