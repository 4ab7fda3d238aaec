// IDX files (the MNIST / Fashion-MNIST format), plain or gzipped, and Fashion-MNIST as tensors.
#pragma once

#include <kiln/runtime/tensor.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln {

// An IDX file of unsigned bytes: its dims and its data, row-major.
struct IdxBytes {
  Shape shape;
  std::vector<std::uint8_t> data;
};

// Reads an IDX file of unsigned bytes (type 0x08); a name ending in .gz is decompressed on the fly.
// Throws kiln::Error naming the file when it is missing, truncated, not such a file, or has bytes after the
// data its dims describe. Memory grows with the data actually read, not with what the dims claim.
IdxBytes read_idx(const std::filesystem::path& path);

// Where Debian's dataset-fashion-mnist package puts the files.
inline const std::filesystem::path fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

struct LabelledImages {
  Tensor images;  // float32 [N, 1, 28, 28], pixels / 255
  Tensor labels;  // int64 [N], classes 0..9
};

// The train (60000) or test (10000) split. Errors say which file is missing and how to get it.
LabelledImages load_fashion_mnist(bool train, const std::filesystem::path& dir = fashion_mnist_dir);

// Fashion-MNIST's class names, by label.
inline constexpr const char* fashion_mnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                          "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

}  // namespace kiln
