#include "sonicore/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace sonicore {
namespace {

thread_local bool t_inside_pool = false;

// How long a worker waiting for the next job, or a caller waiting for the last chunk, keeps
// checking before it blocks on a condition variable. It yields the CPU between checks, so any
// other runnable thread (torch's intra-op pool, another process) takes the core at once; when
// nothing else wants it, back-to-back jobs (a decoder step's attention, a network's small fused
// ops) start on a worker that is already awake instead of paying a futex wake-up, which costs
// tens of microseconds on a VM: a 1-query attention call over 1024 keys took as long on two
// threads as on one before.
constexpr auto kSpin = std::chrono::microseconds(100);

template <class Pred>
bool spin_until(Pred ready) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (ready()) return true;
    std::this_thread::yield();
    if ((i & 15) == 0 && std::chrono::steady_clock::now() - t0 > kSpin) return ready();
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return size_.load(); }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    size_ = std::max(1, n);
    stopping_ = false;
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    int64_t max_chunks = (n + grain - 1) / grain;
    // Inline when the work is small, when we are a worker already, or when the pool is busy.
    if (size_.load() == 1 || max_chunks == 1 || t_inside_pool) {
      fn(0, n);
      return;
    }
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) {
      fn(0, n);
      return;
    }
    // A few chunks per thread balances uneven work without much scheduling cost.
    int64_t chunks = std::min<int64_t>(max_chunks, int64_t(size_.load()) * 4);
    int64_t chunk = (n + chunks - 1) / chunks;
    chunks = (n + chunk - 1) / chunk;
    Job job;
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job = Job{&fn, n, chunk, chunks, uint32_t(generation_.load() + 1)};
      job_ = job;
      done_.store(0);
      error_ = nullptr;
      next_.store(uint64_t(job.tag) << 32);  // chunk 0 of this job
      generation_.fetch_add(1);
      wake = sleepers_ > 0;  // workers still spinning see the new generation by themselves
    }
    if (wake) cv_.notify_all();
    t_inside_pool = true;
    work(job);
    t_inside_pool = false;
    spin_until([&] { return done_.load() == chunks; });
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load() == chunks; });
    job_.fn = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // One job as every thread sees it: a copy taken under mu_, so nothing of it is read while the
  // next job is being published.
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0, chunk = 1, chunks = 0;
    uint32_t tag = 0;  // low bits of the job's generation
  };

  // Claims chunks of `job` until none is left. The claim counter holds (job tag, next chunk), so
  // a worker still holding a finished job's copy can never claim a chunk of the next one.
  void work(const Job& job) {
    for (;;) {
      uint64_t v = next_.load();
      do {
        if (uint32_t(v >> 32) != job.tag || int64_t(v & 0xffffffffu) >= job.chunks) return;
      } while (!next_.compare_exchange_weak(v, v + 1));
      const int64_t b = int64_t(v & 0xffffffffu) * job.chunk, e = std::min(job.n, b + job.chunk);
      try {
        (*job.fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (done_.fetch_add(1) + 1 == job.chunks) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }

  void worker_loop() {
    t_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return stopping_.load() || generation_.load() != seen; });
      Job job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        ++sleepers_;
        cv_.wait(lk, [&] { return stopping_.load() || generation_.load() != seen; });
        --sleepers_;
        if (stopping_) return;
        seen = generation_.load();
        if (!job_.fn) continue;
        job = job_;
      }
      work(job);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::atomic<int> size_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one job at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0};  // bumped under mu_ per job; read while spinning
  int sleepers_ = 0;                     // workers blocked on cv_ (under mu_)
  Job job_;                              // the current job (under mu_)
  std::atomic<uint64_t> next_{0};        // (job tag << 32) | next chunk to claim
  std::atomic<int64_t> done_{0};         // chunks of the current job finished
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool p(default_num_threads());
  return p;
}

}  // namespace

int default_num_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  if (n <= 0) n = default_num_threads();
  if (n != pool().size()) pool().resize(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace sonicore
