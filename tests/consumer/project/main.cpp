// A user's program, built against the installed Kiln package.
#include <kiln/kiln.hpp>

#include <cstdio>
#include <filesystem>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<4>, nn::Linear<4, 8>{}, nn::ReLU{}, nn::Linear<8, 2>{}, nn::Softmax<1>{}};

int main() {
  kiln::Model model{net, 7};
  model.eval();
  const kiln::Tensor x({2, 4}, {1, 2, 3, 4, -1, -2, -3, -4});
  const kiln::Tensor y = model(x);
  const auto path = std::filesystem::temp_directory_path() / "kiln_consumer.safetensors";
  model.save_safetensors(path);
  kiln::Model loaded{net, 8};
  loaded.load_safetensors(path);
  loaded.eval();
  const kiln::Tensor z = loaded(x);
  std::filesystem::remove(path);
  for (int i = 0; i < 4; ++i)
    if (y[i] != z[i]) return 1;
  if (std::abs(y[0] + y[1] - 1.0f) > 1e-6f) return 1;
  fmt::print("{}consumer ok\n", net);
}
