// expect: this network takes two inputs: call forward\(x1, x2, y\)
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
constexpr nn::Sequential net{kiln::input<4>, kiln::input<3>, nn::Bilinear<4, 3, 2>{}};
int main() {
  const kiln::Model model{net};
  const kiln::Tensor x1({1, 4}), x2({1, 3});
  kiln::Tensor y({1, 2});
#ifdef KILN_KO
  model.forward(x1, y);
#else
  model.forward(x1, x2, y);
#endif
}
