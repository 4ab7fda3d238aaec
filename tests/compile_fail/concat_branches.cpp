// expect: layer 0.branches.1 \(Concat\), branch 1 gives \[N, 4, 6\] but branch 0 gives \[N, 3, 6\]; concatenated branches must agree on every dim but dim -1
#include <kiln/kiln.hpp>
namespace nn = kiln::nn;
#ifdef KILN_KO
constexpr nn::Sequential net{kiln::input<3, 4>,
                             nn::Sum{nn::Linear<4, 12>{},
                                     nn::Concat{nn::Linear<4, 6>{}, nn::Sequential{nn::Flatten{}, nn::Unflatten<1, 4, 3>{}, nn::Linear<3, 6>{}}}}};
#else
constexpr nn::Sequential net{kiln::input<3, 4>,
                             nn::Sum{nn::Linear<4, 12>{},
                                     nn::Concat{nn::Linear<4, 6>{}, nn::Sequential{nn::Linear<4, 6>{}}}}};
#endif
int main() { return static_cast<int>(kiln::parameter_count(net) == 0); }
