// What two threads cost a small call (issue 15 asks two threads at >= 1.8x one thread from batch 256 on, where
// tiny 16-32-32-4 takes about 5 us on one thread). Prints:
//   1. the round trip of a cache line between two threads (each waits for the other's store): the least that a
//      call handing work to another core and waiting for it can add;
//   2. kiln::parallel_for(2) of two items of 2.5 us: when each item starts after the call and when the call returns
//      after it ends (medians), and the call's time over one item's;
//   3. tiny's forward (the expression-template kernel) on one thread at 128 and 256 rows and on two at 256: two
//      threads can at best take one thread's 128 rows plus a round trip.
//
//   kiln_pool_overhead
#include "networks.hpp"
#include "timing.hpp"

#include <kiln/kiln.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

namespace nn = kiln::nn;
using kiln::index_t;
using Clock = std::chrono::steady_clock;

void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

double ns_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::nano>(b - a).count(); }

using kiln::bench::median;

// Best of 5 rounds of 200000 round trips, ns each.
double round_trip_ns() {
  alignas(64) std::atomic<long> ball{0};
  constexpr long trips = 200000, rounds = 5;
  std::thread other([&] {
    for (long i = 1; i < 2 * trips * rounds; i += 2) {
      while (ball.load(std::memory_order_acquire) != i) pause();
      ball.store(i + 1, std::memory_order_release);
    }
  });
  double best = 1e9;
  for (long r = 0; r < rounds; ++r) {
    const auto start = Clock::now();
    for (long i = 2 * trips * r; i < 2 * trips * (r + 1); i += 2) {
      ball.store(i + 1, std::memory_order_release);
      while (ball.load(std::memory_order_acquire) != i + 2) pause();
    }
    best = std::min(best, ns_between(start, Clock::now()) / trips);
  }
  other.join();
  return best;
}

void pool_call() {
  constexpr int calls = 20000;
  constexpr auto item = std::chrono::nanoseconds(2500);
  std::vector<double> starts[2], returns[2], total;
  for (int c = 0; c < calls; ++c) {
    Clock::time_point began[2], ended[2];
    const auto call = Clock::now();
    kiln::parallel_for(2, [&](index_t i) {
      began[i] = Clock::now();
      while (Clock::now() < began[i] + item) pause();
      ended[i] = Clock::now();
    });
    const auto back = Clock::now();
    for (int i = 0; i < 2; ++i) {
      starts[i].push_back(ns_between(call, began[i]));
      returns[i].push_back(ns_between(ended[i], back));
    }
    total.push_back(ns_between(call, back) - static_cast<double>(item.count()));
  }
  fmt::print("parallel_for(2), items of {} ns, medians of {} calls: item 0 (the caller's) starts {:.0f} ns after the "
             "call, item 1 {:.0f} ns; the call returns {:.0f} ns after item 0 ends, {:.0f} ns after item 1; a call "
             "takes {:.0f} ns more than an item\n",
             item.count(), calls, median(starts[0]), median(starts[1]), median(returns[0]), median(returns[1]),
             median(total));
}

using kiln::bench::networks::tiny;

template <class Model>
double tiny_us(Model& model, int threads, index_t batch) {
  kiln::set_num_threads(threads);
  kiln::Tensor x({batch, 16}), y({batch, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  return kiln::bench::best_us([&] { model.forward(x, y); }, 20000);
}

}  // namespace

int main() {
  kiln::set_num_threads(2);
  const double trip = round_trip_ns();
  fmt::print("a cache line's round trip between two threads: {:.0f} ns (best of 5 rounds)\n", trip);
  pool_call();
  kiln::Model model{tiny, 3};
  model.eval();
  const double half = tiny_us(model, 1, 128), one = tiny_us(model, 1, 256), two = tiny_us(model, 2, 256);
  fmt::print("tiny, best of loops: one thread {:.2f} us at 128 rows, {:.2f} us at 256; two threads {:.2f} us at 256: "
             "{:.2f}x one thread, where 128 rows plus a round trip would be {:.2f}x\n",
             half, one, two, one / two, one / (half + trip * 1e-3));
}
