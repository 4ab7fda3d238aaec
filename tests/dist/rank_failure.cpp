// A data-parallel job in which rank 1 fails at step 3 of the first epoch, as CTest's "dist: a failing rank" tests
// make it (see CMakeLists.txt): the other ranks must exit with a clear message and a nonzero status, not hang.
//
//   mpirun -np 2 dist_rank_failure kill|throw|stall
//     kill:  rank 1 kills itself (SIGKILL), as a crashed or killed process dies
//     throw: rank 1 throws a kiln::Error, which ends its main
//     stall: rank 1 stops taking part (sleeps); rank 0's collective times out after 3 s
#include <kiln/dist.hpp>
#include <kiln/kiln.hpp>

#include <csignal>
#include <thread>

namespace nn = kiln::nn;
using kiln::index_t;

constexpr nn::Sequential net{kiln::input<16>, nn::Linear<16, 32>{}, nn::ReLU{}, nn::Linear<32, 4>{}};

int main(int argc, char** argv) try {
  kiln::dist::World world{argc, argv, std::chrono::seconds{3}};
  const std::string mode = argc > 1 ? argv[1] : "kill";
  kiln::Tensor images({4096, 16}), labels({4096}, kiln::DType::int64);
  for (index_t i = 0; i < images.numel(); ++i) images.data()[i] = static_cast<float>(i % 7) - 3.0f;
  for (index_t i = 0; i < 4096; ++i) labels.data_i64()[i] = i % 4;
  kiln::Model model{net, 1};
  kiln::optim::SGD opt{model, {.lr = 0.01}};
  kiln::dist::DataParallel ddp{world, model};
  kiln::ShardedBatchLoader loader{images, labels, 32, 1, world.rank(), world.size()};
  kiln::Tensor x, y;
  for (index_t b = 0; b < loader.batches(); ++b) {
    if (b == 3 && world.rank() == 1) {
      fmt::print(stderr, "rank 1: failing on purpose ({})\n", mode);
      if (mode == "kill") std::raise(SIGKILL);
      if (mode == "throw") throw kiln::Error("rank 1 failed on purpose");
      if (mode == "stall") std::this_thread::sleep_for(std::chrono::hours{1});
    }
    const kiln::BatchShard shard = loader.batch(0, b, x, y);
    model.zero_grad();
    ddp.forward_backward(x, y, nn::CrossEntropyLoss{}, shard);
    opt.step();
  }
  fmt::print("rank {}: finished, which a failing rank should have prevented\n", world.rank());
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
