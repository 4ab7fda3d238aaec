// The README's JIT block (kiln::jit::compile), compiled and run; needs kiln::mlir (KILN_MLIR=ON).
//
// samples/check_readme_blocks.py checks that every ```cpp block of README.md appears in a samples/readme_*.cpp
// line for line. Around the block: what it takes as given (`net`, a batch `x`), and afterwards a check that
// the JIT kernel gives the expression-template kernel's numbers in train mode (the same dropout mask and
// batch statistics) and, after eval(), in eval mode.
#include <kiln/jit.hpp>
#include <kiln/kiln.hpp>

#include <cmath>

namespace nn = kiln::nn;

// The README's network (its first block).
constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

double largest_difference(const kiln::Tensor& a, const kiln::Tensor& b) {
  if (a.shape() != b.shape()) return INFINITY;
  double worst = 0;
  for (kiln::index_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / std::max(1.0, std::abs(static_cast<double>(b[i]))));
  return worst;
}

int main() {
  // Setup: a batch of 8 images of smooth noise, and a copy of the model the block builds, in the same mode
  // (train: a new model's) and at the same step, run by the expression-template kernel.
  kiln::Tensor x({8, 1, 28, 28});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  kiln::Model expression_templates{net, 42};
  const kiln::Tensor expected_train = expression_templates(x);

  // ---- README.md, the JIT block, verbatim. Its #include is a no-op here: jit.hpp is already included above,
  // and every Kiln header is #pragma once.
#include <kiln/jit.hpp>                      // link kiln::mlir
kiln::Model model{net, 42};
auto fast = kiln::jit::compile(model);      // ~115 ms cold for the MNIST MLP; one compile serves every batch size
kiln::Tensor y = fast(x);                   // reads the model's parameters as they are now; follows train()/eval()
  // ---- end of the block.

  const double train_difference = largest_difference(y, expected_train);
  model.eval();
  expression_templates.eval();
  const double eval_difference = largest_difference(fast(x), expression_templates(x));
  fmt::print("JIT against the expression-template kernel, largest relative difference: train mode {:.1e}, "
             "eval mode {:.1e}\n", train_difference, eval_difference);
  return train_difference <= 1e-5 && eval_difference <= 1e-5 ? 0 : 1;
}
