// Data-parallel scaling (kiln::dist) on the main job's network: training steps of a per-rank batch, AdamW, one
// thread per rank, on Fashion-MNIST. bench/dist_scaling.sh runs it on 1 and on 2 ranks and prints the ratio.
//
//   mpirun -np 2 kiln_dist_scaling --batch 256 --steps 200
//   kiln_dist_scaling --batch 256 --steps 200 --plain    # one process without DataParallel: the baseline
//
// Rank 0 prints one line: ranks, per-rank batch, samples per second (all ranks together), milliseconds per step,
// the all-reduce's time per step and share of a step (waiting for the slower rank included), the all-reduce of
// one step's gradients alone (after a barrier, the median of 50), and the gradient bytes per step.
#include "cpu_name.hpp"

#include <kiln/dist.hpp>
#include <kiln/kiln.hpp>

#include <algorithm>
#include <chrono>

namespace nn = kiln::nn;
using kiln::index_t;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The all-reduce of `floats` floats alone: the median of 50 after a barrier each.
double allreduce_seconds(const kiln::dist::World& world, std::size_t floats) {
  std::vector<float> values(floats, 1.0f);
  std::vector<double> times;
  for (int i = 0; i < 50; ++i) {
    world.barrier();
    const auto start = Clock::now();
    world.sum(std::span{values});
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

int main(int argc, char** argv) try {
  kiln::dist::World world{argc, argv};
  if (world.size() > 1 && std::find(argv, argv + argc, std::string{"--plain"}) != argv + argc)
    throw kiln::Error("--plain is the one-process baseline: run it without mpirun");
  index_t batch = 256;
  int steps = 200, warmup = 20;
  bool plain = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--plain") {
      plain = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) throw kiln::Error(a + " needs a value");
    if (a == "--batch") batch = std::stol(argv[i + 1]);
    else if (a == "--steps") steps = std::stoi(argv[i + 1]);
    else if (a == "--warmup") warmup = std::stoi(argv[i + 1]);
    else throw kiln::Error("unknown option " + a + " (see the top of bench/dist_scaling.cpp)");
  }
  kiln::set_num_threads(1);
  const kiln::LabelledImages train = kiln::load_fashion_mnist(true);
  kiln::Model model{net, 1};
  kiln::optim::AdamW opt{model, {.lr = 2e-3, .weight_decay = 1e-4}};
  kiln::dist::DataParallel ddp{world, model};
  kiln::ShardedBatchLoader loader{train.images, train.labels, batch, 7, world.rank(), world.size()};
  const nn::CrossEntropyLoss loss_fn{.label_smoothing = 0.05f};
  kiln::Tensor x, y;
  model.train();
  auto run = [&](int count, index_t first) {
    for (index_t s = first; s < first + count; ++s) {
      const index_t b = s % (loader.batches() - 1);  // full batches only
      const kiln::BatchShard shard = loader.batch(s / (loader.batches() - 1), b, x, y);
      model.zero_grad();
      if (plain) model.forward_backward(x, y, loss_fn);
      else ddp.forward_backward(x, y, loss_fn, shard);
      opt.step();
    }
  };
  run(warmup, 0);
  world.barrier();
  const double reduce_before = ddp.reduce_seconds();
  const auto start = Clock::now();
  run(steps, warmup);
  world.barrier();
  const double total = seconds_since(start), reduce = ddp.reduce_seconds() - reduce_before;
  const double alone = allreduce_seconds(world, ddp.gradient_bytes() / sizeof(float));
  if (world.is_root())
    fmt::print("{}: ranks {}{} batch/rank {} threads/rank 1: {:.0f} samples/s, {:.3f} ms/step, all-reduce {:.3f} ms/step "
               "({:.1f}%), all-reduce alone {:.3f} ms, {} gradient bytes/step\n",
               kiln::bench::cpu_name(), world.size(), plain ? " (plain, no DataParallel)" : "", batch,
               static_cast<double>(steps) * static_cast<double>(batch * world.size()) / total, 1e3 * total / steps,
               1e3 * reduce / steps, 100 * reduce / total, 1e3 * alone, ddp.gradient_bytes());
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
