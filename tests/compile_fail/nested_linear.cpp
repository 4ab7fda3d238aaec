// expect: layer 1.0 \(Linear<30, 30>\) expects 30 input features but receives 20
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<20>, nn::Sequential{nn::Linear<20, 20>{}, nn::ReLU{}}, nn::Sequential{nn::Linear<30, 30>{}, nn::Tanh{}}};
#else
constexpr nn::Sequential net{kiln::input<20>, nn::Sequential{nn::Linear<20, 30>{}, nn::ReLU{}}, nn::Sequential{nn::Linear<30, 30>{}, nn::Tanh{}}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
