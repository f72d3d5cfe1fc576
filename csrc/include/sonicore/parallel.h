// One thread pool serves every CPU kernel in the process.
//
// Size defaults to the cores this process may run on (sched_getaffinity) and is set with
// set_num_threads(). The calling thread takes part in the work, so n threads means the
// caller plus n-1 workers. Workers sleep on a condition variable between jobs, so the pool
// costs nothing while torch's own intra-op pool runs, and vice versa: the two never spin
// at the same time. A parallel_for issued from inside a worker, or while another thread
// holds the pool, runs inline on the calling thread instead of oversubscribing.
#pragma once
#include <cstdint>
#include <functional>

namespace sonicore {

int num_threads();
void set_num_threads(int n);   // n <= 0 resets to the default (usable cores)
int default_num_threads();

// Calls fn(begin, end) over [0, n) split into chunks of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace sonicore
