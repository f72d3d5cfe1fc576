// Fused anti-aliased Snake activation (BigVGAN): argument checks, ISA choice, threading.
#define SONICORE_VOC_NS generic
#include "aa_snake_impl.h"

#include "sonicore/common.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {

void aa_snake_f32(const AASnakeArgs& a) {
  SONICORE_CHECK(a.x && a.out && a.alpha && a.inv_beta && a.up_filter && a.down_filter, "aa_snake: null pointer");
  SONICORE_CHECK(a.rows >= 0 && a.T >= 1 && a.C >= 1 && a.rows % a.C == 0, "aa_snake: bad shape");
  // Blocks of output samples per task: large enough to amortise the 12-sample halo, small enough that
  // the three scratch rows stay in L1/L2 and a long row still splits across threads.
  const int64_t block = a.T < 4096 ? a.T : 2048;
  const int64_t tasks = a.rows * ((a.T + block - 1) / block);
  const int64_t grain = std::max<int64_t>(1, 16384 / block);
  const bool v = cpu_isa() != Isa::scalar;
  parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
    v ? vocoder_detail::avx2::aa_snake_tasks(a, block, t0, t1)
      : vocoder_detail::generic::aa_snake_tasks(a, block, t0, t1);
  });
}

}  // namespace sonicore
