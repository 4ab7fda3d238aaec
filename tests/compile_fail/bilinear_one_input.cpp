// expect: layer 1 \(Bilinear<8, 8, 2>\) takes two inputs, so it must be the first layer of a Sequential declared with two inputs
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<8>, nn::ReLU{}, nn::Bilinear<8, 8, 2>{}};
#else
constexpr nn::Sequential net{kiln::input<8>, kiln::input<8>, nn::Bilinear<8, 8, 2>{}, nn::ReLU{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
