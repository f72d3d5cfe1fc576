// AVX-512 build of the fused nn row kernels (compiled with the AVX-512 flags by CMakeLists.txt).
#define SONICORE_NN_NS avx512
#include "nn_impl.h"
