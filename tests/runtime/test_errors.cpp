// Every runtime error says what was wrong and where, and leaves nothing half done; hostile files included, and
// two threads saving to one path.
#include "../support.hpp"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <latch>
#include <thread>

namespace nn = kiln::nn;
using Catch::Contains;
using Catch::StartsWith;
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
std::string le64(std::uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}
// A safetensors file with the given JSON header and data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// Hostile files (sizes that overflow, memory claimed but not present, deep nesting, duplicate keys, gaps and
// trailing bytes, names that are not UTF-8) are a few hand-made bytes each, in a folder of this process's own
// (test runs in parallel must not share files), removed at the end.
struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / fmt::format("kiln_hostile_{}", ::getpid());
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

// One header entry: "name": {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}.
std::string entry(const std::string& name, const std::string& shape, std::uint64_t begin, std::uint64_t end) {
  return fmt::format(R"("{}": {{"dtype": "F32", "shape": {}, "data_offsets": [{}, {}]}})", name, shape, begin, end);
}

// Writes the bytes to a file and loads it; returns the kiln::Error's message ("" when the file loads), after
// checking that the message names the file. Any other exception escapes and fails the test.
std::string refusal(const TempDir& dir, const std::string& bytes) {
  static int count = 0;
  const auto path = dir / fmt::format("hostile{}.safetensors", count++);
  write_bytes(path, bytes);
  try {
    kiln::load_tensors(path);
  } catch (const kiln::Error& e) {
    CHECK_THAT(e.what(), StartsWith("kiln: " + path.string() + ": "));
    return e.what();
  }
  return "";
}

std::string idx_refusal(const std::filesystem::path& path) {
  try {
    kiln::read_idx(path);
  } catch (const kiln::Error& e) {
    CHECK_THAT(e.what(), StartsWith("kiln: " + path.string() + ": "));
    return e.what();
  }
  return "";
}

// An IDX header of unsigned bytes with the given dims (big-endian).
std::string idx_header(std::initializer_list<std::uint32_t> dims) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) out += static_cast<char>((d >> shift) & 0xFF);
  return out;
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

TEST_CASE("hostile files: sizes that overflow are refused before use", "[errors][files][hostile]") {
  TempDir dir;
  // [2^40, 2^24] floats: 2^66 bytes, which wraps to 0 in 64 bits and would match the empty data.
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[1099511627776, 16777216]", 0, 0) + "}", "")),
             Contains("key \"a\" is F32 [1099511627776, 16777216], more bytes than 64 bits can count"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[9223372036854775808]", 0, 0) + "}", "")),
             Contains("key \"a\" has 9223372036854775808 in its shape, not a size"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[4611686018427387904]", 0, 0) + "}", "")),
             Contains("key \"a\" is F32 [4611686018427387904], more bytes than 64 bits can count"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2, -3]", 0, 0) + "}", "")),
             Contains("key \"a\" has -3 in its shape, not a size"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 0, 18446744073709551615ull) + "}", "")),
             Contains("key \"a\" spans bytes [0, 18446744073709551615) but the data section has 0 bytes"));
  CHECK_THAT(refusal(dir, le64(~0ull) + "{}"),
             Contains("the header claims 18446744073709551615 bytes but the file has 2 after the length"));

  // Tensor(shape) and view(shape) check the element count and the byte count too.
  CHECK_THROWS_WITH(Tensor({kiln::index_t{1} << 40, kiln::index_t{1} << 24}),
                    Contains("shape [1099511627776, 16777216] has more elements than an index_t can count"));
  CHECK_THROWS_WITH(Tensor({kiln::index_t{1} << 62}), Contains("shape [4611686018427387904] of F32 needs more bytes"));
  CHECK_THROWS_WITH(Tensor({4}).view({kiln::index_t{1} << 62, 4, 0}),
                    Contains("more elements than an index_t can count"));

  // IDX: four dims of 2^32 - 1 overflow 64 bits.
  const auto idx = dir / "overflow.idx";
  write_bytes(idx, idx_header({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}));
  CHECK_THAT(idx_refusal(idx), Contains("the dims [4294967295, 4294967295, 4294967295, 4294967295] describe more "
                                        "bytes than memory can hold"));
  // A zero dim does not make the rest fit (fuzz_idx found this one: empty, but its strides overflow).
  write_bytes(idx, idx_header({3534514216u, 4269735936u, 0, 4278190080u}));
  CHECK_THAT(idx_refusal(idx), Contains("the dims [3534514216, 4269735936, 0, 4278190080] describe more bytes"));
  CHECK_THROWS_WITH(Tensor({kiln::index_t{1} << 40, kiln::index_t{1} << 24, 0}),
                    Contains("has more elements than an index_t can count"));
  CHECK(Tensor({kiln::index_t{1} << 40, 0}).numel() == 0);
}

TEST_CASE("hostile files: memory an IDX header claims is not allocated until the data arrives",
          "[errors][files][hostile]") {
  TempDir dir;
  // 16 GiB claimed, 10 bytes present: refused at once, plain or gzipped.
  const std::string claims_16_gib = idx_header({4, 65536, 65536}) + "0123456789";
  const auto plain = dir / "claims.idx";
  write_bytes(plain, claims_16_gib);
  const auto gzipped = dir / "claims.idx.gz";
  gzFile gz = gzopen(gzipped.c_str(), "wb");
  REQUIRE(gz != nullptr);
  CHECK(gzwrite(gz, claims_16_gib.data(), static_cast<unsigned>(claims_16_gib.size())) ==
        static_cast<int>(claims_16_gib.size()));
  gzclose(gz);
  for (const auto& path : {plain, gzipped}) {
    const auto start = std::chrono::steady_clock::now();
    CHECK_THAT(idx_refusal(path), Contains("truncated or corrupt while reading the data (10 of 17179869184 bytes"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  }

  // Bytes after the data the dims describe mean the dims are wrong.
  write_bytes(plain, idx_header({2, 3}) + "abcdef" + "x");
  CHECK_THAT(idx_refusal(plain), Contains("corrupt: more bytes follow the 6 the dims describe"));
  write_bytes(plain, idx_header({2, 3}) + "abcdef");
  CHECK(kiln::read_idx(plain).data.size() == 6);
}

TEST_CASE("hostile files: JSON nested deeper than a header needs is refused while parsing",
          "[errors][files][hostile]") {
  TempDir dir;
  // 100,000 levels: recursion over them (building, destroying or printing the JSON) would overflow the stack.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string shape_error = refusal(
      dir, safetensors_bytes(R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 0]}})", ""));
  CHECK_THAT(shape_error,
             Contains("corrupt header: the JSON nests deeper than 16 levels (a safetensors header needs 3)"));
  CHECK(shape_error.size() < 300);  // the message does not print the value
  CHECK_THAT(refusal(dir, safetensors_bytes(R"({"__metadata__": {"k": )" + deep + "}}", "")),
             Contains("the JSON nests deeper than 16 levels"));

  // Fields Kiln does not know are ignored, as the reference implementation ignores them.
  CHECK(refusal(dir, safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": [[1]]}})",
                                       std::string(4, '\0'))) == "");
}

TEST_CASE("hostile files: header bytes that JSON does not allow are refused", "[errors][files][hostile]") {
  TempDir dir;
  // nlohmann alone would stop reading at the NUL and skip the byte order mark.
  CHECK_THAT(refusal(dir, safetensors_bytes(std::string("{}\0junk", 7), "")),
             Contains("corrupt header: not valid JSON (a NUL byte at byte 2 of the header)"));
  CHECK_THAT(refusal(dir, safetensors_bytes("\xEF\xBB\xBF{}", "")), Contains("it starts with a byte order mark"));
  // The parser's message quotes the bad byte; the error shows it as \xNN.
  CHECK_THAT(refusal(dir, safetensors_bytes("{\"\xff\": 1}", "")),
             Contains("corrupt header: not valid JSON (") && Contains("ill-formed UTF-8 byte; last read: '\"\\xff'"));
}

TEST_CASE("hostile files: duplicate keys, gaps and trailing bytes are refused, as the reference refuses them",
          "[errors][files][hostile]") {
  TempDir dir;
  const std::string eight(8, '\0');
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 0, 8) + ", " + entry("a", "[2]", 8, 16) + "}",
                                            eight + eight)),
             Contains("corrupt header: key \"a\" appears twice in one object"));
  CHECK_THAT(
      refusal(dir, safetensors_bytes(R"({"a": {"dtype": "F32", "dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})",
                                     eight)),
      Contains("key \"dtype\" appears twice in one object"));
  // The reference takes the last of two metadata values; Kiln refuses to guess in any object.
  CHECK_THAT(refusal(dir, safetensors_bytes(R"({"__metadata__": {"k": "1", "k": "2"}})", "")),
             Contains("key \"k\" appears twice in one object"));

  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 4, 12) + "}", "...." + eight)),
             Contains("key \"a\" starts at byte 4 of the data, leaving a gap: the data section starts at 0"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[0]", 4, 4) + "}", "....")),
             Contains("key \"a\" starts at byte 4 of the data, leaving a gap: the data section starts at 0"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 0, 8) + ", " + entry("b", "[2]", 12, 20) + "}",
                                            eight + "...." + eight)),
             Contains("key \"b\" starts at byte 12 of the data, leaving a gap: key \"a\" ends at 8"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 0, 8) + ", " + entry("b", "[2]", 4, 12) + "}",
                                            eight + "....")),
             Contains("key \"b\" spans bytes [4, 12), which overlap: key \"a\" ends at 8"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{" + entry("a", "[2]", 0, 8) + "}", eight + "....")),
             Contains("corrupt: 4 trailing bytes: the tensors cover 8 bytes but the data section has 12"));
  CHECK_THAT(refusal(dir, safetensors_bytes("{}", "....")), Contains("4 trailing bytes"));

  // The tensors may be listed in any order, as long as their bytes tile the data section.
  const auto in_any_order = dir / "order.safetensors";
  const float values[4] = {1, 2, 3, 4};
  write_bytes(in_any_order, safetensors_bytes("{" + entry("a", "[2]", 8, 16) + ", " + entry("b", "[2]", 0, 8) + "}",
                                              std::string(reinterpret_cast<const char*>(values), 16)));
  const kiln::TensorMap loaded = kiln::load_tensors(in_any_order);
  CHECK(loaded.at("a")[0] == 3.0f);
  CHECK(loaded.at("b")[1] == 2.0f);
}

TEST_CASE("hostile files: save_tensors refuses names that are not UTF-8 and names them", "[errors][files][hostile]") {
  TempDir dir;
  const auto path = dir / "names.safetensors";
  CHECK_THROWS_WITH(kiln::save_tensors(path, {{"w\xff", Tensor({2})}}),
                    StartsWith("kiln: " + path.string() + ": ") && Contains("key \"w\\xff\" is not valid UTF-8"));
  CHECK_THROWS_WITH(kiln::save_tensors(path, {{"w", Tensor({2})}}, {{"note", "caf\xc3("}}),
                    Contains("metadata \"note\" has a value \"caf\\xc3(\" is not valid UTF-8"));
  CHECK_THROWS_AS(kiln::save_tensors(path, {}, {{"\xc0", "v"}}), kiln::Error);
  CHECK(std::filesystem::is_empty(dir.path));  // no file, no temporary
}

TEST_CASE("hostile files: two threads saving to one path each leave a whole file", "[files][hostile]") {
  TempDir dir;
  const auto path = dir / "shared.safetensors";
  auto tensors_of = [](float value) {
    Tensor t({1 << 16});  // 256 KiB, so the two writes overlap
    t.fill(value);
    return kiln::TensorMap{{"w", t}};
  };
  const kiln::TensorMap written[2] = {tensors_of(1.0f), tensors_of(2.0f)};
  for (int round = 0; round < 150; ++round) {
    std::string errors[2];
    std::latch start(2);
    auto save = [&](int i) {
      start.arrive_and_wait();
      try {
        kiln::save_tensors(path, written[i], {{"writer", std::to_string(i)}});
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    };
    std::thread first(save, 0), second(save, 1);
    first.join();
    second.join();
    INFO("round " << round);
    CHECK(errors[0] == "");
    CHECK(errors[1] == "");
    // Whole: one writer's tensor and metadata, never a mix or a torn file.
    const kiln::TensorFile file = kiln::read_tensor_file(path);
    const int writer = std::stoi(file.metadata.at("writer"));
    const Tensor& w = file.tensors.at("w");
    REQUIRE(w.numel() == 1 << 16);
    CHECK(std::all_of(w.values().begin(), w.values().end(), [&](float v) { return v == writer + 1.0f; }));
  }
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path), {}) == 1);  // no temporary left behind
}
