// Batches for training: rows of an inputs tensor and a targets tensor with the same first dim, reshuffled
// every epoch from a seed (Philox, so the order is the same on every machine).
//
//   kiln::BatchLoader train{data.images, data.labels, /*batch_size=*/64, /*seed=*/1};
//   for (index_t b = 0; b < train.batches(); ++b) { train.batch(epoch, b, x, y); ... }
//
// ShardedBatchLoader gives each rank of a data-parallel job (kiln::dist) its disjoint part of every global batch.
#pragma once

#include <kiln/runtime/error.hpp>
#include <kiln/runtime/philox.hpp>
#include <kiln/runtime/tensor.hpp>

#include <cstring>
#include <numeric>
#include <vector>

namespace kiln {

class BatchLoader {
 public:
  BatchLoader(Tensor inputs, Tensor targets, index_t batch_size, std::uint64_t seed, bool shuffle = true)
      : inputs_(std::move(inputs)), targets_(std::move(targets)), batch_size_(batch_size), seed_(seed), shuffle_(shuffle) {
    if (inputs_.dim() == 0 || targets_.dim() == 0 || inputs_.size(0) != targets_.size(0))
      throw Error(fmt::format("BatchLoader: inputs {} and targets {} must have the same first dim",
                              shape_text(inputs_.shape()), shape_text(targets_.shape())));
    if (batch_size < 1) throw Error(fmt::format("BatchLoader: batch_size must be >= 1, got {}", batch_size));
  }

  index_t samples() const { return inputs_.size(0); }
  // The last batch may be smaller.
  index_t batches() const { return (samples() + batch_size_ - 1) / batch_size_; }

  // The size of batch b (the last may be smaller).
  index_t batch_size(index_t b) const { return std::min(batch_size_, samples() - b * batch_size_); }

  // Batch b of epoch e into x and y (reshaped and reused when they already have the right size).
  void batch(index_t epoch, index_t b, Tensor& x, Tensor& y) { batch_rows(epoch, b, 0, batch_size(b), x, y); }
  // Rows [begin, end) of batch b of epoch e.
  void batch_rows(index_t epoch, index_t b, index_t begin, index_t end, Tensor& x, Tensor& y) {
    if (b < 0 || b >= batches()) throw Error(fmt::format("BatchLoader: batch {} of {}", b, batches()));
    if (begin < 0 || begin > end || end > batch_size(b))
      throw Error(fmt::format("BatchLoader: rows [{}, {}) of batch {}, which has {}", begin, end, b, batch_size(b)));
    if (epoch != order_epoch_) shuffle(epoch);
    gather(inputs_, b * batch_size_ + begin, end - begin, x);
    gather(targets_, b * batch_size_ + begin, end - begin, y);
  }

 private:
  // Fisher-Yates with draws from Philox keyed by the seed, counter (i, epoch).
  void shuffle(index_t epoch) {
    order_.resize(static_cast<std::size_t>(samples()));
    std::iota(order_.begin(), order_.end(), index_t{0});
    if (shuffle_) {
      const auto key = Philox4x32::key_of(seed_);
      for (index_t i = samples() - 1; i > 0; --i) {
        const auto w = Philox4x32::generate({static_cast<std::uint32_t>(i), 0, static_cast<std::uint32_t>(epoch), 0x5eedu}, key);
        const std::uint64_t r = (std::uint64_t{w[0]} << 32 | w[1]) % static_cast<std::uint64_t>(i + 1);
        std::swap(order_[static_cast<std::size_t>(i)], order_[r]);
      }
    }
    order_epoch_ = epoch;
  }
  void gather(const Tensor& from, index_t first, index_t n, Tensor& to) const {
    Shape shape = from.shape();
    shape[0] = n;
    if (to.shape() != shape || to.dtype() != from.dtype()) to = Tensor(shape, from.dtype());
    const std::size_t row = from.nbytes() / static_cast<std::size_t>(from.size(0));
    for (index_t i = 0; i < n; ++i)
      std::memcpy(to.bytes() + static_cast<std::size_t>(i) * row,
                  from.bytes() + static_cast<std::size_t>(order_[static_cast<std::size_t>(first + i)]) * row, row);
  }

  Tensor inputs_, targets_;
  index_t batch_size_;
  std::uint64_t seed_;
  bool shuffle_;
  std::vector<index_t> order_;
  index_t order_epoch_ = -1;
};

// Where one rank's rows sit in a global batch: rows [first, first + its batch) of global_size.
struct BatchShard {
  index_t first = 0, global_size = 0;
};

// The batches of one rank of a data-parallel job: every rank orders the data set as a BatchLoader of global
// batches of ranks * batch_per_rank with the same seed (the same permutation everywhere, as Philox draws it), and
// takes its own rows of each global batch: rank r the rows [r n / R, (r + 1) n / R) of a batch of n, so that the
// ranks' shards are disjoint and together make the global batch. The last global batch may be smaller.
class ShardedBatchLoader {
 public:
  ShardedBatchLoader(Tensor inputs, Tensor targets, index_t batch_per_rank, std::uint64_t seed, int rank, int ranks,
                     bool shuffle = true)
      : global_(std::move(inputs), std::move(targets), batch_per_rank * std::max(ranks, 1), seed, shuffle),
        rank_(rank), ranks_(ranks) {
    if (ranks < 1 || rank < 0 || rank >= ranks)
      throw Error(fmt::format("ShardedBatchLoader: rank {} of {} ranks is not a rank", rank, ranks));
    if (global_.batch_size(global_.batches() - 1) < ranks)
      throw Error(fmt::format("ShardedBatchLoader: the last global batch has {} samples, fewer than the {} ranks: "
                              "choose a batch that leaves at least one sample per rank",
                              global_.batch_size(global_.batches() - 1), ranks));
  }

  index_t samples() const { return global_.samples(); }
  // Global batches per epoch (the same on every rank).
  index_t batches() const { return global_.batches(); }

  // This rank's rows of global batch b of epoch e into x and y; returns where they sit in the global batch.
  BatchShard batch(index_t epoch, index_t b, Tensor& x, Tensor& y) {
    const BatchShard shard = shard_of(b);
    const index_t end = (rank_ + 1) * shard.global_size / ranks_;
    global_.batch_rows(epoch, b, shard.first, end, x, y);
    return shard;
  }
  BatchShard shard_of(index_t b) const {
    const index_t n = global_.batch_size(b);
    return {rank_ * n / ranks_, n};
  }

 private:
  BatchLoader global_;
  int rank_, ranks_;
};

}  // namespace kiln
