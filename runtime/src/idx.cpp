// IDX reading. Gzipped files go through zlib's gzread (Debian's zlib1g-dev), which also reads plain files.
#include <kiln/runtime/idx.hpp>

#include <zlib.h>

#include <algorithm>
#include <memory>

namespace kiln {

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(fmt::format("{}: {}", path.string(), what));
}

using GzFile = std::unique_ptr<gzFile_s, int (*)(gzFile)>;

// Reads up to n bytes; fewer only where the data ends. Returns how many were read.
std::size_t read_up_to(GzFile& file, void* dst, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
    const int got = gzread(file.get(), static_cast<char*>(dst) + done, chunk);
    if (got <= 0) break;
    done += static_cast<std::size_t>(got);
  }
  return done;
}

[[noreturn]] void fail_truncated(const std::filesystem::path& path, GzFile& file, const char* what, std::size_t done,
                                 std::size_t n) {
  int code = 0;
  const char* msg = gzerror(file.get(), &code);
  fail(path, fmt::format("truncated or corrupt while reading {} ({} of {} bytes{})", what, done, n,
                         code != 0 ? fmt::format("; zlib: {}", msg) : ""));
}

void read_exactly(const std::filesystem::path& path, GzFile& file, void* dst, std::size_t n, const char* what) {
  const std::size_t done = read_up_to(file, dst, n);
  if (done < n) fail_truncated(path, file, what, done, n);
}

// The element count the dims describe, checked for overflow.
std::size_t element_count(const std::filesystem::path& path, const Shape& dims) {
  try {
    return static_cast<std::size_t>(numel_of(dims));
  } catch (const Error&) {
    fail(path, fmt::format("corrupt: the dims {} describe more bytes than memory can hold", shape_text(dims)));
  }
}

// The dims are only a claim: the data is read in pieces and the buffer grows with what arrives, so dims that
// claim 16 GiB over a short file cost no more memory than the file holds.
std::vector<std::uint8_t> read_data(const std::filesystem::path& path, GzFile& file, std::size_t count) {
  constexpr std::size_t piece = std::size_t{1} << 20;
  std::vector<std::uint8_t> data;
  while (data.size() < count) {
    const std::size_t done = data.size(), n = std::min(piece, count - done);
    data.resize(done + n);
    const std::size_t got = read_up_to(file, data.data() + done, n);
    if (got < n) fail_truncated(path, file, "the data", done + got, count);
  }
  std::uint8_t extra;
  if (read_up_to(file, &extra, 1) != 0)
    fail(path, fmt::format("corrupt: more bytes follow the {} the dims describe", count));
  return data;
}

}  // namespace

IdxBytes read_idx(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail(path, "no such file");
  GzFile file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) fail(path, "cannot open the file");
  std::uint8_t magic[4];
  read_exactly(path, file, magic, 4, "the magic number");
  if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1 || magic[3] > 4)
    fail(path, fmt::format("not an IDX file (magic bytes {:02x} {:02x} {:02x} {:02x})", magic[0], magic[1], magic[2],
                           magic[3]));
  if (magic[2] != 0x08)
    fail(path, fmt::format("IDX element type 0x{:02x} is not supported (Kiln reads unsigned bytes, 0x08)", magic[2]));
  IdxBytes result;
  for (int d = 0; d < magic[3]; ++d) {
    std::uint8_t be[4];
    read_exactly(path, file, be, 4, "the dims");
    const std::uint32_t size = std::uint32_t{be[0]} << 24 | std::uint32_t{be[1]} << 16 | std::uint32_t{be[2]} << 8 | be[3];
    result.shape.push_back(static_cast<index_t>(size));
  }
  result.data = read_data(path, file, element_count(path, result.shape));
  return result;
}

LabelledImages load_fashion_mnist(bool train, const std::filesystem::path& dir) {
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& stem) {
    for (const auto& name : {stem + ".gz", stem})
      if (std::filesystem::exists(dir / name)) return dir / name;
    throw Error(fmt::format("Fashion-MNIST: {} not found in {} (install the Debian package dataset-fashion-mnist, "
                            "or pass the folder that holds the IDX files)",
                            stem + ".gz", dir.string()));
  };
  const auto image_path = find(prefix + "-images-idx3-ubyte");
  const auto label_path = find(prefix + "-labels-idx1-ubyte");
  const IdxBytes images = read_idx(image_path);
  const IdxBytes labels = read_idx(label_path);
  if (images.shape.size() != 3 || images.shape[1] != 28 || images.shape[2] != 28)
    fail(image_path, fmt::format("expected images [N, 28, 28], got {}", shape_text(images.shape)));
  if (labels.shape.size() != 1 || labels.shape[0] != images.shape[0])
    fail(label_path, fmt::format("expected {} labels, got an array {}", images.shape[0], shape_text(labels.shape)));
  LabelledImages out{Tensor({images.shape[0], 1, 28, 28}), Tensor({labels.shape[0]}, DType::int64)};
  float* px = out.images.data();
  for (std::size_t i = 0; i < images.data.size(); ++i) px[i] = static_cast<float>(images.data[i]) / 255.0f;
  std::int64_t* lb = out.labels.data_i64();
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] > 9) fail(label_path, fmt::format("label {} at index {} is not a class 0..9", labels.data[i], i));
    lb[i] = labels.data[i];
  }
  return out;
}

}  // namespace kiln
