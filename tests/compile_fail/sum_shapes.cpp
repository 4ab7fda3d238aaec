// expect: layer 0 \(Sum\), branch 1 gives \[N, 8\] but branch 0 gives \[N, 32\]; summed branches need the same shape
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<32>, nn::Sum{nn::Linear<32, 32>{}, nn::Sequential{nn::Linear<32, 8>{}, nn::Tanh{}}}};
#else
constexpr nn::Sequential net{kiln::input<32>, nn::Sum{nn::Linear<32, 32>{}, nn::Sequential{nn::Linear<32, 8>{}, nn::Tanh{}, nn::Linear<8, 32>{}}}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
