// expect: layer 1 \(LayerNorm<3, 4>\) normalises over the last dims \[3, 4\] but receives \[N, 3, 8\]
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<3, 8>, nn::Tanh{}, nn::LayerNorm<3, 4>{}};
#else
constexpr nn::Sequential net{kiln::input<3, 8>, nn::Tanh{}, nn::LayerNorm<3, 8>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
