// The JIT kernel of graph networks (nn::Residual, nn::Sum, nn::Concat) against the expression-template kernel,
// their cache keys, and the errors for malformed steps.
#include "graph_check.hpp"
#include "graph_networks.hpp"

#include <kiln/jit.hpp>

namespace nn = kiln::nn;
using kiln::Tensor;

namespace {

kiln::jit::Options no_disk_cache() {
  kiln::jit::Options o;
  o.use_disk_cache = false;
  return o;
}

template <kiln::Network Net>
void check_jit(const Net& net, const std::string& name) {
  kiln::testing::check_kernel_equals_expression_templates(
      net, name, [](kiln::Model<Net>& m) { return kiln::jit::compile(m, no_disk_cache()); });
}

}  // namespace

TEST_CASE("jit graphs: resmlp (two Residual blocks) == the expression-template kernel", "[jit][graph]") {
  check_jit(graph_nets::resmlp, "resmlp");
}

TEST_CASE("jit graphs: nerf (Concat of the input and a branch) == the expression-template kernel", "[jit][graph]") {
  check_jit(graph_nets::nerf, "nerf");
}

TEST_CASE("jit graphs: two_path (Sum of two branches) == the expression-template kernel", "[jit][graph]") {
  check_jit(graph_nets::two_path, "two_path");
}

TEST_CASE("jit graphs: nested composites with BatchNorm1d and Dropout == the expression-template kernel", "[jit][graph]") {
  check_jit(graph_nets::nested, "nested");
}

TEST_CASE("jit graphs: a Bilinear before a Residual == the expression-template kernel", "[jit][graph]") {
  check_jit(graph_nets::bilinear_skip, "bilinear_skip");
}

TEST_CASE("jit graphs: the same layers in a line are another kernel", "[jit][graph][cache]") {
  static constexpr nn::Sequential residual{kiln::input<8>, nn::Residual{nn::Linear<8, 8>{}, nn::ReLU{}}};
  using Net = std::remove_const_t<decltype(residual)>;
  const kiln::ir::Network graph = kiln::ir::describe(residual);
  kiln::ir::Network line = graph;
  line.steps.clear();  // relu(linear(x)), without the skip path
  REQUIRE(kiln::ir::to_string(graph) != kiln::ir::to_string(line));
  // Another nesting of the same layers is another network too.
  constexpr nn::Sequential nested_line{kiln::input<8>, nn::Sequential{nn::Linear<8, 8>{}, nn::ReLU{}}};
  CHECK(kiln::ir::to_string(graph) != kiln::ir::to_string(kiln::ir::describe(nested_line)));

  kiln::Model model{residual, 3};
  model.eval();
  kiln::jit::Kernel<Net> with_skip(model, kiln::mlir::jit_compile(graph, no_disk_cache()));
  kiln::jit::Kernel<Net> without(model, kiln::mlir::jit_compile(line, no_disk_cache()));
  CHECK(without.origin() != kiln::mlir::Origin::memory_cache);
  Tensor x({5, 8});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 29) % 17) / 5.0f - 1.6f;
  const Tensor y = with_skip(x), body = without(x);
  kiln::testing::check_close(y, model(x), "with the skip path");
  Tensor sum({5, 8});
  for (kiln::index_t i = 0; i < x.numel(); ++i) sum[i] = x[i] + body[i];
  kiln::testing::check_close(y, sum, "x + the line's output");
}

TEST_CASE("kiln::mlir: malformed steps are errors naming the step", "[mlir][graph][errors]") {
  constexpr nn::Sequential net{kiln::input<6>, nn::Linear<6, 6>{},
                               nn::Residual{nn::ReLU{}, nn::Linear<6, 6>{}},
                               nn::Concat{nn::Identity{}, nn::Linear<6, 2>{}}};
  // Steps: 0 layer 0, 1 layer 1 (1.body.0), 2 layer 2 (1.body.1), 3 add (1), 4 layer 3 (2.branches.0),
  // 5 layer 4 (2.branches.1), 6 concat (2).
  const kiln::ir::Network good = kiln::ir::describe(net);
  REQUIRE(good.steps.size() == 7);
  CHECK_NOTHROW(kiln::mlir::lower(good, "k", kiln::mlir::Stage::mlir));
  auto fails = [&](const kiln::ir::Network& bad, const std::string& message) {
    CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::mlir), Catch::Contains(message));
  };

  kiln::ir::Network bad = good;
  bad.steps[1].inputs[0] = 5;
  fails(bad, "step 1, layer 1.body.0 (ReLU): reads value 5, which is not defined before it");
  bad = good;
  bad.steps[1].inputs[0] = 1;
  fails(bad, "step 1, layer 1.body.0 (ReLU): reads value 1, which is not defined before it");
  bad = good;
  bad.steps[4].leaf = 9;
  fails(bad, "step 4: runs layer 9, but the network has 5 layers");
  bad = good;
  bad.steps[4].leaf = 2;  // Linear<6, 6> where the Identity was: the same dims
  fails(bad, "kiln::mlir: layer 1.body.1 (Linear<6, 6>): is run by 2 steps; each layer runs in exactly one");
  bad = good;
  bad.steps[3].inputs[0] = 2;  // the add of Linear 0's output and the network's input: fine, the same dims
  bad.steps[3].inputs[1] = 0;
  CHECK_NOTHROW(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::mlir));
  bad.steps[6].inputs[1] = 0;  // the network's input [6] where Linear<6, 2>'s [2] was
  fails(bad, "step 6, layer 2 (Concat): gives [8] but its inputs add up to 12 along dim 0");
  bad = good;
  bad.steps[6].op = kiln::Step::Op::add;
  fails(bad, "step 6, layer 2 (Concat): adds [2] to [6]; added values need the same dims");
  bad = good;
  bad.steps[2].inputs[0] = 0;
  bad.layers[2].in = kiln::Dims{3, 2};
  fails(bad, "step 2, layer 1.body.1 (Linear<6, 6>): expects [3,2] but the network's input gives [6]");
  bad = good;
  bad.steps[4].inputs[0] = 2;  // Identity [6] reading Linear 0's output: fine
  CHECK_NOTHROW(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::mlir));
  bad.layers[3].in = kiln::Dims{2, 3};
  fails(bad, "step 4, layer 2.branches.0 (Identity): expects [2,3] but layer 0 (Linear<6, 6>) gives [6]");
  bad.steps[4].inputs[0] = kiln::value_of_step(3);
  fails(bad, "step 4, layer 2.branches.0 (Identity): expects [2,3] but layer 1 (Residual) gives [6]");
  bad = good;
  bad.output = kiln::Dims{9};
  fails(bad, "kiln::mlir: the network's output is [9] but its last step gives [8]");

  // Without steps, the layers run one after the other, and are checked as such.
  constexpr nn::Sequential line{kiln::input<6>, nn::Linear<6, 6>{}, nn::ReLU{}, nn::Linear<6, 2>{}};
  kiln::ir::Network chain = kiln::ir::describe(line);
  chain.steps.clear();
  CHECK_NOTHROW(kiln::mlir::lower(chain, "k", kiln::mlir::Stage::mlir));
  chain.layers[2].in = kiln::Dims{5};
  fails(chain, "kiln::mlir: layer 2 (Linear<6, 2>): expects [5] but the layer before gives [6]");
}
