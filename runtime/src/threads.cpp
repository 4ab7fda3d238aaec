// The thread pool behind kiln::parallel_for: persistent workers that wait on a condition variable for a job,
// then take indices from an atomic counter until none are left.
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/threads.hpp>

#include <atomic>
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
      pending_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    take(body);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
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
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void(index_t)>* body;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        body = body_;
      }
      take(*body);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
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
  int pending_ = 0, size_ = 1;
  bool quit_ = false;
  std::uint64_t generation_ = 0;
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
