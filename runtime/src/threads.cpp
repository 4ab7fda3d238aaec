// The thread pool behind kiln::parallel_for: persistent workers that wait for a job, then take indices from an
// atomic counter until none are left. Between jobs a worker spins for a while (about 50 us) before it sleeps
// on a condition variable: a kernel calls the pool once per segment, and waking a sleeping thread costs tens
// of microseconds, more than a small network's whole forward pass.
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/threads.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

namespace {

class Pool {
 public:
  Pool() { resize(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    if (n < 1) throw Error("set_num_threads: the number of threads must be at least 1");
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop();
    size_ = n;
    quit_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { work(); });
  }

  void run(index_t count, const std::function<void(index_t)>& body) {
    if (count <= 0) return;
    if (count == 1 || size_ == 1) {
      for (index_t i = 0; i < count; ++i) body(i);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // one job at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      count_ = count;
      next_.store(0);
      pending_.store(static_cast<int>(workers_.size()));
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    take(body);
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return pending_.load() == 0; });
    }
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void take(const std::function<void(index_t)>& body) {
    for (index_t i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }
  // Spins until ready() or about 50 us have passed; returns whether ready() became true.
  template <class Ready>
  static bool spin_until(Ready ready) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    for (int i = 0;; ++i) {
      if (ready()) return true;
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return quit_.load() || generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return quit_.load() || generation_.load() != seen; });
      }
      if (quit_) return;
      const std::function<void(index_t)>* body;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_.load();
        body = body_;
      }
      take(*body);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(index_t)>* body_ = nullptr;
  index_t count_ = 0;
  std::atomic<index_t> next_{0};
  std::atomic<int> pending_{0};
  int size_ = 1;
  std::atomic<bool> quit_{false};
  std::atomic<std::uint64_t> generation_{0};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_num_threads(int n) { pool().resize(n); }
int get_num_threads() { return pool().size(); }
void parallel_for(index_t count, const std::function<void(index_t)>& body) { pool().run(count, body); }

}  // namespace kiln
