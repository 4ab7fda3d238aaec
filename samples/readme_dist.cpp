// The README's data-parallel block (kiln::dist), compiled and run under `mpirun -np 2` on the small synthetic task
// of readme_training.cpp for one epoch; afterwards a check that it learned the task and that every rank holds the
// same parameters. samples/check_readme_blocks.py checks that the block appears here line for line.
#include <kiln/dist.hpp>
#include <kiln/kiln.hpp>

#include <cmath>
#include <cstring>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

int main(int argc, char** argv) {
  // Setup: 2560 images of noise in which class k has a bright band on rows 2k + 4 and 2k + 5.
  const kiln::index_t samples = 2560;
  kiln::Tensor images({samples, 1, 28, 28}), labels({samples}, kiln::DType::int64);
  for (kiln::index_t s = 0; s < samples; ++s) {
    const kiln::index_t k = s % 10;
    labels.data_i64()[s] = k;
    for (kiln::index_t p = 0; p < 28 * 28; ++p) {
      const float noise = 0.5f * std::sin(12.9898f * static_cast<float>(s * 784 + p));
      images[s * 784 + p] = noise + (p / 28 / 2 == k + 2 ? 1.0f : 0.0f);
    }
  }
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
  for (kiln::index_t s = 0; s < samples; ++s) {
    const float* row = logits.data() + s * 10;
    correct += std::max_element(row, row + 10) - row == labels.data_i64()[s];
  }
  const double accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(samples);
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
