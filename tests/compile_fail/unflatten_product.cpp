// expect: layer 1 \(Unflatten<1, 5, 5>\) splits a dim of size 24 into sizes whose product is 25
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<24>, nn::ReLU{}, nn::Unflatten<1, 5, 5>{}};
#else
constexpr nn::Sequential net{kiln::input<25>, nn::ReLU{}, nn::Unflatten<1, 5, 5>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
