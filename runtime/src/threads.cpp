// The thread pool behind kiln::parallel_for: persistent workers, and jobs whose items anyone may take.
//
// A job is one atomic ticket: its generation, its item count and the next item to claim, in one word, so a
// worker that arrives late (the count reached, or another job's generation) claims nothing and touches nothing.
// The calling thread never waits for a worker to wake up: it takes items itself, and waits only for the items
// that workers have claimed and are running. Waking a sleeping worker costs 50-80 us on this kind of VM,
// many times a small network's forward pass; with this scheme a call costs at most its one-thread time plus
// the notification, and workers that are awake share the work.
//
// Between jobs a worker spins for about 50 us before it sleeps on a condition variable, so that back-to-back
// calls find it awake. Each line that the caller writes and a worker reads is a transfer between cores, so what a
// job writes for the workers is one line (the ticket and the body), and the caller writes nothing shared on its
// way out. Intel Xeon, two threads, items of 2.7 us (bench/pool_overhead.cpp times such calls): with the count on
// a line of its own, the items finished counted from zero per job and the ticket closed at the end, a call took
// 700 ns more than its items, the caller's item starting 260 ns after the call; now 560 and 95 (a round trip
// between the two cores: 125 ns), and tiny (16-32-32-4) at batch 256 on two threads 3.7-3.9 -> 3.4-3.6 us.
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/threads.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kiln {

namespace {

thread_local bool in_item = false;  // this thread is running an item of a job

// A job's ticket: generation << 32 | count << 16 | next item.
struct Ticket {
  static constexpr index_t max_items = 0xFFFF;
  static std::uint64_t make(std::uint32_t generation, index_t count, index_t next) {
    return std::uint64_t{generation} << 32 | static_cast<std::uint64_t>(count) << 16 | static_cast<std::uint64_t>(next);
  }
  static std::uint32_t generation(std::uint64_t t) { return static_cast<std::uint32_t>(t >> 32); }
  static index_t count(std::uint64_t t) { return static_cast<index_t>(t >> 16 & max_items); }
  static index_t next(std::uint64_t t) { return static_cast<index_t>(t & max_items); }
};

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
    // Inline: one item, one thread, or a parallel_for inside an item (the pool runs one job at a time).
    if (count == 1 || size_ == 1 || in_item) {
      for (index_t i = 0; i < count; ++i) body(i);
      return;
    }
    if (count > Ticket::max_items) {
      for (index_t base = 0; base < count; base += Ticket::max_items)
        run(std::min(Ticket::max_items, count - base), [&](index_t i) { body(base + i); });
      return;
    }
    // One job at a time. A caller that finds the pool busy with another thread's job runs its own items: with
    // several callers (one model shared by server threads), each keeps its core instead of queueing.
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) {
      for (index_t i = 0; i < count; ++i) body(i);
      return;
    }
    const std::uint32_t generation = ++generation_;  // wraps around: only equality matters
    body_.store(&body, std::memory_order_relaxed);
    // Item 0 is the caller's: it starts on it at once, while the workers see the job (a release store: the caller
    // does not wait for the line to reach them). A worker counted as sleeping holds the mutex until it waits, so
    // it is woken; one that falls asleep just as the job starts (counted after the load, its check before the
    // store) misses it, which costs only its help: the caller takes every item left, and the next job wakes it.
    ticket_.store(Ticket::make(generation, count, 1), std::memory_order_release);
    if (sleeping_.load(std::memory_order_relaxed) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    run_item(0);
    take(generation);
    // Only items that workers claimed can be left; they are running now.
    finished_ += static_cast<std::uint64_t>(count);
    for (int i = 0; done_.load(std::memory_order_acquire) < finished_; ++i) {
      if (i < 4096) pause();
      else std::this_thread::yield();
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  // Claims and runs items of job `generation` until none are left or another job has started.
  void take(std::uint32_t generation) {
    for (;;) {
      std::uint64_t ticket = ticket_.load(std::memory_order_acquire);
      for (;;) {
        if (Ticket::generation(ticket) != generation || Ticket::next(ticket) >= Ticket::count(ticket)) return;
        if (ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel, std::memory_order_acquire))
          break;
      }
      // The claim succeeded, so the job cannot end before this item is done: its body is still alive.
      run_item(Ticket::next(ticket));
    }
  }
  void run_item(index_t item) {
    try {
      in_item = true;
      (*body_.load(std::memory_order_relaxed))(item);
      in_item = false;
    } catch (...) {
      in_item = false;
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    done_.fetch_add(1, std::memory_order_release);
  }
  std::uint32_t current_generation() const { return Ticket::generation(ticket_.load(std::memory_order_acquire)); }
  // Spins until ready() or about 50 us have passed; returns whether ready() became true.
  template <class Ready>
  static bool spin_until(Ready ready) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    for (int i = 0;; ++i) {
      if (ready()) return true;
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
      pause();
    }
  }
  void work() {
    std::uint32_t seen = current_generation();
    for (;;) {
      auto ready = [&] { return quit_.load() || current_generation() != seen; };
      if (!spin_until(ready)) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_.fetch_add(1);
        wake_.wait(lock, ready);
        sleeping_.fetch_sub(1);
      }
      if (quit_) return;
      seen = current_generation();
      take(seen);
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
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  std::uint32_t generation_ = 0;  // the last job's, written under run_mutex_
  std::uint64_t finished_ = 0;    // the items of all jobs so far, written under run_mutex_
  // The ticket and the body share a line (one transfer brings a worker both); the items done, which workers
  // write on every item, and the sleeping count and quit flag, which change only as workers sleep, wake or stop,
  // each have their own.
  alignas(64) std::atomic<std::uint64_t> ticket_{0};
  std::atomic<const std::function<void(index_t)>*> body_{nullptr};
  alignas(64) std::atomic<std::uint64_t> done_{0};  // the items finished, all jobs together
  alignas(64) std::atomic<int> sleeping_{0};
  std::atomic<bool> quit_{false};
  int size_ = 1;
  std::exception_ptr error_;  // written under mutex_ by a failing item; read by the caller once all are done
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_num_threads(int n) { pool().resize(n); }
int get_num_threads() { return pool().size(); }
void parallel_for(index_t count, const std::function<void(index_t)>& body) { pool().run(count, body); }

void parallel_for_chunks(const std::vector<index_t>& sizes, const std::function<void(std::size_t, index_t, index_t)>& body) {
  constexpr index_t chunk = 16384;
  struct Chunk {
    std::size_t k;
    index_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (std::size_t k = 0; k < sizes.size(); ++k)
    for (index_t i = 0; i < sizes[k]; i += chunk) chunks.push_back({k, i, std::min(sizes[k], i + chunk)});
  pool().run(static_cast<index_t>(chunks.size()), [&](index_t c) {
    const Chunk& ch = chunks[static_cast<std::size_t>(c)];
    body(ch.k, ch.begin, ch.end);
  });
}

}  // namespace kiln
