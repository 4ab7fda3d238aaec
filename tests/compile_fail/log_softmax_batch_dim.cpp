// expect: layer 1 \(LogSoftmax<0>\) would normalise over the batch dim of \[N, 10\]; in a network it works per sample
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<20>, nn::Linear<20, 10>{}, nn::LogSoftmax<0>{}};
#else
constexpr nn::Sequential net{kiln::input<20>, nn::Linear<20, 10>{}, nn::LogSoftmax<1>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
