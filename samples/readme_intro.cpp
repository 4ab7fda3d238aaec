// The README's first C++ block (the declaration, the load, the eval forward, the summary), compiled and run.
//
// samples/check_readme_blocks.py checks that every ```cpp block of README.md appears here or in another
// samples/readme_*.cpp line for line, so the README cannot show code that does not compile. Around the
// block: what it takes as given (a batch of `images`, a `weights.safetensors` in the working directory),
// and afterwards a check that it computed what it says.
#include <kiln/kiln.hpp>

#include <cmath>

// The README's network, declared again for the setup (the block declares its own `net` inside main).
constexpr kiln::nn::Sequential readme_net{kiln::input<1, 28, 28>, kiln::nn::Flatten{}, kiln::nn::Linear<784, 256>{},
                                          kiln::nn::BatchNorm1d<256>{}, kiln::nn::ReLU{}, kiln::nn::Dropout{0.2f},
                                          kiln::nn::Linear<256, 10>{}};

int main() {
  // Setup: five images of smooth noise, and weights.safetensors written from a model with another seed and
  // running stats away from their defaults (one train-mode forward), so that loading it changes the model.
  kiln::Tensor images({5, 1, 28, 28});
  for (kiln::index_t i = 0; i < images.numel(); ++i) images[i] = std::sin(0.37f * static_cast<float>(i));
  kiln::Model writer{readme_net, /*seed=*/7};
  (void)writer(images);
  writer.save_safetensors("weights.safetensors");
  writer.eval();
  const kiln::Tensor expected = writer(images);

  // ---- README.md, the first C++ block, verbatim. Its #include is a no-op here: kiln.hpp is already included
  // above, and every Kiln header is #pragma once.
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

kiln::Model model{net, /*seed=*/42};                 // PyTorch's default init, drawn from the seed
model.load_safetensors("weights.safetensors");      // what safetensors.torch.save_file(model.state_dict()) wrote
model.eval();
kiln::Tensor logits = model(images);                // images: [N, 1, 28, 28]; N is dynamic
fmt::print("{}", net);                              // a summary like PyTorch's repr, with shapes and parameters
  // ---- end of the block.

  if (logits.shape() != kiln::Shape{5, 10}) return 1;
  double worst = 0;
  for (kiln::index_t i = 0; i < logits.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(logits[i]) - expected[i]));
  fmt::print("logits [5, 10] of the loaded weights, largest difference from the model that saved them: {:.1e}\n",
             worst);
  return worst <= 1e-6 ? 0 : 1;
}
