// kiln::parallel_for: every item runs exactly once on any thread count, errors come back to the caller,
// nested calls and calls spaced out (workers asleep) still do all the work.
#include "../support.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

using kiln::index_t;

using kiln::testing::RestoreThreads;

TEST_CASE("threads: parallel_for runs every item exactly once", "[threads]") {
  RestoreThreads restore;
  for (int threads : {1, 2, 3, 5}) {
    kiln::set_num_threads(threads);
    CHECK(kiln::get_num_threads() == threads);
    for (index_t count : {0, 1, 2, 3, 17, 1000, 70000}) {  // 70000: more than one job's ticket counts (65535)
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(count));
      for (int repeat = 0; repeat < 20; ++repeat) kiln::parallel_for(count, [&](index_t i) { ++runs[static_cast<std::size_t>(i)]; });
      for (index_t i = 0; i < count; ++i) {
        INFO("threads " << threads << ", count " << count << ", item " << i);
        REQUIRE(runs[static_cast<std::size_t>(i)].load() == 20);
      }
    }
  }
}

TEST_CASE("threads: workers that are asleep still share the work, or leave it to the caller", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(2);
  for (int call = 0; call < 5; ++call) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // longer than a worker spins before it sleeps
    std::atomic<index_t> sum{0};
    kiln::parallel_for(64, [&](index_t i) { sum += i; });
    CHECK(sum.load() == 64 * 63 / 2);
  }
}

TEST_CASE("threads: a body's exception reaches the caller and the pool keeps working", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(2);
  CHECK_THROWS_WITH(kiln::parallel_for(50, [](index_t i) {
                      if (i == 17) throw std::runtime_error("item 17 failed");
                    }),
                    "item 17 failed");
  std::atomic<int> runs{0};
  kiln::parallel_for(50, [&](index_t) { ++runs; });
  CHECK(runs.load() == 50);
  CHECK_THROWS_WITH(kiln::set_num_threads(0), Catch::Contains("at least 1"));
}

TEST_CASE("threads: a parallel_for inside a body runs inline", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(2);
  std::atomic<int> runs{0};
  kiln::parallel_for(8, [&](index_t) { kiln::parallel_for(8, [&](index_t) { ++runs; }); });
  CHECK(runs.load() == 64);
}
