// kiln_buffer_alloc / kiln_buffer_free, the compiled kernels' intermediate buffers: 64-byte aligned, writable to
// their size, a freed block taken again by its thread's next request that fits, the bounds on what a thread keeps,
// blocks given back on another thread, and impossible sizes refused with null.
#include "../support.hpp"

#include <kiln/runtime/kernel_buffers.hpp>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

bool aligned(void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

// Runs `check` on a thread of its own, which has kept no blocks yet.
template <class F>
void on_fresh_thread(F check) {
  std::thread(check).join();
}

}  // namespace

TEST_CASE("kernel buffers: aligned, writable, and taken again by the thread's next call", "[kernel_buffers]") {
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{100}, std::size_t{65536}, std::size_t{3145728}})
    on_fresh_thread([bytes] {
      INFO("bytes " << bytes);
      void* a = kiln_buffer_alloc(bytes);
      REQUIRE(a != nullptr);
      CHECK(aligned(a));
      std::memset(a, 0x5a, bytes);
      kiln_buffer_free(a);
      // The same size again, and a smaller one, get the block back: nothing reaches malloc.
      void* b = kiln_buffer_alloc(bytes);
      CHECK(b == a);
      kiln_buffer_free(b);
      if (bytes > 0) {
        void* c = kiln_buffer_alloc(bytes - 1);
        CHECK(c == a);
        kiln_buffer_free(c);
      }
    });
}

TEST_CASE("kernel buffers: the smallest kept block that fits, a new one where none does", "[kernel_buffers]") {
  on_fresh_thread([] {
    void* small = kiln_buffer_alloc(1000);
    void* large = kiln_buffer_alloc(100000);
    kiln_buffer_free(large);
    kiln_buffer_free(small);
    void* want_small = kiln_buffer_alloc(900);
    CHECK(want_small == small);
    void* want_large = kiln_buffer_alloc(5000);
    CHECK(want_large == large);
    void* bigger = kiln_buffer_alloc(200000);  // larger than anything kept: a new block
    CHECK(bigger != small);
    CHECK(bigger != large);
    for (void* p : {want_small, want_large, bigger}) kiln_buffer_free(p);
  });
}

TEST_CASE("kernel buffers: a thread keeps at most kernel_buffers_kept_blocks blocks", "[kernel_buffers]") {
  on_fresh_thread([] {
    const auto kept = static_cast<std::size_t>(kiln::kernel_buffers_kept_blocks);
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < kept + 4; ++i) blocks.push_back(kiln_buffer_alloc(4096 * (i + 1)));
    for (void* p : blocks) kiln_buffer_free(p);
    // Kept: the largest `kept`; the 4 smallest went back. Requests of the smallest size take the kept blocks
    // smallest first.
    std::vector<void*> again;
    for (std::size_t i = 0; i < kept; ++i) again.push_back(kiln_buffer_alloc(4096));
    for (std::size_t i = 0; i < kept; ++i) CHECK(again[i] == blocks[i + 4]);
    for (void* p : again) kiln_buffer_free(p);
  });
}

TEST_CASE("kernel buffers: a block over the kept bytes is not kept, and any thread frees blocks", "[kernel_buffers]") {
  on_fresh_thread([] {
    void* big = kiln_buffer_alloc(kiln::kernel_buffers_kept_bytes + 64);
    REQUIRE(big != nullptr);
    kiln_buffer_free(big);
    void* small = kiln_buffer_alloc(64);  // not the big block: it was not kept
    CHECK(small != big);
    kiln_buffer_free(small);
  });
  void* p = kiln_buffer_alloc(12345);
  std::thread([p] { kiln_buffer_free(p); }).join();  // kept by that thread until it ends, then freed
  kiln_buffer_free(nullptr);
}

TEST_CASE("kernel buffers: sizes no system can give are refused with null", "[kernel_buffers]") {
  CHECK(kiln_buffer_alloc(SIZE_MAX) == nullptr);
  CHECK(kiln_buffer_alloc(SIZE_MAX - 70) == nullptr);
}
