// libFuzzer target: kiln::read_tensor_file on arbitrary bytes. A file may be refused with a kiln::Error; it must
// never crash, leak, hang, allocate more than it holds or throw anything else (libFuzzer reports those). A file
// that loads is saved and loaded again, and must come back the same.
#include "fuzz_support.hpp"

#include <kiln/runtime/tensor_file.hpp>

#include <cstring>

namespace {

bool same(const kiln::TensorFile& a, const kiln::TensorFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [key, t] : a.tensors) {
    const auto it = b.tensors.find(key);
    if (it == b.tensors.end()) return false;
    const kiln::Tensor& u = it->second;
    if (t.shape() != u.shape() || t.dtype() != u.dtype() || std::memcmp(t.bytes(), u.bytes(), t.nbytes()) != 0)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto input = kiln::fuzz::scratch_file("input.safetensors");
  static const auto again = kiln::fuzz::scratch_file("again.safetensors");
  kiln::fuzz::write_input(input, data, size);
  kiln::TensorFile file;
  try {
    file = kiln::read_tensor_file(input);
  } catch (const kiln::Error&) {
    return 0;
  }
  kiln::save_tensors(again, file.tensors, file.metadata);
  if (!same(file, kiln::read_tensor_file(again))) __builtin_trap();
  return 0;
}
