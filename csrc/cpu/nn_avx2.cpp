// AVX2+FMA build of the fused nn row kernels (compiled with -mavx2 -mfma by CMakeLists.txt).
#define SONICORE_NN_NS avx2
#include "nn_impl.h"
