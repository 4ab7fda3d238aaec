// expect: layer 0 \(Softmax<3>\) has dim 3, out of range for an input of rank 3 \[N, 4, 6\]
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<4, 6>, nn::Softmax<3>{}};
#else
constexpr nn::Sequential net{kiln::input<4, 6>, nn::Softmax<2>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
