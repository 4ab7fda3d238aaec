// expect: layer 2 \(Linear<512, 10>\) expects 512 input features but receives 784
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::ReLU{}, nn::Linear<512, 10>{}};
#else
constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 512>{}, nn::Linear<512, 10>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
