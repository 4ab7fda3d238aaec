// Kiln's threads: one process-wide pool, sized like torch.set_num_threads. The fused kernel splits a batch
// into tiles and hands them to the pool; the calling thread takes part, and a call with one tile runs inline.
#pragma once

#include <kiln/dsl/dims.hpp>

#include <cstddef>
#include <functional>
#include <vector>

namespace kiln {

// The number of threads kernels use (the caller included). Defaults to the machine's hardware threads.
void set_num_threads(int n);
int get_num_threads();

// Runs body(i) for every i in [0, count), spread over the pool; returns when all are done. The first
// exception thrown by a body is rethrown here. The caller takes items itself and never waits for a sleeping
// worker to wake; a parallel_for inside a body runs inline.
void parallel_for(index_t count, const std::function<void(index_t)>& body);

// Runs body(k, begin, end) over elements [0, sizes[k]) of every buffer k, in chunks of at most 16384 elements that
// start at multiples of 16384 (so on whole SIMD vectors), spread over the pool: element-wise work over many buffers
// (adding gradients, an optimizer's update), which gives the same bits on any number of threads.
void parallel_for_chunks(const std::vector<index_t>& sizes, const std::function<void(std::size_t, index_t, index_t)>& body);

}  // namespace kiln
