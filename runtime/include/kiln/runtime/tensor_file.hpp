// safetensors files in and out: what safetensors.torch.save_file writes and load_file reads.
// Layout: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with an
// optional "__metadata__" of strings, then the raw little-endian data. Kiln reads and writes F32 and I64.
#pragma once

#include <kiln/runtime/tensor.hpp>

#include <filesystem>
#include <map>
#include <string>

namespace kiln {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct TensorFile {
  TensorMap tensors;
  Metadata metadata;
};

// Reads every tensor of a safetensors file. Throws kiln::Error naming the file (and key) when the file is
// missing, truncated, corrupt, or holds a dtype other than F32 / I64.
TensorFile read_tensor_file(const std::filesystem::path& path);
inline TensorMap load_tensors(const std::filesystem::path& path) { return read_tensor_file(path).tensors; }

// Writes the tensors (and string metadata) as a safetensors file. The file appears whole or not at all:
// the data goes to a temporary file in the same folder, which is then renamed over `path`.
void save_tensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata = {});

}  // namespace kiln
