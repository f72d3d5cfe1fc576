// Portable FFT kernels (any CPU): the templates of fft_kernels.h on plain scalars.
#include "fft_kernels.h"

namespace sonicore {
namespace fft {

template <> Kernels<float> kernels_scalar<float>() { return make_kernels<ScalarOps<float>, float>(); }
template <> Kernels<double> kernels_scalar<double>() { return make_kernels<ScalarOps<double>, double>(); }

}  // namespace fft
}  // namespace sonicore
