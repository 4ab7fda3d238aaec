// kiln::dist from the installed package, run by the consumer test under mpirun -np 2: one data-parallel step.
#include <kiln/dist.hpp>
#include <kiln/kiln.hpp>

constexpr kiln::nn::Sequential net{kiln::input<4>, kiln::nn::Linear<4, 8>{}, kiln::nn::ReLU{},
                                   kiln::nn::Linear<8, 2>{}};

int main(int argc, char** argv) {
  kiln::dist::World world{argc, argv};
  kiln::Model model{net, 1};
  kiln::optim::SGD opt{model, {.lr = 0.1}};
  kiln::dist::DataParallel ddp{world, model};
  kiln::Tensor x({4, 4}), y({4}, kiln::DType::int64);
  for (kiln::index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(i % 5) - 2.0f;
  kiln::ShardedBatchLoader loader{x, y, 2, 1, world.rank(), world.size()};
  kiln::Tensor xs, ys;
  const kiln::BatchShard shard = loader.batch(0, 0, xs, ys);
  model.zero_grad();
  const double loss = ddp.forward_backward(xs, ys, kiln::nn::CrossEntropyLoss{}, shard);
  opt.step();
  if (world.is_root()) fmt::print("consumer dist ok: {} ranks, loss {:.4f}\n", world.size(), loss);
  return 0;
}
