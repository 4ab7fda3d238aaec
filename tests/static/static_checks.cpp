// Compile-only checks of the DSL: if this file compiles, every assertion in it holds.
// Shape rules are checked twice: networks that fit (their dims, schema, counts), and networks that do not
// (the exact sentence each rule produces, read from the analysis without instantiating the network).
#include <kiln/kiln.hpp>

namespace {

namespace nn = kiln::nn;
using kiln::Dims;
using kiln::Input;
using kiln::Text;

template <class... Items>
constexpr Text error_of() {
  return kiln::detail::analysis_v<nn::Sequential<Items...>>.error;
}

// --- networks that fit ---
constexpr nn::Sequential seed_net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                                  nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};
using SeedTraits = kiln::network_traits<std::remove_cvref_t<decltype(seed_net)>>;
static_assert(SeedTraits::leaf_count == 6);
static_assert(SeedTraits::analysis.out[0] == Dims{784});
static_assert(kiln::output_shape(seed_net) == Dims{10});
static_assert(kiln::parameter_count(seed_net) == 784 * 256 + 256 + 2 * 256 + 256 * 10 + 10);
static_assert(kiln::schema(seed_net).size() == 9);  // 2 Linear x 2, BatchNorm: 2 parameters + 3 buffers
static_assert(kiln::schema(seed_net).entries[2].name == Text{"2.weight"});
static_assert(kiln::schema(seed_net).entries[4].name == Text{"2.running_mean"});
static_assert(kiln::schema(seed_net).entries[6].name == Text{"2.num_batches_tracked"});
static_assert(kiln::schema(seed_net).entries[6].spec.dtype() == kiln::DType::int64);
static_assert(kiln::schema(seed_net).entries[6].spec.shape.rank == 0);
static_assert(kiln::flops_per_sample(seed_net) ==
              (2 * 784 + 1) * 256 + 2 * 256 + 256 + 256 + (2 * 256 + 1) * 10);
static_assert(kiln::activation_bytes_per_sample(seed_net) == 4 * (784 + 256 + 256 + 256 + 256 + 10));

// Nested Sequentials name their keys as PyTorch does.
constexpr nn::Sequential nested{kiln::input<20>, nn::Sequential{nn::Linear<20, 30>{}, nn::ReLU{}},
                                nn::Sequential{nn::Linear<30, 30>{}, nn::Dropout{0.5f}, nn::Tanh{}},
                                nn::Linear<30, 3>{}};
static_assert(kiln::schema(nested).entries[0].name == Text{"0.0.weight"});
static_assert(kiln::schema(nested).entries[2].name == Text{"1.0.weight"});
static_assert(kiln::schema(nested).entries[4].name == Text{"2.weight"});

// Values change the schema: no affine, no running stats, no bias.
constexpr nn::Sequential options{kiln::input<8, 5>, nn::BatchNorm1d<8>{.affine = false}, nn::Flatten{},
                                 nn::LayerNorm<40>{.bias = false}, nn::RMSNorm<40>{.elementwise_affine = false},
                                 nn::Linear<40, 2, false>{}};
static_assert(kiln::schema(options).size() == 3 + 1 + 1);
static_assert(kiln::parameter_count(options) == 40 + 80);

// Dims count the batch dim as PyTorch does.
static_assert(nn::Softmax<1>::axis(Dims{10}) == 0);
static_assert(nn::Softmax<-1>::axis(Dims{4, 6}) == 1);
static_assert(nn::Flatten<2, 3>::infer(Dims{2, 3, 4}).out == Dims{2, 12});
static_assert(nn::Unflatten<-1, 3, 4>::infer(Dims{2, 12}).out == Dims{2, 3, 4});
static_assert(nn::Linear<20, 7>::infer(Dims{5, 20}).out == Dims{5, 7});

// Two inputs feed Bilinear.
constexpr nn::Sequential bilinear{kiln::input<64>, kiln::input<48>, nn::Bilinear<64, 48, 32>{}, nn::ReLU{}};
static_assert(kiln::output_shape(bilinear) == Dims{32});

// Hyperparameters keep PyTorch's defaults.
static_assert(nn::Dropout{}.p == 0.5f);
static_assert(nn::BatchNorm1d<4>{}.eps == 1e-5f && *nn::BatchNorm1d<4>{}.momentum == 0.1f);
static_assert(nn::RMSNorm<4>{}.eps_value() == 1.1920928955078125e-07f);

static_assert(nn::LeakyReLU{}.negative_slope == 0.01f && nn::ELU{}.alpha == 1.0f);
static_assert(nn::Softplus{}.beta == 1.0f && nn::Softplus{}.threshold == 20.0f);
static_assert(nn::GELU{}.approximate == nn::GELUApproximate::none);

// Layers satisfy the layer concept; every activation too.
static_assert(nn::Layer<nn::Linear<2, 3>> && nn::Layer<nn::BatchNorm1d<3>> && nn::Layer<nn::Unflatten<1, 2, 2>>);
static_assert(nn::Layer<nn::Identity> && nn::Layer<nn::LogSoftmax<-1>>);
static_assert([]<class... A>(std::tuple<A...>*) { return ((nn::Layer<A> && nn::ActivationLayer<A>) && ...); }(
    static_cast<nn::activations*>(nullptr)));
static_assert(!nn::ActivationLayer<nn::Linear<2, 3>> && !nn::ActivationLayer<nn::Identity>);

// The new layers in a network: shapes, no parameters, their FLOPs.
constexpr nn::Sequential activations{kiln::input<3, 10>, nn::GELU{}, nn::SiLU{}, nn::LeakyReLU{.negative_slope = 0.2f},
                                     nn::ELU{}, nn::Softplus{}, nn::Hardswish{}, nn::Identity{}, nn::LogSoftmax<-1>{}};
static_assert(kiln::output_shape(activations) == Dims{3, 10} && kiln::parameter_count(activations) == 0);
static_assert(kiln::flops_per_sample(activations) == 30 * (8 + 5 + 2 + 4 + 5 + 4 + 0 + 5));

// --- networks that do not fit: the sentence of each rule ---
static_assert(error_of<Input<784>, nn::Linear<784, 512>, nn::ReLU, nn::Linear<784, 10>>() ==
              Text{"layer 2 (Linear<784, 10>) expects 784 input features but receives 512"});
static_assert(error_of<Input<24>, nn::Unflatten<1, 5, 5>>() ==
              Text{"layer 0 (Unflatten<1, 5, 5>) splits a dim of size 24 into sizes whose product is 25"});
static_assert(error_of<Input<4, 6>, nn::Softmax<3>>() ==
              Text{"layer 0 (Softmax<3>) has dim 3, out of range for an input of rank 3 [N, 4, 6]"});
static_assert(error_of<Input<10>, nn::LogSoftmax<0>>() ==
              Text{"layer 0 (LogSoftmax<0>) would normalise over the batch dim of [N, 10]; in a network it works per "
                   "sample (use kiln::F for dim 0)"});
static_assert(error_of<Input<3, 8>, nn::LayerNorm<3, 4>>() ==
              Text{"layer 0 (LayerNorm<3, 4>) normalises over the last dims [3, 4] but receives [N, 3, 8]"});
static_assert(error_of<Input<8>, nn::RMSNorm<16>>() ==
              Text{"layer 0 (RMSNorm<16>) normalises over the last dims [16] but receives [N, 8]"});
static_assert(error_of<Input<10>, nn::BatchNorm1d<8>>() ==
              Text{"layer 0 (BatchNorm1d<8>) expects 8 channels but receives 10 (input [N, 10])"});
static_assert(error_of<Input<2, 3, 4>, nn::BatchNorm1d<2>>() ==
              Text{"layer 0 (BatchNorm1d<2>) expects an input [N, C] or [N, C, L] but receives [N, 2, 3, 4]"});
static_assert(error_of<Input<64>, Input<40>, nn::Bilinear<64, 48, 32>>() ==
              Text{"layer 0 (Bilinear<64, 48, 32>) expects 48 features in its second input but receives 40"});
static_assert(error_of<Input<64>, nn::Bilinear<64, 48, 32>>().view().starts_with(
    "layer 0 (Bilinear<64, 48, 32>) takes two inputs"));
static_assert(error_of<Input<8>, nn::Flatten<0, -1>>().view().starts_with("layer 0 (Flatten<0, -1>) would merge the batch dim"));
static_assert(error_of<Input<8>, nn::Sequential<nn::ReLU, nn::Linear<4, 2>>>() ==
              Text{"layer 0.1 (Linear<4, 2>) expects 4 input features but receives 8"});

// Dropout's p is checked in constant expressions: a p outside [0, 1] is not a constant expression.
template <float P>
constexpr bool dropout_constant = requires { typename std::integral_constant<float, nn::Dropout{P}.p>; };
static_assert(dropout_constant<0.5f>);
static_assert(!dropout_constant<1.5f>);
static_assert(!dropout_constant<-0.1f>);

}  // namespace
