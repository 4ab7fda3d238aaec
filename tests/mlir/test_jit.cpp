// The JIT kernel against the expression-template kernel on random networks (eval and train, several steps),
// its caches (in process and on disk, a damaged cache file), and its errors.
#include "../random_networks.hpp"
#include "../support.hpp"

#include <kiln/jit.hpp>

#include <filesystem>
#include <fstream>
#include <vector>

#include <unistd.h>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

namespace {

kiln::jit::Options fresh_options(bool memory, const std::filesystem::path& dir) {
  kiln::jit::Options o;
  o.use_memory_cache = memory;
  o.cache_dir = dir;
  return o;
}

// A fresh cache directory for this process, removed when the tests end.
std::filesystem::path temp_cache(const std::string& name) {
  struct Cleanup {
    std::vector<std::filesystem::path> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  const auto dir = std::filesystem::temp_directory_path() / ("kiln-jit-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  cleanup.dirs.push_back(dir);
  return dir;
}

template <std::uint64_t Seed, bool Graph = false>
void check_jit_equals_expression_templates() {
  static constexpr auto net = kiln::testing::random_net<Seed, Graph>();
  INFO("network " << Seed << ":\n" << kiln::summary(net));
  kiln::testing::for_each_random_call<Seed>([&](const Tensor& x, bool training) {
    kiln::Model et_model{net, Seed};
    et_model.train(training);
    kiln::Model jit_model{et_model};
    auto jit = kiln::jit::compile(jit_model, fresh_options(true, temp_cache("random")));
    // Three calls: in train mode each draws the next step's dropout mask and updates the running stats.
    for (int call = 0; call < 3; ++call) {
      const std::string what = "batch " + std::to_string(x.size(0)) + (training ? ", train" : ", eval") + ", call " +
                               std::to_string(call);
      kiln::testing::check_close(jit(x), et_model(x), what, 2e-5, 4e-6);
      CHECK(jit_model.step() == et_model.step());
      const auto a = jit_model.state_dict(), b = et_model.state_dict();
      for (const auto& [k, t] : a) {
        // A graph's BatchNorm often normalises a sum of branches: its running mean is a mean of larger values
        // that cancel, where the two kernels' rounding shows as ~5e-6 absolute.
        if (t.dtype() == kiln::DType::float32) kiln::testing::check_close(t, b.at(k), what + ", " + k, 2e-5, Graph ? 1e-5 : 4e-6);
        else CHECK(t.data_i64()[0] == b.at(k).data_i64()[0]);
      }
    }
  });
}

constexpr nn::Sequential small_net{kiln::input<12>, nn::Linear<12, 8>{}, nn::ReLU{}, nn::Linear<8, 3>{}};

}  // namespace

TEST_CASE("jit: == the expression-template kernel on random networks", "[jit][laws]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_jit_equals_expression_templates<decltype(seed)::value>(); });
}

TEST_CASE("jit: == the expression-template kernel on random graphs (Residual, Sum, Concat, nested)", "[jit][laws][graph]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_jit_equals_expression_templates<decltype(seed)::value, true>(); });
}

// A Linear with K > 64 and 40 outputs (32 columns in tiles of 4, 8 one at a time) on more rows than the golden
// batches, with a last partial tile of rows.
TEST_CASE("jit: a long Linear on 1023 to 1031 rows == the expression-template kernel", "[jit]") {
  static constexpr nn::Sequential net{kiln::input<100>, nn::Linear<100, 40>{}, nn::ReLU{}, nn::Linear<40, 20>{}};
  kiln::Model model{net, 5};
  model.eval();
  auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("long")));
  for (const index_t batch : {1023, 1024, 1031}) {
    Tensor x({batch, 100});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
    kiln::testing::check_close(jit(x), model(x), "batch " + std::to_string(batch), 2e-5, 4e-6);
  }
}

// Packed weights (kiln_transpose: 16 x 16 blocks, then the last K % 16 rows one by one) for the broadcast tiles:
// K = 20 (16 + 4) into 112 outputs (a panel of 64 columns and one of 48), K = 112 into 17 (a vector of 16 and one
// of a single output, zero past it), K = 17 into 16 (an odd K for the one-row tiles' two accumulator sets). Batches: 1 (the one-row
// tile), 2 (the one-row tile on two rows, a set of accumulators each), 5 (one 6-row tile repeating the last row),
// 6, 7 (a 6-row tile, then a row), 8 (a 6-row tile, then two rows in one tile), 40 (a last tile that overlaps the
// one before).
TEST_CASE("jit: Linears on packed weights == the expression-template kernel", "[jit]") {
  static constexpr nn::Sequential net{kiln::input<20>, nn::Linear<20, 112>{}, nn::Tanh{}, nn::Linear<112, 17>{},
                                      nn::ReLU{},      nn::Linear<17, 16>{}};
  kiln::Model model{net, 6};
  model.eval();
  auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("short")));
  for (const index_t batch : {1, 2, 5, 6, 7, 8, 40}) {
    Tensor x({batch, 20});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
    kiln::testing::check_close(jit(x), model(x), "batch " + std::to_string(batch), 2e-5, 4e-6);
  }
}

// A K of 256 or more calls its tiles' shared k loop (BroadcastLoop), here into 21 outputs, whose last vector has 5
// (zero-padded in the packed weights) and whose Tanh runs on the tile's sums from a scratch tile; 3 outputs are
// dot products over W's rows. In eval and train mode (the other function), batches as above.
TEST_CASE("jit: Linears of a long K into outputs not a multiple of 16 == the expression-template kernel", "[jit]") {
  static constexpr nn::Sequential net{kiln::input<24>, nn::Linear<24, 300>{}, nn::ReLU{}, nn::Linear<300, 21>{},
                                      nn::Tanh{},      nn::Linear<21, 3>{}};
  for (const bool training : {false, true}) {
    kiln::Model model{net, 10};
    model.train(training);
    auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("padded")));
    for (const index_t batch : {1, 2, 5, 7, 8, 40}) {
      Tensor x({batch, 24});
      for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
      kiln::testing::check_close(jit(x), model(x), "batch " + std::to_string(batch) + (training ? ", train" : ""),
                                 2e-5, 4e-6);
    }
  }
}

namespace {

// Bilinear(20, J, 7) runs both stages in blocks of 12 rows (contraction_to_vector.cpp, BilinearToVector): batches
// of one block and a row or two (13, 14), a partial block (5, 29) and whole blocks (24), in eval and train mode
// (whose kernel is the other function), against the expression-template kernel. Within a block, rows past the
// 6-row tiles take a 3-row tile where 3 or 4 are left (3, 4, 9, 10, 15, 16), then one-row tiles. J = 32 is two
// vectors of 16; of J = 40 and J = 7 the last vector is read masked (in A's last row it would read past A's end).
template <int J>
void check_bilinear_blocks() {
  static constexpr nn::Sequential net{kiln::input<20>, kiln::input<J>, nn::Bilinear<20, J, 7>{}, nn::Tanh{}};
  for (const bool training : {false, true}) {
    kiln::Model model{net, 8};
    model.train(training);
    auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("bilinear")));
    for (const index_t batch : {1, 3, 4, 5, 9, 10, 13, 14, 15, 16, 24, 29}) {
      Tensor x1({batch, 20}), x2({batch, J});
      for (index_t i = 0; i < x1.numel(); ++i) x1[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
      for (index_t i = 0; i < x2.numel(); ++i) x2[i] = static_cast<float>((i * 11) % 19) / 9.0f - 1.0f;
      kiln::testing::check_close(jit(x1, x2), model(x1, x2),
                                 "J " + std::to_string(J) + ", batch " + std::to_string(batch) +
                                     (training ? ", train" : ", eval"),
                                 2e-5, 4e-6);
    }
  }
}

}  // namespace

TEST_CASE("jit: Bilinear in row blocks == the expression-template kernel", "[jit]") {
  check_bilinear_blocks<32>();
  check_bilinear_blocks<40>();
  check_bilinear_blocks<7>();
}

// The eval kernel runs on blocks of rows (entry_points.cpp: the widest layer's output a quarter of L2, in
// multiples of 48 rows; 48 rows for 3000 floats a row up to an L2 of 4.6 MB), the last block taking what is
// left once that is under one and a half blocks: batches of one block (47), of one and a half less a row (71),
// of two calls (72, 73) and of four (200), with one input and with two, against the expression-template kernel.
// Bilinear's outputs each sum 18000 products whose magnitudes add up to about 2400, to results near 0.6: the
// two kernels add them in different orders (their blocking depends on the CPU), and on Zen 5 one output
// differs by 1.7e-5 (each kernel within 1e-5 of the sum in double), hence an absolute 5e-5 there; a row taken
// from the wrong block would be off by tenths.
TEST_CASE("jit: eval on blocks of rows == the expression-template kernel", "[jit]") {
  static constexpr nn::Sequential wide{kiln::input<4>, nn::Linear<4, 3000>{}, nn::ReLU{}, nn::Linear<3000, 7>{}};
  static constexpr nn::Sequential two{kiln::input<6>, kiln::input<3000>, nn::Bilinear<6, 3000, 5>{}};
  kiln::Model one_input{wide, 9};
  kiln::Model two_inputs{two, 9};
  one_input.eval();
  two_inputs.eval();
  auto jit_one = kiln::jit::compile(one_input, fresh_options(true, temp_cache("blocks")));
  auto jit_two = kiln::jit::compile(two_inputs, fresh_options(true, temp_cache("blocks")));
  auto fill = [](Tensor& t, index_t mul) {
    for (index_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>((i * mul) % 23) / 7.0f - 1.5f;
  };
  for (const index_t batch : {47, 71, 72, 73, 200}) {
    Tensor x({batch, 4}), x1({batch, 6}), x2({batch, 3000});
    fill(x, 37);
    fill(x1, 11);
    fill(x2, 13);
    kiln::testing::check_close(jit_one(x), one_input(x), "one input, batch " + std::to_string(batch), 2e-5, 4e-6);
    kiln::testing::check_close(jit_two(x1, x2), two_inputs(x1, x2), "two inputs, batch " + std::to_string(batch),
                               2e-5, 5e-5);
  }
}

// A Linear of 128 KB of weights or more walks its column blocks backwards on every other call (a counter per
// Linear in the kernel): the same sums in another order of columns, so consecutive calls agree bit for bit.
TEST_CASE("jit: calls that walk the weights backwards give the same outputs", "[jit]") {
  static constexpr nn::Sequential net{kiln::input<256>, nn::Linear<256, 128>{}, nn::ReLU{}, nn::Linear<128, 10>{}};
  kiln::Model model{net, 8};
  model.eval();
  auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("alternate")));
  for (const index_t batch : {1, 7}) {
    Tensor x({batch, 256});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
    const Tensor first = jit(x), second = jit(x), third = jit(x);
    kiln::testing::check_close(first, model(x), "batch " + std::to_string(batch));
    for (index_t i = 0; i < first.numel(); ++i) {
      REQUIRE(second[i] == first[i]);
      REQUIRE(third[i] == first[i]);
    }
  }
}

TEST_CASE("jit: one compile serves every batch size, and reads the parameters as they are now", "[jit]") {
  kiln::Model model{small_net, 3};
  model.eval();
  auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("batches")));
  for (const index_t batch : {0, 1, 5, 64, 1000}) {
    Tensor x({batch, 12});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
    kiln::testing::check_close(jit(x), model(x), "batch " + std::to_string(batch));
  }
  // New weights, loaded after the compile: the kernel reads them.
  kiln::Model other{small_net, 99};
  model.load_state_dict(other.state_dict());
  Tensor x({4, 12});
  x.fill(0.5f);
  kiln::testing::check_close(jit(x), model(x), "after load_state_dict");
}

// Linears of 16 outputs or more read the kernel's packed copy of W^T: packed again on the first call after a
// load or parameters_changed() (as an optimizer step ends), by one thread of those that call.
TEST_CASE("jit: packed weights follow the model's parameters", "[jit]") {
  static constexpr nn::Sequential net{kiln::input<12>, nn::Linear<12, 32>{}, nn::ReLU{}, nn::Linear<32, 16>{}};
  kiln::Model model{net, 3};
  model.eval();
  const auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("repack")));
  Tensor x({7, 12});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 37) % 23) / 7.0f - 1.5f;
  const Tensor first = jit(x);
  kiln::testing::check_close(first, model(x), "as compiled");
  model.load_state_dict(kiln::Model{net, 99}.state_dict());
  const Tensor loaded = jit(x);
  kiln::testing::check_close(loaded, model(x), "after load_state_dict");
  for (kiln::Parameter& p : model.parameters())
    for (float& v : p.value.values()) v *= -0.5f;
  model.parameters_changed();
  const auto copy = jit;  // shares the packed weights
  const Tensor changed = copy(x);
  kiln::testing::check_close(changed, model(x), "after parameters_changed");
  CHECK(changed[0] != loaded[0]);
  CHECK(loaded[0] != first[0]);
}

TEST_CASE("jit: the in-process cache returns the kernel compiled before", "[jit][cache]") {
  const auto dir = temp_cache("memory");
  kiln::Model model{small_net, 1};
  auto first = kiln::jit::compile(model, fresh_options(true, dir));
  auto second = kiln::jit::compile(model, fresh_options(true, dir));
  CHECK(second.origin() == kiln::mlir::Origin::memory_cache);
  // Another network is another kernel.
  constexpr nn::Sequential wider{kiln::input<12>, nn::Linear<12, 9>{}, nn::ReLU{}, nn::Linear<9, 3>{}};
  kiln::Model model2{wider, 1};
  CHECK(kiln::jit::compile(model2, fresh_options(true, dir)).origin() != kiln::mlir::Origin::memory_cache);
  std::filesystem::remove_all(dir);
}

TEST_CASE("jit: the disk cache serves a new process, a damaged file is compiled again", "[jit][cache]") {
  const auto dir = temp_cache("disk");
  kiln::Model model{small_net, 1};
  model.eval();
  Tensor x({3, 12});
  x.fill(0.25f);
  const Tensor expected = model(x);
  // Without the in-process cache every compile looks like a new process's.
  auto first = kiln::jit::compile(model, fresh_options(false, dir));
  CHECK(first.origin() == kiln::mlir::Origin::compiled);
  auto second = kiln::jit::compile(model, fresh_options(false, dir));
  CHECK(second.origin() == kiln::mlir::Origin::disk_cache);
  kiln::testing::check_close(second(x), expected, "from the disk cache");
  // Damage every object in the cache: the next compile notices, compiles again, and the result is right.
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".o") std::ofstream(entry.path(), std::ios::trunc) << "not an object file";
  auto third = kiln::jit::compile(model, fresh_options(false, dir));
  CHECK(third.origin() == kiln::mlir::Origin::compiled);
  kiln::testing::check_close(third(x), expected, "after a damaged cache file");
  CHECK(kiln::jit::compile(model, fresh_options(false, dir)).origin() == kiln::mlir::Origin::disk_cache);
  std::filesystem::remove_all(dir);
}

TEST_CASE("jit: bad input is refused with the model's errors, before the kernel runs", "[jit][errors]") {
  kiln::Model model{small_net, 1};
  auto jit = kiln::jit::compile(model, fresh_options(true, temp_cache("errors")));
  CHECK_THROWS_WITH(jit(Tensor({2, 13})), Catch::Contains("layer 0 (Linear<12, 8>) expects F32 [N, 12] but got F32 [2, 13]"));
  Tensor y({2, 4});
  CHECK_THROWS_WITH(jit.forward(Tensor({2, 12}), y), Catch::Contains("output: expected F32 [2, 3] but got F32 [2, 4]"));

  constexpr nn::Sequential bn{kiln::input<4>, nn::BatchNorm1d<4>{}};
  kiln::Model bn_model{bn, 1};
  bn_model.train();
  auto bn_jit = kiln::jit::compile(bn_model, fresh_options(true, temp_cache("errors")));
  const auto before = bn_model.state_dict();
  CHECK_THROWS_WITH(bn_jit(Tensor({1, 4})), Catch::Contains("layer 0 (BatchNorm1d<4>): expected more than 1 value per channel"));
  CHECK(bn_model.state_dict().at("0.num_batches_tracked").data_i64()[0] == before.at("0.num_batches_tracked").data_i64()[0]);
  CHECK(bn_model.step() == 0);
}

TEST_CASE("kiln::mlir: stages by name, and a clear error for another", "[mlir][errors]") {
  CHECK(kiln::mlir::stage_from_name("llvm-dialect") == kiln::mlir::Stage::llvm_dialect);
  CHECK_THROWS_WITH(kiln::mlir::stage_from_name("asm"),
                    Catch::Contains("unknown stage \"asm\": expected mlir, linalg, llvm-dialect, llvm-ir or obj"));
}

TEST_CASE("kiln::mlir: a malformed network description is an error naming the layer or the stage", "[mlir][errors]") {
  constexpr nn::Sequential net{kiln::input<6>, nn::Linear<6, 4>{}, nn::ReLU{}, nn::Linear<4, 2>{}};
  const kiln::ir::Network good = kiln::ir::describe(net);
  CHECK_NOTHROW(kiln::mlir::lower(good, "k", kiln::mlir::Stage::mlir));

  kiln::ir::Network bad = good;
  bad.layers[2].params[static_cast<int>(kiln::Role::weight)] = 7;
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::obj),
                    Catch::Contains("layer 2 (Linear<4, 2>): its weight is buffer 7, but the network has 4 buffers"));
  bad = good;
  bad.layers[2].params[static_cast<int>(kiln::Role::weight)] = 3;
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::obj),
                    Catch::Contains("layer 2 (Linear<4, 2>): its weight is buffer 3 (2.bias), which is a bias"));
  bad = good;
  bad.layers[0].kind = "gelu";
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::obj),
                    Catch::Contains("layer 0 (Linear<6, 4>): has no attribute \"approximate\""));
  bad.layers[0].kind = "conv2d";
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::obj),
                    Catch::Contains("layer 0 (Linear<6, 4>): no MLIR lowering for a layer of kind \"conv2d\""));
  bad = good;
  bad.layers[1].in = kiln::Dims{5};
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::mlir),
                    Catch::Contains("layer 1 (ReLU): expects [5] but the layer before gives [4]"));
  // Consistent dims, but a weight of the wrong size: the IR does not verify, and the error says at which stage
  // and what MLIR said.
  bad = good;
  bad.buffers[0].spec.shape = kiln::Dims{6, 5};
  CHECK_THROWS_WITH(kiln::mlir::lower(bad, "k", kiln::mlir::Stage::obj),
                    Catch::Contains("kiln::mlir: the mlir stage failed: the network's functions do not verify: "));
}
