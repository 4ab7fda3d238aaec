// safetensors reading and writing. The JSON header is parsed by nlohmann::json (Debian's nlohmann-json3-dev),
// kept out of Kiln's public headers.
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/runtime/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <bit>
#include <cstdio>
#include <fstream>
#include <limits>
#include <system_error>

static_assert(std::endian::native == std::endian::little, "Kiln's safetensors I/O assumes a little-endian machine");

namespace kiln {

namespace {

constexpr std::uint64_t max_header_bytes = 100u << 20;  // the reference implementation's limit

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(fmt::format("{}: {}", path.string(), what));
}

DType parse_dtype(const std::filesystem::path& path, const std::string& key, const std::string& name) {
  if (name == "F32") return DType::float32;
  if (name == "I64") return DType::int64;
  fail(path, fmt::format("key \"{}\": dtype {} is not supported (Kiln reads F32 and I64)", key, name));
}

}  // namespace

TensorFile read_tensor_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file (does it exist?)");
  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read the file size: " + ec.message());
  if (file_size < 8) fail(path, fmt::format("truncated: {} bytes, too short for the 8-byte header length", file_size));

  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len_bytes[i];
  if (header_len > max_header_bytes || header_len > file_size - 8)
    fail(path, fmt::format("corrupt or truncated: the header claims {} bytes but the file has {} after the length",
                           header_len, file_size - 8));
  std::string header_text(header_len, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_len));
  if (!in) fail(path, "truncated while reading the header");

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, fmt::format("corrupt header: not valid JSON ({})", e.what()));
  }
  if (!header.is_object()) fail(path, "corrupt header: the JSON header is not an object");

  const std::uint64_t data_size = file_size - 8 - header_len;
  TensorFile result;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      if (!entry.is_object()) fail(path, "corrupt header: __metadata__ is not an object");
      for (const auto& [mk, mv] : entry.items()) {
        if (!mv.is_string()) fail(path, fmt::format("corrupt header: metadata \"{}\" is not a string", mk));
        result.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      fail(path, fmt::format("corrupt header: key \"{}\" needs dtype, shape and data_offsets [begin, end]", key));
    const DType dtype = parse_dtype(path, key, entry["dtype"].get<std::string>());
    Shape shape;
    std::uint64_t count = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > (1ull << 40))
        fail(path, fmt::format("corrupt header: key \"{}\" has an invalid shape {}", key, entry["shape"].dump()));
      shape.push_back(static_cast<index_t>(d.get<std::uint64_t>()));
      count *= d.get<std::uint64_t>();
      if (count > (1ull << 40)) fail(path, fmt::format("corrupt header: key \"{}\" is impossibly large", key));
    }
    const auto& offs = entry["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      fail(path, fmt::format("corrupt header: key \"{}\" has invalid data_offsets {}", key, offs.dump()));
    const auto begin = offs[0].get<std::uint64_t>(), end = offs[1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      fail(path, fmt::format("truncated or corrupt: key \"{}\" spans bytes [{}, {}) but the data section has {} bytes",
                             key, begin, end, data_size));
    if (end - begin != count * dtype_size(dtype))
      fail(path, fmt::format("corrupt header: key \"{}\" is {} {} ({} bytes) but data_offsets span {} bytes", key,
                             dtype_name(dtype), shape_text(shape), count * dtype_size(dtype), end - begin));
    ranges.emplace_back(begin, end);
    Tensor t(shape, dtype);
    in.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    in.read(reinterpret_cast<char*>(t.bytes()), static_cast<std::streamsize>(end - begin));
    if (!in) fail(path, fmt::format("truncated while reading key \"{}\"", key));
    result.tensors.emplace(key, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "corrupt header: two tensors' data_offsets overlap");
  return result;
}

void save_tensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [key, t] : tensors) {
    if (key == "__metadata__") fail(path, "\"__metadata__\" cannot be a tensor name");
    if (!t.defined() && t.numel() != 0) fail(path, fmt::format("key \"{}\" is an undefined tensor", key));
    header[key] = {{"dtype", std::string{dtype_name(t.dtype())}},
                   {"shape", t.shape()},
                   {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned, as safetensors does

  write_file_atomically(path, [&](std::ostream& out) {
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));
    out.write(reinterpret_cast<const char*>(len_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [key, t] : tensors)
      out.write(reinterpret_cast<const char*>(t.bytes()), static_cast<std::streamsize>(t.nbytes()));
  });
}

}  // namespace kiln
