// The intermediate buffers of Kiln's compiled kernels (the MLIR JIT's and kiln_add_kernel's objects): where MLIR's
// lowering calls malloc and free for the buffers that do not fit on a call's stack, the kernels call these.
//
// Each thread keeps the blocks its calls freed, for its next calls: glibc's free gives a large block at the top of
// the heap back to the system (its trim threshold), and every call then paid its buffers' page faults again.
// Intel Xeon, one thread, tiny 16-32-32-4 at batch 4096 (two 512 KiB buffers a call): 277-315 us a call through
// malloc, 78-86 with glibc's mmap and trim thresholds raised (GLIBC_TUNABLES), as the expression-template kernel,
// which keeps its scratch from call to call too.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
// A block of at least `bytes` bytes, 64-byte aligned; null where the system has no memory left.
void* kiln_buffer_alloc(std::size_t bytes);
// Gives back a block from kiln_buffer_alloc (on any thread), or does nothing for null.
void kiln_buffer_free(void* block);
}

namespace kiln {

// The most bytes a thread keeps in freed blocks, and the most blocks: beyond them, a freed block goes back to the
// system. A JIT kernel's eval call allocates its buffers per block of rows sized by L2, so that few blocks of a few
// MiB cover it; a training call's buffers grow with the batch.
inline constexpr std::size_t kernel_buffers_kept_bytes = std::size_t{64} << 20;
inline constexpr int kernel_buffers_kept_blocks = 16;

}  // namespace kiln
