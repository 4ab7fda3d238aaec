// safetensors reading and writing. The JSON header is parsed by nlohmann::json (Debian's nlohmann-json3-dev),
// kept out of Kiln's public headers.
//
// A file is hostile until checked: every size read from it is checked for overflow before use, nothing larger
// than the file is allocated, the JSON is refused before it nests deeper than a header needs, and a file that
// the reference implementation (the `safetensors` package) refuses is refused here too: duplicate keys, data
// offsets that leave a gap or overlap, bytes after the last tensor.
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/runtime/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <system_error>
#include <tuple>

static_assert(std::endian::native == std::endian::little, "Kiln's safetensors I/O assumes a little-endian machine");

namespace kiln {

namespace {

using Json = nlohmann::json;

constexpr std::uint64_t max_header_bytes = 100'000'000;  // the reference implementation's limit
constexpr int max_json_depth = 16;                       // a header needs 3: {name: {"shape": [dims]}}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(fmt::format("{}: {}", path.string(), what));
}

// A string that may not be UTF-8, for a message: bytes other than printable ASCII written as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s)
    out += c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
  return out;
}

// A JSON value for a message: scalars as written (cut short), arrays and objects by kind only, so that a
// message never prints (or recurses into) a deep or huge value.
std::string describe(const Json& v) {
  if (v.is_array()) return fmt::format("an array of {}", v.size());
  if (v.is_object()) return "an object";
  const std::string text = v.dump();
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

DType parse_dtype(const std::filesystem::path& path, const std::string& key, const std::string& name) {
  if (name == "F32") return DType::float32;
  if (name == "I64") return DType::int64;
  fail(path, fmt::format("key \"{}\": dtype {} is not supported (Kiln reads F32 and I64)", key, name));
}

std::uint64_t read_header_length(const std::filesystem::path& path, std::istream& in, std::uint64_t file_size) {
  if (file_size < 8) fail(path, fmt::format("truncated: {} bytes, too short for the 8-byte header length", file_size));
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len_bytes[i];
  if (header_len > max_header_bytes || header_len > file_size - 8)
    fail(path, fmt::format("corrupt or truncated: the header claims {} bytes but the file has {} after the length",
                           header_len, file_size - 8));
  return header_len;
}

// Parses the header text. Nesting and duplicate keys are refused while parsing, before a deep value is built:
// nothing downstream (the DOM's destructor, a message) then meets more than max_json_depth levels.
Json parse_header(const std::filesystem::path& path, const std::string& text) {
  // nlohmann accepts two things JSON (and the reference's parser) does not: it stops at a NUL byte as at the
  // end of the input, leaving the rest unread, and it skips a leading byte order mark.
  if (const auto nul = text.find('\0'); nul != std::string::npos)
    fail(path, fmt::format("corrupt header: not valid JSON (a NUL byte at byte {} of the header)", nul));
  if (text.starts_with("\xEF\xBB\xBF")) fail(path, "corrupt header: not valid JSON (it starts with a byte order mark)");

  std::vector<std::set<std::string>> keys_of_open_objects;
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    using Event = Json::parse_event_t;
    if ((event == Event::object_start || event == Event::array_start) && depth >= max_json_depth)
      fail(path, fmt::format("corrupt header: the JSON nests deeper than {} levels (a safetensors header needs 3)",
                             max_json_depth));
    if (event == Event::object_start) keys_of_open_objects.emplace_back();
    if (event == Event::object_end) keys_of_open_objects.pop_back();
    if (event == Event::key && !keys_of_open_objects.back().insert(parsed.get<std::string>()).second)
      fail(path, fmt::format("corrupt header: key \"{}\" appears twice in one object", parsed.get<std::string>()));
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, check);
  } catch (const Json::exception& e) {
    // nlohmann's message quotes the token it stopped at, which may be long or not UTF-8.
    fail(path, fmt::format("corrupt header: not valid JSON ({})", printable(e.what()).substr(0, 300)));
  }
  if (!header.is_object()) fail(path, "corrupt header: the JSON header is not an object");
  return header;
}

Metadata parse_metadata(const std::filesystem::path& path, const Json& entry) {
  if (!entry.is_object()) fail(path, fmt::format("corrupt header: __metadata__ is {}, not an object", describe(entry)));
  Metadata metadata;
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string())
      fail(path, fmt::format("corrupt header: metadata \"{}\" is {}, not a string", key, describe(value)));
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

// One tensor's entry in the header, checked on its own: dtype, shape, and data_offsets that agree with them.
struct Entry {
  std::string key;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;  // bytes of the data section
};

Entry parse_entry(const std::filesystem::path& path, const std::string& key, const Json& entry,
                  std::uint64_t data_size) {
  if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
      !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2)
    fail(path, fmt::format("corrupt header: key \"{}\" needs dtype, shape and data_offsets [begin, end]", key));
  Entry e{key, parse_dtype(path, key, entry["dtype"].get<std::string>()), {}, 0, 0};

  for (const auto& d : entry["shape"]) {
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() > std::uint64_t{std::numeric_limits<index_t>::max()})
      fail(path, fmt::format("corrupt header: key \"{}\" has {} in its shape, not a size", key, describe(d)));
    e.shape.push_back(d.get<index_t>());
  }
  // numel_of's rule (every product of the non-zero dims fits), then the bytes.
  std::uint64_t bytes = 0;
  bool fits = true;
  try {
    fits = !__builtin_mul_overflow(static_cast<std::uint64_t>(numel_of(e.shape)), dtype_size(e.dtype), &bytes);
  } catch (const Error&) {
    fits = false;
  }
  if (!fits)
    fail(path, fmt::format("corrupt header: key \"{}\" is {} {}, more bytes than 64 bits can count", key,
                           dtype_name(e.dtype), shape_text(e.shape)));

  const auto& offsets = entry["data_offsets"];
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    fail(path, fmt::format("corrupt header: key \"{}\" has data_offsets [{}, {}], not two byte offsets", key,
                           describe(offsets[0]), describe(offsets[1])));
  e.begin = offsets[0].get<std::uint64_t>();
  e.end = offsets[1].get<std::uint64_t>();
  if (e.begin > e.end)
    fail(path, fmt::format("corrupt header: key \"{}\" has data_offsets [{}, {}]: the end is before the begin", key,
                           e.begin, e.end));
  if (e.end > data_size)
    fail(path, fmt::format("truncated or corrupt: key \"{}\" spans bytes [{}, {}) but the data section has {} bytes",
                           key, e.begin, e.end, data_size));
  if (e.end - e.begin != bytes)
    fail(path, fmt::format("corrupt header: key \"{}\" is {} {} ({} bytes) but data_offsets span {} bytes", key,
                           dtype_name(e.dtype), shape_text(e.shape), bytes, e.end - e.begin));
  return e;
}

// The tensors must tile the data section: in order of offset, each starts where the previous one ended, the
// first at 0, the last at the end of the file (as the reference implementation requires).
void check_layout(const std::filesystem::path& path, std::vector<Entry>& entries, std::uint64_t data_size) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    const std::string previous = i == 0 ? std::string("the data section starts at 0")
                                        : fmt::format("key \"{}\" ends at {}", entries[i - 1].key, covered);
    if (e.begin < covered)
      fail(path, fmt::format("corrupt header: key \"{}\" spans bytes [{}, {}), which overlap: {}", e.key, e.begin,
                             e.end, previous));
    if (e.begin > covered)
      fail(path, fmt::format("corrupt header: key \"{}\" starts at byte {} of the data, leaving a gap: {}", e.key,
                             e.begin, previous));
    covered = e.end;
  }
  if (covered != data_size)
    fail(path, fmt::format("corrupt: {} trailing bytes: the tensors cover {} bytes but the data section has {}",
                           data_size - covered, covered, data_size));
}

}  // namespace

TensorFile read_tensor_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file (does it exist?)");
  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read the file size: " + ec.message());

  const std::uint64_t header_len = read_header_length(path, in, file_size);
  std::string header_text(header_len, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_len));
  if (!in) fail(path, "truncated while reading the header");
  const Json header = parse_header(path, header_text);

  const std::uint64_t data_size = file_size - 8 - header_len;
  TensorFile result;
  std::vector<Entry> entries;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") result.metadata = parse_metadata(path, entry);
    else entries.push_back(parse_entry(path, key, entry, data_size));
  }
  check_layout(path, entries, data_size);

  // Every tensor now lies inside the file, so no allocation below is larger than the file.
  for (const Entry& e : entries) {
    Tensor t(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
    in.read(reinterpret_cast<char*>(t.bytes()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) fail(path, fmt::format("truncated while reading key \"{}\"", e.key));
    result.tensors.emplace(e.key, std::move(t));
  }
  return result;
}

namespace {

// nlohmann's writer throws its own type_error at a string that is not UTF-8; refuse it first, by name.
void check_utf8(const std::filesystem::path& path, const std::string& what, const std::string& s) {
  try {
    (void)Json(s).dump();
  } catch (const Json::type_error&) {
    fail(path, fmt::format("{} \"{}\" is not valid UTF-8 (safetensors names and metadata are JSON strings)", what,
                           printable(s)));
  }
}

}  // namespace

void save_tensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  for (const auto& [key, value] : metadata) {
    check_utf8(path, "metadata key", key);
    check_utf8(path, fmt::format("metadata \"{}\" has a value", printable(key)), value);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [key, t] : tensors) {
    if (key == "__metadata__") fail(path, "\"__metadata__\" cannot be a tensor name");
    check_utf8(path, "key", key);
    if (!t.defined() && t.numel() != 0) fail(path, fmt::format("key \"{}\" is an undefined tensor", key));
    header[key] = {{"dtype", std::string{dtype_name(t.dtype())}},
                   {"shape", t.shape()},
                   {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned, as safetensors does
  if (text.size() > max_header_bytes)
    fail(path, fmt::format("the header would be {} bytes; safetensors readers refuse more than {}", text.size(),
                           max_header_bytes));

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
