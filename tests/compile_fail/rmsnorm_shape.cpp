// expect: layer 1 \(RMSNorm<16>\) normalises over the last dims \[16\] but receives \[N, 8\]
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<4>, nn::Linear<4, 8>{}, nn::RMSNorm<16>{}};
#else
constexpr nn::Sequential net{kiln::input<4>, nn::Linear<4, 16>{}, nn::RMSNorm<16>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
