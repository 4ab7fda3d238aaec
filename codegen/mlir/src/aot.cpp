// The ahead-of-time path: the object file and header for kiln_add_kernel (KilnAddKernel.cmake).
#include <kiln/mlir/aot.hpp>
#include <kiln/mlir/compiler.hpp>
#include <kiln/runtime/atomic_file.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

namespace kiln::mlir {

namespace {
void write_whole(const std::filesystem::path& path, const std::string& bytes) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}
}  // namespace

int aot_main(const ir::Network& net, const char* name, int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <output dir> [<target cpu>]\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    Target target;
    if (argc > 2 && argv[2][0]) {
      target.cpu = argv[2];
      target.features = "";  // the CPU's own
    }
    write_whole(dir / fmt::format("{}.o", name), lower(net, name, Stage::obj, target));
    write_whole(dir / fmt::format("{}.h", name), kernel_header(net, name));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_add_kernel(%s): %s\n", name, e.what());
    return 1;
  }
  return 0;
}

}  // namespace kiln::mlir
