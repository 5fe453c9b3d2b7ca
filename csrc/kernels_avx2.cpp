// Fused kernels for torch's AVX2 CPU capability (compiled with -mavx2 -mfma -mf16c).
// See kernels_impl.h.
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define SNN_TABLE_FN kernels_AVX2
#include "kernels_impl.h"
