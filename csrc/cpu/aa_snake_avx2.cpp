// AVX2+FMA build of the fused anti-aliased Snake kernel (compiled with -mavx2 -mfma by CMakeLists.txt).
#define SONICORE_VOC_NS avx2
#include "aa_snake_impl.h"
