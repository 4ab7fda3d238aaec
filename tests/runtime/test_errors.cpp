// Every runtime error says what was wrong and where, and leaves nothing half done.
#include "../support.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace nn = kiln::nn;
using Catch::Contains;
using kiln::Tensor;

namespace {

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 32>{}, nn::BatchNorm1d<32>{},
                             nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<32, 10>{}};

std::filesystem::path temp(const std::string& name) { return std::filesystem::temp_directory_path() / name; }

std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}
// A safetensors file with the given JSON header and data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

}  // namespace

TEST_CASE("errors: loading names the missing, unexpected, misshapen and mistyped keys", "[errors]") {
  kiln::Model model{net, 1};
  const kiln::TensorMap good = model.state_dict();

  auto missing = good;
  missing.erase("1.weight");
  CHECK_THROWS_WITH(model.load_state_dict(missing), Contains("missing key \"1.weight\" (expected F32 [32, 784])"));

  auto unexpected = good;
  unexpected.emplace("7.weight", Tensor({2}));
  CHECK_THROWS_WITH(model.load_state_dict(unexpected), Contains("unexpected key \"7.weight\""));
  CHECK_NOTHROW(kiln::Model{net, 1}.load_state_dict(unexpected, /*strict=*/false));

  auto misshapen = good;
  misshapen.at("1.weight") = Tensor({32, 783});
  CHECK_THROWS_WITH(model.load_state_dict(misshapen), Contains("key \"1.weight\": expected F32 [32, 784], got F32 [32, 783]"));

  auto mistyped = good;
  mistyped.at("2.num_batches_tracked") = Tensor(kiln::Shape{});
  CHECK_THROWS_WITH(model.load_state_dict(mistyped), Contains("key \"2.num_batches_tracked\": expected I64 [], got F32 []"));

  // Nothing was copied by the failed loads.
  auto changed = good;
  changed.at("5.bias") = Tensor({10});
  changed.at("5.bias").fill(5.0f);
  changed.erase("1.bias");
  CHECK_THROWS(model.load_state_dict(changed));
  CHECK(model.state_dict().at("5.bias")[0] == good.at("5.bias")[0]);
  CHECK(good.at("5.bias")[0] != 5.0f);

  // The file's path is named when loading a file.
  const auto path = temp("kiln_errors_keys.safetensors");
  kiln::save_tensors(path, missing);
  CHECK_THROWS_WITH(model.load_safetensors(path), Contains(path.string()) && Contains("missing key \"1.weight\""));
  std::filesystem::remove(path);
}

TEST_CASE("errors: truncated and corrupt files are refused with the reason", "[errors][files]") {
  kiln::Model model{net, 1};
  const auto good_path = temp("kiln_errors_good.safetensors");
  model.save_safetensors(good_path);
  const std::string good = read_bytes(good_path);
  const auto bad = temp("kiln_errors_bad.safetensors");

  CHECK_THROWS_WITH(kiln::load_tensors(temp("kiln_no_such_file.safetensors")), Contains("cannot open the file"));

  write_bytes(bad, good.substr(0, 5));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("truncated: 5 bytes"));

  write_bytes(bad, good.substr(0, good.size() - 100));
  CHECK_THROWS_WITH(model.load_safetensors(bad), Contains(bad.string()) && Contains("truncated or corrupt"));

  write_bytes(bad, good.substr(0, 40));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("the header claims"));

  write_bytes(bad, safetensors_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", std::string(8, '\0')));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("corrupt header: not valid JSON"));

  write_bytes(bad, safetensors_bytes("{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", std::string(4, '\0')));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("key \"a\": dtype BF16 is not supported"));

  write_bytes(bad, safetensors_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", std::string(8, '\0')));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("key \"a\" is F32 [3] (12 bytes) but data_offsets span 8 bytes"));

  write_bytes(bad, safetensors_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                                     "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                                     std::string(12, '\0')));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("overlap"));

  write_bytes(bad, safetensors_bytes("[1, 2]", ""));
  CHECK_THROWS_WITH(kiln::load_tensors(bad), Contains("not an object"));

  std::filesystem::remove(bad);
  std::filesystem::remove(good_path);
}

TEST_CASE("errors: a failed save leaves no file and no half-written file", "[errors][files]") {
  kiln::Model model{net, 1};
  CHECK_THROWS_WITH(model.save_safetensors("/nonexistent-dir/kiln.safetensors"), Contains("cannot create the temporary file"));
  CHECK_FALSE(std::filesystem::exists("/nonexistent-dir/kiln.safetensors"));

  // Overwriting an existing file replaces it whole; no temporary is left beside it.
  const auto dir = temp("kiln_errors_save");
  std::filesystem::create_directories(dir);
  model.save_safetensors(dir / "m.safetensors");
  kiln::Model other{net, 2};
  other.save_safetensors(dir / "m.safetensors");
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 1);
  CHECK(kiln::load_tensors(dir / "m.safetensors").at("1.weight")[0] == other.state_dict().at("1.weight")[0]);
  std::filesystem::remove_all(dir);
}

TEST_CASE("errors: an input of the wrong per-sample shape names the layer, expected and got", "[errors]") {
  kiln::Model model{net, 1};
  CHECK_THROWS_WITH(model(Tensor({5, 784})),
                    Contains("layer 0 (Flatten<1, -1>) expects F32 [N, 1, 28, 28] but got F32 [5, 784]"));
  CHECK_THROWS_WITH(model(Tensor({5, 1, 28, 27})), Contains("expects F32 [N, 1, 28, 28] but got F32 [5, 1, 28, 27]"));
  Tensor wrong_out({5, 11});
  CHECK_THROWS_WITH(model.forward(Tensor({5, 1, 28, 28}), wrong_out), Contains("output: expected F32 [5, 10] but got F32 [5, 11]"));

  static constexpr nn::Sequential bil{kiln::input<6>, kiln::input<5>, nn::Bilinear<6, 5, 4>{}};
  kiln::Model b{bil, 1};
  CHECK_THROWS_WITH(b(Tensor({3, 6}), Tensor({3, 4})), Contains("second input: layer 0 (Bilinear<6, 5, 4>) expects F32 [N, 5] but got F32 [3, 4]"));
  CHECK_THROWS_WITH(b(Tensor({3, 6}), Tensor({2, 5})), Contains("second input: batch of 2 but the first input has a batch of 3"));
}

TEST_CASE("errors: BatchNorm1d refuses one value per channel in train mode, and changes nothing", "[errors]") {
  kiln::Model model{net, 1};
  const auto before = model.state_dict();
  CHECK_THROWS_WITH(model(Tensor({1, 1, 28, 28})),
                    Contains("layer 2 (BatchNorm1d<32>): expected more than 1 value per channel when training, got input of size [1, 32]"));
  CHECK(model.state_dict().at("2.num_batches_tracked").data_i64()[0] == 0);
  CHECK(model.step() == 0);
  model.eval();
  CHECK_NOTHROW(model(Tensor({1, 1, 28, 28})));
}

TEST_CASE("errors: Dropout with p outside [0, 1] is refused at run time too", "[errors]") {
  volatile float p = 1.5f;
  CHECK_THROWS_WITH(nn::Dropout{p}, Contains("Dropout: p must be between 0 and 1, but got 1.5"));
  CHECK_THROWS_AS(nn::Dropout{-0.1f}, std::invalid_argument);
}

TEST_CASE("errors: IDX files that are missing, truncated or not IDX", "[errors][files]") {
  CHECK_THROWS_WITH(kiln::load_fashion_mnist(false, "/nonexistent"),
                    Contains("t10k-images-idx3-ubyte.gz not found in /nonexistent") && Contains("dataset-fashion-mnist"));
  const auto bad = temp("kiln_bad.idx");
  write_bytes(bad, "PK\x03\x04 not idx");
  CHECK_THROWS_WITH(kiln::read_idx(bad), Contains("not an IDX file"));
  write_bytes(bad, std::string("\0\0\x08\x01\0\0\0\x0a", 8) + "abc");
  CHECK_THROWS_WITH(kiln::read_idx(bad), Contains("truncated or corrupt while reading the data (3 of 10 bytes"));
  std::filesystem::remove(bad);
}
