// AVX-512 build of the Winograd tile kernels (compiled with the AVX-512 flags by CMakeLists.txt).
#define SONICORE_WINO_NS avx512
#include "winograd_impl.h"
