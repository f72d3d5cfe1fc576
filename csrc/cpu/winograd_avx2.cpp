// AVX2+FMA build of the Winograd tile kernels (compiled with -mavx2 -mfma by CMakeLists.txt).
#define SONICORE_WINO_NS avx2
#include "winograd_impl.h"
