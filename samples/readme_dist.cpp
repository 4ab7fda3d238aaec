// The README's data-parallel block (kiln::dist), compiled and run under `mpirun -np 2` on the small synthetic task
// of readme_training.cpp for one epoch; afterwards a check that it learned the task and that every rank holds the
// same parameters. samples/check_readme_blocks.py checks that the block appears here line for line.
#include "readme_task.hpp"

#include <kiln/dist.hpp>
#include <kiln/kiln.hpp>

#include <cstring>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

int main(int argc, char** argv) {
  const auto [images, labels] = samples::band_task();  // readme_task.hpp
  const kiln::index_t count = images.size(0);
  const kiln::index_t epoch = 0;
  kiln::Tensor x, y;

  // ---- README.md, the data-parallel block, verbatim.
kiln::dist::World world{argc, argv};  // MPI_Init here, MPI_Finalize when it ends
kiln::Model model{net, /*seed=*/2024};
kiln::optim::AdamW opt{model, {.lr = 2e-3, .weight_decay = 1e-4}};
kiln::dist::DataParallel ddp{world, model, {.sync_batchnorm = true}};  // rank 0's parameters on every rank
kiln::ShardedBatchLoader loader{images, labels, /*batch_per_rank=*/32, /*seed=*/7, world.rank(), world.size()};
for (kiln::index_t step = 0; step < loader.batches(); ++step) {
  const kiln::BatchShard shard = loader.batch(epoch, step, x, y);
  model.zero_grad();
  double loss = ddp.forward_backward(x, y, nn::CrossEntropyLoss{}, shard);  // the global batch's, on every rank
  opt.step();
}
kiln::dist::save_model(world, model, "model.safetensors");  // rank 0 writes it, atomically
  // ---- end of the block.

  model.eval();
  const kiln::Tensor logits = model(images);
  kiln::index_t correct = 0;
  for (kiln::index_t s = 0; s < count; ++s) {
    const float* row = logits.data() + s * 10;
    correct += std::max_element(row, row + 10) - row == labels.data_i64()[s];
  }
  const double accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(count);
  kiln::Model saved{net};
  saved.load_safetensors("model.safetensors");
  bool same = true;  // as saved by rank 0, on every rank
  for (std::size_t k = 0; k < model.state().size(); ++k)
    same = same && std::memcmp(model.state()[k].value.bytes(), saved.state()[k].value.bytes(),
                               model.state()[k].value.nbytes()) == 0;
  fmt::print("rank {} of {}: {} steps, training accuracy {:.1f}%, the saved model {}\n", world.rank(), world.size(),
             loader.batches(), accuracy, same ? "is this rank's" : "DIFFERS from this rank's");
  return accuracy >= 90 && same ? 0 : 1;
}
