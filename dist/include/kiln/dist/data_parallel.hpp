// kiln::dist::DataParallel: one model trained by every rank of an MPI job, each rank on its own shard of every
// global batch (kiln::ShardedBatchLoader), as PyTorch's DistributedDataParallel does.
//
//   kiln::dist::World world{argc, argv};
//   kiln::Model model{net, /*seed=*/1};
//   kiln::optim::AdamW opt{model, {.lr = 2e-3}};
//   kiln::dist::DataParallel ddp{world, model};   // rank 0's parameters and buffers, on every rank
//   kiln::ShardedBatchLoader loader{images, labels, /*batch_per_rank=*/64, /*seed=*/7, world.rank(), world.size()};
//   for (index_t b = 0; b < loader.batches(); ++b) {
//     const kiln::BatchShard shard = loader.batch(epoch, b, x, y);
//     model.zero_grad();
//     ddp.forward_backward(x, y, loss, shard);   // the global batch's loss and gradients, on every rank
//     opt.step();                                // the same step everywhere: the ranks stay identical
//   }
//   kiln::dist::save_model(world, model, "model.safetensors");   // rank 0 writes, atomically
//
// A step: forward, loss and backward of this rank's rows (Dropout draws the global batch's mask for them, and a
// mean loss divides by the global batch), then the gradients summed over the ranks (World::sum: MPI_Iallreduce,
// waited on with a timeout) in buckets: a gradient of 64 KiB or more is a bucket of its own, reduced where it lies;
// smaller ones are packed together into buckets of up to Options::bucket_bytes (copying the main job's 0.8 MB into
// a bucket and back cost more than a call per large gradient). So each rank holds the gradient of the global
// batch's loss and, applying the same optimizer step, stays identical to the others. The sums start after the
// backward: the fused kernel finishes the gradients of a segment (the layers between two batch-statistics
// BatchNorm1d) together, and most of a network's gradient is usually in its first segment, finished last.
//
// BatchNorm1d: by default each rank normalises with its own shard's statistics and rank 0's running statistics
// are copied to the other ranks after each step (DistributedDataParallel's broadcast_buffers). With
// Options::sync_batchnorm it normalises with the global batch's statistics (PyTorch's SyncBatchNorm): a step then
// computes what one process computes on the whole global batch.
#pragma once

#include <kiln/dist/world.hpp>
#include <kiln/model.hpp>
#include <kiln/optim.hpp>
#include <kiln/runtime/data.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

namespace kiln::dist {

struct DataParallelOptions {
  bool sync_batchnorm = false;                      // SyncBatchNorm: BatchNorm1d uses the global batch's statistics
  std::size_t bucket_bytes = std::size_t{1} << 20;  // small gradients are packed into buckets of up to this size
};

template <class Model>
class DataParallel {
 public:
  using Options = DataParallelOptions;

  // Every rank takes rank 0's parameters, buffers and step (the dropout counter).
  DataParallel(const World& world, Model& model, Options options = {})
      : world_(world), model_(model), options_(options) {
    for (const Parameter& p : model_.state()) broadcast(p.value);
    std::uint64_t step = model_.step();
    world_.broadcast(std::as_writable_bytes(std::span{&step, 1}));
    model_.set_step(step);
    model_.parameters_changed();
    plan_buckets();
  }

  // This rank's rows of a global batch (where `shard` says they sit): forward, loss and backward, then the
  // gradients summed over the ranks. The model's gradients should be zero before (zero_grad). Returns the global
  // batch's loss, on every rank; `output`, when given, receives this rank's outputs.
  template <class Loss>
  double forward_backward(const Tensor& x, const Tensor& targets, const Loss& loss, const BatchShard& shard,
                          Tensor* output = nullptr) {
    double value = 0;
    {
      const ShardScope scope{model_, {shard.first, options_.sync_batchnorm ? &world_.batch_stats_sum() : nullptr,
                                      shard.global_size}};
      value = model_.forward_backward(x, targets, loss, output);
    }
    const auto start = std::chrono::steady_clock::now();
    reduce_gradients();
    if (!options_.sync_batchnorm) copy_buffers_from_root();
    world_.sum(std::span{&value, 1});
    reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return value;
  }

  const World& world() const { return world_; }
  // Seconds spent in the all-reduces of forward_backward so far (waiting for slower ranks included): the
  // communication's share of a step, for benchmarks.
  double reduce_seconds() const { return reduce_seconds_; }
  // Bytes of gradient all-reduced per step.
  std::size_t gradient_bytes() const {
    std::size_t bytes = 0;
    for (const Bucket& b : buckets_)
      for (const Parameter& p : b.params) bytes += p.grad.nbytes();
    return bytes;
  }

 private:
  // A large gradient alone, or small ones packed together; last layer first (the order a backward finishes them).
  struct Bucket {
    std::vector<Parameter> params;
    std::vector<float> packed;  // empty for a gradient reduced where it lies
  };
  static constexpr std::size_t large_bytes = std::size_t{64} << 10;

  // The model computes a shard while this lives, its own batch again after, also when forward_backward throws (a
  // shard left set would make a later call on the model a collective).
  struct ShardScope {
    ShardScope(Model& model, const et::Shard& shard) : model(model) { model.set_shard(shard); }
    ~ShardScope() { model.set_shard({}); }
    ShardScope(const ShardScope&) = delete;
    ShardScope& operator=(const ShardScope&) = delete;
    Model& model;
  };

  void plan_buckets() {
    std::vector<Parameter> params = model_.parameters();
    Bucket small;
    for (auto p = params.rbegin(); p != params.rend(); ++p) {
      if (p->grad.nbytes() >= large_bytes) {
        buckets_.push_back({{*p}, {}});
        continue;
      }
      if (!small.params.empty() && sizeof(float) * small.packed.size() + p->grad.nbytes() > options_.bucket_bytes)
        buckets_.push_back(std::exchange(small, {}));
      small.params.push_back(*p);
      small.packed.resize(small.packed.size() + static_cast<std::size_t>(p->grad.numel()));
    }
    if (!small.params.empty()) buckets_.push_back(std::move(small));
  }

  void reduce_gradients() {
    for (Bucket& b : buckets_) {
      if (b.packed.empty()) {
        world_.sum(b.params[0].grad.values());
        continue;
      }
      float* at = b.packed.data();
      for (Parameter& p : b.params) at = std::copy_n(p.grad.data(), p.grad.numel(), at);
      world_.sum(std::span{b.packed});
      const float* from = b.packed.data();
      for (Parameter& p : b.params) {
        std::copy_n(from, p.grad.numel(), p.grad.data());
        from += p.grad.numel();
      }
    }
  }

  // Rank 0's BatchNorm1d running statistics on every rank, in one broadcast (they are read only in eval mode: no
  // repacking).
  void copy_buffers_from_root() {
    buffer_bytes_.clear();
    for (const Parameter& p : model_.state())
      if (p.buffer()) buffer_bytes_.insert(buffer_bytes_.end(), p.value.bytes(), p.value.bytes() + p.value.nbytes());
    if (buffer_bytes_.empty()) return;
    world_.broadcast(buffer_bytes_);
    const std::byte* from = buffer_bytes_.data();
    for (const Parameter& p : model_.state())
      if (p.buffer()) {
        Tensor value = p.value;  // a view: the model's storage
        std::copy_n(from, value.nbytes(), value.bytes());
        from += value.nbytes();
      }
  }
  void broadcast(Tensor t) const {  // a view: the model's storage
    world_.broadcast(std::span{t.bytes(), t.nbytes()});
  }

  const World& world_;
  Model& model_;
  Options options_;
  std::vector<Bucket> buckets_;
  std::vector<std::byte> buffer_bytes_;
  double reduce_seconds_ = 0;
};

// Checkpoints: rank 0 writes the file (atomically: whole, or not at all); every rank returns once it is written,
// or throws the error rank 0 met.
template <class Model>
void save_model(const World& world, const Model& model, const std::filesystem::path& path,
                const Metadata& metadata = {}) {
  world.on_root([&] { model.save_safetensors(path, metadata); }, "write " + path.string());
}
inline void save_optimizer(const World& world, const optim::Optimizer& optimizer, const std::filesystem::path& path) {
  world.on_root([&] { optimizer.save_safetensors(path); }, "write " + path.string());
}

}  // namespace kiln::dist
