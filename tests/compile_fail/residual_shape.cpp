// expect: layer 1 \(Residual\), body maps \[N, 256\] to \[N, 128\]; a residual needs the same shape
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<64>, nn::Linear<64, 256>{},
                             nn::Residual{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 128>{}}};
#else
constexpr nn::Sequential net{kiln::input<64>, nn::Linear<64, 256>{},
                             nn::Residual{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 256>{}}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
