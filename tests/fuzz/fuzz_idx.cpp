// libFuzzer target: kiln::read_idx on arbitrary bytes, plain or gzipped (zlib tells them apart by content). A file
// may be refused with a kiln::Error; it must never crash, leak, hang, allocate more than it holds or throw
// anything else. A file that loads holds exactly the bytes its dims describe.
#include "fuzz_support.hpp"

#include <kiln/runtime/idx.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto input = kiln::fuzz::scratch_file("input.idx");
  kiln::fuzz::write_input(input, data, size);
  kiln::IdxBytes idx;
  try {
    idx = kiln::read_idx(input);
  } catch (const kiln::Error&) {
    return 0;
  }
  if (idx.data.size() != static_cast<std::size_t>(kiln::numel_of(idx.shape))) __builtin_trap();
  return 0;
}
