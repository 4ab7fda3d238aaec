// expect: layer 1 \(BatchNorm1d<8>\) expects 8 channels but receives 10 \(input \[N, 10\]\)
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<4>, nn::Linear<4, 10>{}, nn::BatchNorm1d<8>{}};
#else
constexpr nn::Sequential net{kiln::input<4>, nn::Linear<4, 8>{}, nn::BatchNorm1d<8>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
