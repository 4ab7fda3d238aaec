// What the fused kernels need to know when this process computes one shard of a larger batch (data-parallel
// training, kiln::dist): where its rows start in the global batch, so that Dropout draws the global batch's mask
// for them, and, for SyncBatchNorm, how to sum per-channel statistics over every process. The kernels know
// nothing of MPI: kiln::dist implements BatchStatsSum with MPI_Allreduce.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <cstddef>

namespace kiln::et {

// Sums `count` doubles elementwise over every process of the job, in place. Every process calls it at the same
// points, in the same order (a collective).
class BatchStatsSum {
 public:
  virtual void operator()(double* values, std::size_t count) const = 0;

 protected:
  ~BatchStatsSum() = default;
};

struct Shard {
  index_t first_sample = 0;                        // index of this call's first row in the global batch
  const BatchStatsSum* batch_stats_sum = nullptr;  // set: train-mode BatchNorm1d uses the global batch's statistics
  index_t global_batch = 0;                        // > 0: a mean loss divides by it (the global batch's size)
};

}  // namespace kiln::et
