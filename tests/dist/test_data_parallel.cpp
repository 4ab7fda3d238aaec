// kiln::dist under mpirun (CTest starts `mpirun -np 2 kiln_dist_tests`): a data-parallel step on R ranks of
// batch B against one process on the global batch R * B, SyncBatchNorm against the global batch's statistics,
// per-rank BatchNorm1d, the sharded loader, checkpoints written by rank 0. Every check runs on every rank; the
// collectives keep the ranks in step, so a failing check is a CHECK (never REQUIRE) where collectives follow.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "../support.hpp"

#include <kiln/dist.hpp>

#include <algorithm>
#include <cstring>
#include <random>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

namespace {

kiln::dist::World* the_world = nullptr;
const kiln::dist::World& world() { return *the_world; }

constexpr nn::Sequential mlp{kiln::input<12>, nn::Linear<12, 32>{}, nn::ReLU{}, nn::Dropout{0.25f},
                             nn::Linear<32, 5>{}};
constexpr nn::Sequential bn_net{kiln::input<10>, nn::Linear<10, 16>{}, nn::BatchNorm1d<16>{},
                                nn::ReLU{},      nn::Dropout{0.2f},    nn::Linear<16, 4>{}};

constexpr index_t batch_per_rank = 8;

// A data set of n samples (the same in every process): features in [-1, 1], classes in [0, classes).
struct Data {
  Tensor x, y;
};
Data make_data(index_t n, index_t features, index_t classes) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Data d{Tensor({n, features}), Tensor({n}, kiln::DType::int64)};
  for (float& v : d.x.values()) v = value(rng);
  for (index_t i = 0; i < n; ++i) d.y.data_i64()[i] = static_cast<std::int64_t>(rng() % static_cast<unsigned>(classes));
  return d;
}
// Two full global batches and a short one of 2R + 1 samples: split unevenly (2 + 3 on 2 ranks), at least 2 per
// rank, as BatchNorm1d's statistics need.
index_t samples() { return 2 * batch_per_rank * world().size() + 2 * world().size() + 1; }

// FNV-1a over every parameter and buffer: equal hashes on every rank mean identical models.
template <class Model>
std::uint64_t state_hash(const Model& model) {
  std::uint64_t h = 1469598103934665603ull;
  for (const kiln::Parameter& p : model.state())
    for (std::size_t i = 0; i < p.value.nbytes(); ++i)
      h = (h ^ static_cast<std::uint8_t>(p.value.bytes()[i])) * 1099511628211ull;
  return h;
}
template <class Model>
bool identical_on_every_rank(const Model& model) {
  const std::vector<std::uint64_t> hashes = world().all_gather(state_hash(model));
  return std::all_of(hashes.begin(), hashes.end(), [&](std::uint64_t h) { return h == hashes[0]; });
}

template <class Model>
bool same_bits(const Model& a, const Model& b) {
  for (std::size_t k = 0; k < a.state().size(); ++k)
    if (std::memcmp(a.state()[k].value.bytes(), b.state()[k].value.bytes(), a.state()[k].value.nbytes()) != 0) {
      UNSCOPED_INFO("first difference in " << a.state()[k].name());
      return false;
    }
  return true;
}
// Within float32 summation-order differences: 1e-5 relative or 1e-6 absolute, every parameter and buffer.
template <class Model>
bool nearly_equal(const Model& a, const Model& b) {
  for (std::size_t k = 0; k < a.state().size(); ++k) {
    const Tensor &x = a.state()[k].value, &e = b.state()[k].value;
    if (x.dtype() != kiln::DType::float32) {
      if (std::memcmp(x.bytes(), e.bytes(), x.nbytes()) != 0) return false;
      continue;
    }
    const kiln::testing::Closeness c = kiln::testing::closeness(x.data(), e.data(), x.numel());
    if (c.worst_ratio > 1) {
      UNSCOPED_INFO(a.state()[k].name() << "[" << c.worst_index << "]: " << c.actual << " against " << c.expected);
      return false;
    }
  }
  return true;
}

// Each step: this rank's shard through DataParallel; returns the global losses.
template <class Model, class Optimizer>
std::vector<double> train_distributed(Model& model, Optimizer& opt, const Data& d, bool sync_batchnorm) {
  kiln::dist::DataParallel ddp{world(), model, {.sync_batchnorm = sync_batchnorm}};
  kiln::ShardedBatchLoader loader{d.x, d.y, batch_per_rank, /*seed=*/5, world().rank(), world().size()};
  std::vector<double> losses;
  Tensor x, y;
  for (index_t b = 0; b < loader.batches(); ++b) {
    const kiln::BatchShard shard = loader.batch(0, b, x, y);
    model.zero_grad();
    losses.push_back(ddp.forward_backward(x, y, nn::CrossEntropyLoss{}, shard));
    opt.step();
  }
  return losses;
}

// One process on the global batches.
template <class Model, class Optimizer>
std::vector<double> train_global(Model& model, Optimizer& opt, const Data& d) {
  kiln::BatchLoader loader{d.x, d.y, batch_per_rank * world().size(), /*seed=*/5};
  std::vector<double> losses;
  Tensor x, y;
  for (index_t b = 0; b < loader.batches(); ++b) {
    loader.batch(0, b, x, y);
    model.zero_grad();
    losses.push_back(model.forward_backward(x, y, nn::CrossEntropyLoss{}));
    opt.step();
  }
  return losses;
}

// One process computing what 2 ranks compute, in their order: each shard's gradients from zero (rank 0's first),
// summed as the all-reduce of two sums them; BatchNorm1d's running stats from rank 0's shard.
template <class Model, class Optimizer>
void train_shards_in_order(Model& model, Optimizer& opt, const Data& d) {
  std::vector<kiln::ShardedBatchLoader> loaders;
  for (int r = 0; r < 2; ++r) loaders.emplace_back(d.x, d.y, batch_per_rank, /*seed=*/5, r, 2);
  Tensor x, y;
  for (index_t b = 0; b < loaders[0].batches(); ++b) {
    const std::uint64_t step = model.step();
    std::vector<kiln::TensorMap> grads;
    kiln::TensorMap rank0_buffers;
    for (int r = 0; r < 2; ++r) {
      const kiln::BatchShard shard = loaders[static_cast<std::size_t>(r)].batch(0, b, x, y);
      model.set_step(step);
      model.set_shard({shard.first, nullptr, shard.global_size});
      model.zero_grad();
      model.forward_backward(x, y, nn::CrossEntropyLoss{});
      grads.push_back(model.gradients());
      if (r == 0)
        for (const kiln::Parameter& p : model.state())
          if (p.buffer()) rank0_buffers.emplace(p.name(), p.value.clone());
    }
    model.set_shard({});
    model.load_state_dict(rank0_buffers, /*strict=*/false);
    for (kiln::Parameter& p : model.parameters()) {
      const Tensor &g0 = grads[0].at(std::string{p.name()}), &g1 = grads[1].at(std::string{p.name()});
      for (index_t i = 0; i < p.grad.numel(); ++i) p.grad.data()[i] = g0.data()[i] + g1.data()[i];
    }
    opt.step();
  }
}

// R ranks through DataParallel against one process on the global batches, both with SGD and `options`: the same
// parameters, buffers and losses within float32 summation-order differences, and every rank identical.
template <class Model>
void check_equals_global(Model& distributed, Model& global, const Data& d, bool sync_batchnorm,
                         kiln::optim::SGDOptions options) {
  kiln::optim::SGD opt_d{distributed, options}, opt_g{global, options};
  const std::vector<double> losses = train_distributed(distributed, opt_d, d, sync_batchnorm);
  const std::vector<double> expected = train_global(global, opt_g, d);
  CHECK(nearly_equal(distributed, global));
  CHECK(losses.size() == expected.size());
  for (std::size_t k = 0; k < std::min(losses.size(), expected.size()); ++k)
    CHECK(losses[k] == Approx(expected[k]).epsilon(1e-6));
  CHECK(identical_on_every_rank(distributed));
}

// R ranks through DataParallel (AdamW, per-rank BatchNorm1d) end identical; with 2 ranks, bit for bit what one
// process computes summing the two shards' gradients in the all-reduce's order (train_shards_in_order).
template <class Model>
void check_equals_shards_in_order(Model& distributed, Model& reference, const Data& d) {
  kiln::optim::AdamW opt_d{distributed, {.lr = 1e-2}}, opt_r{reference, {.lr = 1e-2}};
  train_distributed(distributed, opt_d, d, false);
  CHECK(identical_on_every_rank(distributed));
  if (world().size() != 2) return;  // beyond 2 ranks MPI chooses the order of the sums
  train_shards_in_order(reference, opt_r, d);
  CHECK(same_bits(distributed, reference));
}

}  // namespace

TEST_CASE("dist: a data-parallel step equals one process on the global batch", "[dist]") {
  kiln::Model distributed{mlp, 3}, global{mlp, 3};
  if (!world().is_root()) distributed.set_step(99);  // rank 0's state reaches every rank: the step too
  check_equals_global(distributed, global, make_data(samples(), 12, 5), false, {.lr = 0.1, .momentum = 0.9});
}

TEST_CASE("dist: one step on R ranks of B equals one step of one process on R * B (with SyncBatchNorm too)", "[dist]") {
  const index_t one_global_batch = batch_per_rank * world().size();
  kiln::Model distributed{mlp, 4}, global{mlp, 4};
  check_equals_global(distributed, global, make_data(one_global_batch, 12, 5), false, {.lr = 0.5});
  kiln::Model bn_distributed{bn_net, 4}, bn_global{bn_net, 4};
  check_equals_global(bn_distributed, bn_global, make_data(one_global_batch, 10, 4), true, {.lr = 0.5});
}

TEST_CASE("dist: with 2 ranks a step is bit for bit the sum of the shards' gradients (AdamW, Dropout on)", "[dist]") {
  kiln::Model distributed{mlp, 3}, reference{mlp, 3};
  check_equals_shards_in_order(distributed, reference, make_data(samples(), 12, 5));
}

TEST_CASE("dist: BatchNorm1d per rank normalises with each shard's statistics; rank 0's running stats", "[dist]") {
  kiln::Model distributed{bn_net, 8}, reference{bn_net, 8};
  check_equals_shards_in_order(distributed, reference, make_data(samples(), 10, 4));
}

TEST_CASE("dist: SyncBatchNorm equals one process on the global batch, running stats included", "[dist]") {
  const Data d = make_data(samples(), 10, 4);
  kiln::Model distributed{bn_net, 8}, global{bn_net, 8};
  check_equals_global(distributed, global, d, true, {.lr = 0.1, .momentum = 0.9});
  // And eval mode afterwards uses those running stats: the same outputs as the global model's.
  distributed.eval();
  global.eval();
  const Tensor a = distributed(d.x), b = global(d.x);
  CHECK(kiln::testing::closeness(a.data(), b.data(), a.numel()).worst_ratio <= 1);
}

TEST_CASE("dist: the sharded loader gives each rank a disjoint part of the same global batch", "[dist]") {
  const Data d = make_data(21, 3, 2);
  for (int ranks = 1; ranks <= 3; ++ranks) {
    kiln::BatchLoader global{d.x, d.y, 4 * ranks, 11};
    std::vector<kiln::ShardedBatchLoader> loaders;
    for (int r = 0; r < ranks; ++r) loaders.emplace_back(d.x, d.y, 4, 11, r, ranks);
    for (index_t epoch = 0; epoch < 2; ++epoch)
      for (index_t b = 0; b < global.batches(); ++b) {
        Tensor gx, gy, x, y;
        global.batch(epoch, b, gx, gy);
        index_t next = 0;
        for (int r = 0; r < ranks; ++r) {
          const kiln::BatchShard shard = loaders[static_cast<std::size_t>(r)].batch(epoch, b, x, y);
          CHECK(shard.first == next);  // the shards follow each other: disjoint, and together the global batch
          CHECK(shard.global_size == gx.size(0));
          CHECK(std::memcmp(x.data(), gx.data() + shard.first * 3, x.nbytes()) == 0);
          CHECK(std::memcmp(y.data_i64(), gy.data_i64() + shard.first, y.nbytes()) == 0);
          next += x.size(0);
        }
        CHECK(next == gx.size(0));
      }
  }
  CHECK_THROWS_WITH((kiln::ShardedBatchLoader{d.x, d.y, 4, 11, 2, 2}),
                    Catch::Contains("rank 2 of 2 ranks is not a rank"));
  // 21 samples in global batches of 20: the last has 1 sample, fewer than the ranks.
  CHECK_THROWS_WITH((kiln::ShardedBatchLoader{d.x, d.y, 10, 11, 0, 2}), Catch::Contains("fewer than the 2 ranks"));
}

TEST_CASE("dist: checkpoints are written by rank 0, whole, and read back the same on every rank", "[dist]") {
  const Data d = make_data(samples(), 12, 5);
  kiln::Model model{mlp, 3};
  kiln::optim::AdamW opt{model, {.lr = 1e-2}};
  train_distributed(model, opt, d, false);
  const std::filesystem::path dir = KILN_DIST_TEST_DIR;
  if (world().is_root()) std::filesystem::create_directories(dir);
  world().barrier();
  kiln::dist::save_model(world(), model, dir / "model.safetensors", {{"by", "rank 0"}});
  kiln::dist::save_optimizer(world(), opt, dir / "optimizer.safetensors");
  kiln::Model loaded{mlp, 0};
  loaded.load_safetensors(dir / "model.safetensors");
  CHECK(same_bits(loaded, model));
  kiln::optim::AdamW opt_loaded{loaded, {.lr = 1}};
  opt_loaded.load_safetensors(dir / "optimizer.safetensors");
  CHECK(opt_loaded.lr == opt.lr);
  std::size_t files = 0;  // no temporary left behind, and no file but the two
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 2);
  // An error on rank 0 reaches every rank.
  CHECK_THROWS_WITH(kiln::dist::save_model(world(), model, dir / "missing" / "model.safetensors"),
                    Catch::Contains("rank 0 could not write") && Catch::Contains("missing/model.safetensors"));
  world().barrier();
  if (world().is_root()) std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  kiln::dist::World world{argc, argv, std::chrono::seconds{60}};
  the_world = &world;
  return Catch::Session().run(argc, argv);
}
