// expect: dropout_probability_must_be_between_0_and_1
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<8>, nn::Dropout{1.5f}};
#else
constexpr nn::Sequential net{kiln::input<8>, nn::Dropout{1.0f}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
