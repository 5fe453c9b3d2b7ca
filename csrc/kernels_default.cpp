// Fused kernels for torch's DEFAULT CPU capability.
// See kernels_impl.h.
#define CPU_CAPABILITY DEFAULT

#define SNN_TABLE_FN kernels_DEFAULT
#include "kernels_impl.h"
