// expect: layer 1 \(Concat\) joins along dim 0 \(the batch dim\), but its branches give \[N, 16\]
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<16>, nn::ReLU{}, nn::Concat{nn::dim<0>, nn::Identity{}, nn::Tanh{}}};
#else
constexpr nn::Sequential net{kiln::input<16>, nn::ReLU{}, nn::Concat{nn::dim<1>, nn::Identity{}, nn::Tanh{}}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
