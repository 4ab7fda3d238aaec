// expect: layer 0 \(Bilinear<64, 48, 32>\) expects 48 features in its second input but receives 40
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<64>, kiln::input<40>, nn::Bilinear<64, 48, 32>{}};
#else
constexpr nn::Sequential net{kiln::input<64>, kiln::input<48>, nn::Bilinear<64, 48, 32>{}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
