// expect: layer 0 \(Flatten<0, -1>\) would merge the batch dim of \[N, 2, 3\]; in a network Flatten works per sample
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<2, 3>, nn::Flatten<0, -1>{}};
#else
constexpr nn::Sequential net{kiln::input<2, 3>, nn::Flatten<1, -1>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
