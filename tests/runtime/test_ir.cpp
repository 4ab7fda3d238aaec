// kiln::ir: the network as plain data. Its text is the JIT's cache key, so two layers that differ must never
// share it: checked over every layer of the test suite (every golden case and every random network).
#include "../random_networks.hpp"
#include "../support.hpp"

#include <kiln/ir/describe.hpp>

#include <map>
#include <set>
#include <string>

namespace nn = kiln::nn;

namespace {

// A layer, described twice: by what PyTorch and Kiln show of it (repr, type name, input dims, its parameters'
// roles and shapes), and by its cache key (kiln::ir's text of the layer, placed at the same spot of a network,
// so that only the layer itself can make two keys differ).
struct Described {
  std::string identity, key;
};

// A network's layers and schema, computed by the compiler: computed at run time they were generated code for every
// one of the ~100 networks.
template <const auto& net>
constexpr auto layers_of_net = kiln::ir::layers_of(net);
template <const auto& net>
constexpr auto schema_of_net = kiln::schema(net);

template <const auto& net>
void describe_layers(std::vector<Described>& out) {
  using T = kiln::network_traits<std::remove_cvref_t<decltype(net)>>;
  kiln::for_each_leaf(net, [&](auto i, const auto& leaf) {
    std::string params;
    for (const kiln::SchemaEntry& e : schema_of_net<net>)
      if (e.leaf == i) params += std::string(e.spec.name()) + kiln::ir::to_string(e.spec.shape) + " ";
    kiln::ir::Layer l = layers_of_net<net>[i];
    l.path = "";
    for (int& p : l.params) p = p < 0 ? -1 : 0;  // where in the buffer array: a fact of the network, not the layer
    if (const kiln::Attribute* stream = l.attributes.find("stream")) params += "stream " + std::to_string(stream->value);
    out.push_back({leaf.repr() + " | " +
                       std::string(leaf.name().view()) + " " + kiln::ir::to_string(T::analysis.in[i]) + " " + params,
                   kiln::ir::to_string(l)});
  });
}

}  // namespace

TEST_CASE("ir: different layers never share a cache key (every layer of the test suite)", "[ir]") {
  std::vector<Described> all;
#define KILN_CASE(name, ...)                 \
  {                                          \
    static constexpr auto net = __VA_ARGS__; \
    describe_layers<net>(all);               \
  }
#include "golden_layer_cases.inc"
#include "golden_network_cases.inc"
#include "golden_graph_cases.inc"
#undef KILN_CASE
  kiln::testing::for_each_random_seed<12>(
      [&](auto seed) { describe_layers<kiln::testing::random_network<decltype(seed)::value>>(all); });

  std::map<std::string, std::string> identity_of_key;
  std::set<std::string> identities;
  for (const Described& d : all) {
    identities.insert(d.identity);
    const auto [it, inserted] = identity_of_key.emplace(d.key, d.identity);
    INFO("key: " << d.key);
    CHECK(it->second == d.identity);  // one key, one layer
  }
  CHECK(identity_of_key.size() == identities.size());
  CHECK(identities.size() > 60);  // the suite's layers: every kind, with its variants
}

TEST_CASE("ir: a layer describes itself: kind, every hyperparameter, parameters by role", "[ir]") {
  static constexpr nn::Sequential net{kiln::input<8>, nn::Linear<8, 8, false>{}, nn::Softplus{.beta = 2.0f},
                                      nn::Dropout{0.25f}, nn::BatchNorm1d<8>{.momentum = std::nullopt}, nn::Dropout{0.5f}};
  constexpr auto layers = kiln::ir::layers_of(net);
  static_assert(layers[0].kind == "linear" && layers[0].param(kiln::Role::weight) == 0 && !layers[0].has(kiln::Role::bias));
  static_assert(layers[1].kind == "softplus" && layers[1].attributes.find("beta")->value == 2.0 &&
                layers[1].attributes.find("threshold")->value == 20.0);
  static_assert(layers[2].attributes.find("p")->value == 0.25 && layers[2].attributes.find("stream")->value == 0);
  static_assert(layers[4].attributes.find("stream")->value == 1);
  static_assert(layers[3].param(kiln::Role::weight) == 1 && layers[3].param(kiln::Role::running_var) == 4 &&
                layers[3].param(kiln::Role::num_batches_tracked) == 5);
  CHECK(std::isnan(layers[3].attributes.find("momentum")->value));  // None: a cumulative average
  const kiln::ir::Network described = kiln::ir::describe(net);
  CHECK(described.buffers.size() == 6);
  CHECK(described.buffers[5].name == kiln::Text{"3.num_batches_tracked"});
  CHECK_THAT(kiln::ir::to_string(described), Catch::Contains("softplus 1 Softplus [8] [] [8] beta=0x1p+1 threshold=0x1.4p+4"));
}
