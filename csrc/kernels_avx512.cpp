// Fused kernels for torch's AVX512 CPU capability (compiled with -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma).
// See kernels_impl.h.
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define SNN_TABLE_FN kernels_AVX512
#include "kernels_impl.h"
