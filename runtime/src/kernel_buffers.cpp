#include <kiln/runtime/kernel_buffers.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

// Blocks come from malloc (so that a program counting its allocations sees them), aligned by hand: the 16 bytes
// before a block hold where its allocation starts and the block's size, so that any thread can give it back.
constexpr std::size_t alignment = 64, header = 16;

struct Header {
  void* start;
  std::size_t bytes;
};
Header& header_of(void* block) { return *reinterpret_cast<Header*>(static_cast<std::byte*>(block) - header); }
std::size_t size_of(void* block) { return header_of(block).bytes; }

void* allocate(std::size_t bytes) {
  const std::size_t extra = header + alignment - 1;
  if (bytes > SIZE_MAX - extra) return nullptr;
  void* start = std::malloc(bytes + extra);
  if (!start) return nullptr;
  const auto at = (reinterpret_cast<std::uintptr_t>(start) + extra) / alignment * alignment;
  void* block = reinterpret_cast<void*>(at);
  header_of(block) = Header{start, bytes};
  return block;
}

void release(void* block) { std::free(header_of(block).start); }

// This thread's freed blocks, until the thread ends.
struct Kept {
  std::array<void*, kiln::kernel_buffers_kept_blocks> blocks{};
  int count = 0;
  std::size_t bytes = 0;

  // The smallest kept block of at least `bytes`, taken out; null if none.
  void* take(std::size_t bytes_wanted) {
    int best = -1;
    for (int i = 0; i < count; ++i)
      if (size_of(blocks[i]) >= bytes_wanted && (best < 0 || size_of(blocks[i]) < size_of(blocks[best]))) best = i;
    if (best < 0) return nullptr;
    void* block = blocks[best];
    blocks[best] = blocks[--count];
    bytes -= size_of(block);
    return block;
  }
  // Keeps `block` if there is room, else gives the smallest of it and the kept ones back to the system.
  void keep(void* block) {
    const std::size_t size = size_of(block);
    if (size > kiln::kernel_buffers_kept_bytes) return release(block);
    while (count > 0 && (count == kiln::kernel_buffers_kept_blocks || bytes + size > kiln::kernel_buffers_kept_bytes)) {
      auto smallest = std::min_element(blocks.begin(), blocks.begin() + count,
                                       [](void* a, void* b) { return size_of(a) < size_of(b); });
      if (size_of(*smallest) > size) return release(block);
      bytes -= size_of(*smallest);
      release(*smallest);
      *smallest = blocks[--count];
    }
    blocks[count++] = block;
    bytes += size;
  }
  ~Kept() {
    for (int i = 0; i < count; ++i) release(blocks[i]);
    count = 0;
    gone = true;
  }
  // Set once this thread's Kept is destroyed: a kernel called later in the thread's exit allocates directly.
  static thread_local bool gone;
};
thread_local bool Kept::gone = false;
thread_local Kept kept;

}  // namespace

extern "C" void* kiln_buffer_alloc(std::size_t bytes) {
  if (!Kept::gone)
    if (void* block = kept.take(bytes)) return block;
  return allocate(bytes);
}

extern "C" void kiln_buffer_free(void* block) {
  if (!block) return;
  if (Kept::gone) return release(block);
  kept.keep(block);
}
