// Services for the kernels (api.h): per-thread scratch and a per-JS-thread worker pool. Compiled
// for baseline x86-64. Everything is thread_local so that ranks running in separate worker_threads
// (each with its own JS thread) share nothing: each has its own pool, thread count and scratch.
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "api.h"
#include "runtime.h"

namespace {

struct Slot {
  float* p = nullptr;
  size_t n = 0;
  ~Slot() { free(p); }
};
thread_local Slot tl_slots[8];

// Slots of 4 MiB and more start on a 2 MiB boundary and ask for transparent huge pages, so that
// streaming a packed K/V block or a GEMM panel walks one TLB entry per 2 MiB instead of 512.
constexpr size_t kHuge = (size_t)2 << 20;
float* scratch_alloc(size_t bytes) {
  if (bytes < 2 * kHuge) return (float*)aligned_alloc(64, (bytes + 63) / 64 * 64);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  float* p = (float*)aligned_alloc(kHuge, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

// Fixed set of n-1 helper threads; the caller is worker 0. Items are claimed with an atomic
// counter, so uneven items (causal tiles) balance.
class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int i = 1; i < n; i++) threads_.emplace_back([this, i] { loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return n_; }
  // CPU seconds consumed so far by the helper threads (benchmarks on a shared machine).
  double cpu_seconds() {
    double s = 0;
    for (auto& t : threads_) {
      clockid_t id;
      timespec ts;
      if (pthread_getcpuclockid(t.native_handle(), &id) == 0 && clock_gettime(id, &ts) == 0) s += ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    return s;
  }
  void run(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      ctx_ = ctx;
      total_ = n;
      next_.store(0);
      pending_ = n_ - 1;
      gen_++;
    }
    cv_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [this] { return pending_ == 0; });
  }

 private:
  void work(int id) {
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= total_) break;
      fn_(ctx_, i, id);
    }
  }
  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
      }
      work(id);
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  int n_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_;
  bool stop_ = false;
  uint64_t gen_ = 0;
  int pending_ = 0;
  int64_t total_ = 0;
  std::atomic<int64_t> next_{0};
  void (*fn_)(void*, int64_t, int) = nullptr;
  void* ctx_ = nullptr;
};

thread_local int tl_threads = 1;
thread_local Pool* tl_pool = nullptr;
struct PoolOwner {
  ~PoolOwner() { delete tl_pool; }
};
thread_local PoolOwner tl_owner;

}  // namespace

float* sp_scratch(int slot, size_t n) {
  Slot& s = tl_slots[slot];
  if (s.n < n) {
    free(s.p);
    const size_t cap = n + n / 4 + 16;
    s.p = scratch_alloc(cap * sizeof(float));
    if (!s.p) abort();  // out of memory inside a kernel: nothing sensible to return
    s.n = cap;
  }
  return s.p;
}

int sp_threads() { return tl_threads; }

void sp_parallel_for(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (tl_threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
    return;
  }
  if (!tl_pool || tl_pool->size() != tl_threads) {
    (void)&tl_owner;  // make sure the owner exists on this thread so the pool is joined at exit
    delete tl_pool;
    tl_pool = new Pool(tl_threads);
  }
  tl_pool->run(n, fn, ctx);
}

double sp_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9 + (tl_pool ? tl_pool->cpu_seconds() : 0.0);
}

void sp_set_threads(int n) { tl_threads = n < 1 ? 1 : (n > 256 ? 256 : n); }

void sp_release_scratch() {
  for (auto& s : tl_slots) {
    free(s.p);
    s.p = nullptr;
    s.n = 0;
  }
}
