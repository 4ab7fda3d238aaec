// Loading compiled kernels into the process, and the two caches in front of the compiler.
//
// The JIT compiles a network to an object file (the ladder's last stage) and links it into the process with
// LLVM's ORC LLJIT. The object file is what both caches keep: the in-process cache the loaded kernel (a
// second compile returns it), the on-disk cache the object's bytes (a new process links it, without MLIR).
// Keys are the network's canonical description (ir::to_string) and the host CPU's name, features and L2 size.
#include <kiln/mlir/kernel.hpp>
#include <kiln_mlir_lowering_hash.hpp>
#include <kiln/runtime/atomic_file.hpp>
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/kernel_buffers.hpp>

#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>


namespace kiln::mlir {

namespace {

// The cache format, and which lowering made the kernel (a hash of its sources, made at build time).
constexpr std::string_view kCacheFormat = "kiln-mlir-kernel 1 lowering " KILN_MLIR_LOWERING_HASH;
constexpr std::string_view kEntryName = "kiln_net";

class OrcKernel final : public LoadedKernel {
 public:
  std::unique_ptr<llvm::orc::LLJIT> jit;
};

// A kernel found in the in-process cache: shares the loaded code of the first.
class CachedKernel final : public LoadedKernel {
 public:
  std::shared_ptr<const LoadedKernel> owner;
};

std::shared_ptr<OrcKernel> link(const std::vector<std::string>& objects, const std::string& key) {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  auto fail = [&](llvm::Error e) -> std::shared_ptr<OrcKernel> {
    throw Error(fmt::format("kiln::jit: cannot load the compiled kernel: {}", llvm::toString(std::move(e))));
  };
  auto jit = llvm::orc::LLJITBuilder().create();
  if (!jit) return fail(jit.takeError());
  // The kernel calls memset from this process, and the runtime's kiln_buffer_alloc and kiln_buffer_free for its
  // intermediate buffers, by address: a program linked with Kiln statically does not export them.
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess((*jit)->getDataLayout().getGlobalPrefix());
  if (!process) return fail(process.takeError());
  (*jit)->getMainJITDylib().addGenerator(std::move(*process));
  llvm::orc::SymbolMap buffers;
  buffers[(*jit)->mangleAndIntern("kiln_buffer_alloc")] = {llvm::orc::ExecutorAddr::fromPtr(&kiln_buffer_alloc),
                                                          llvm::JITSymbolFlags::Exported};
  buffers[(*jit)->mangleAndIntern("kiln_buffer_free")] = {llvm::orc::ExecutorAddr::fromPtr(&kiln_buffer_free),
                                                         llvm::JITSymbolFlags::Exported};
  if (auto e = (*jit)->getMainJITDylib().define(llvm::orc::absoluteSymbols(std::move(buffers))))
    return fail(std::move(e));
  for (const std::string& object : objects)
    if (auto e = (*jit)->addObjectFile(llvm::MemoryBuffer::getMemBufferCopy(object, "kiln-kernel.o"))) return fail(std::move(e));
  auto kernel = std::make_shared<OrcKernel>();
  for (bool training : {false, true}) {
    auto symbol = (*jit)->lookup(std::string(kEntryName) + (training ? "_train" : "_eval"));
    if (!symbol) return fail(symbol.takeError());
    (training ? kernel->train : kernel->eval) = symbol->toPtr<ir::KernelFn>();
  }
  auto pack = (*jit)->lookup(std::string(kEntryName) + "_pack");
  if (!pack) return fail(pack.takeError());
  kernel->pack = pack->toPtr<ir::PackFn>();
  kernel->jit = std::move(*jit);
  kernel->key = key;
  return kernel;
}

std::string hex_hash(const std::string& s) {
  // FNV-1a, 64 bits: the file name only; the full key is stored beside the object and compared on load.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Whole or not at all; a failure to write only costs the next process a compile.
void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  try {
    write_file_atomically(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
  } catch (const Error&) {
  }
}

}  // namespace

std::filesystem::path default_cache_dir() {
  if (const char* dir = std::getenv("KILN_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::filesystem::path(xdg) / "kiln";
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".cache" / "kiln";
  return std::filesystem::temp_directory_path() / "kiln-cache";
}

std::shared_ptr<const LoadedKernel> jit_compile(const ir::Network& net, const JitOptions& options) {
  static const Target host = host_target();
  const std::string key = fmt::format("{}\ntarget {} {} {} L2 {}\n{}", kCacheFormat, host.triple, host.cpu,
                                      host.features, host.l2_bytes, ir::to_string(net));
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const LoadedKernel>> loaded;
  std::lock_guard lock(mutex);
  if (options.use_memory_cache)
    if (auto it = loaded.find(key); it != loaded.end()) {
      auto hit = std::make_shared<CachedKernel>();
      hit->eval = it->second->eval;
      hit->train = it->second->train;
      hit->pack = it->second->pack;
      hit->packed_floats = it->second->packed_floats;
      hit->key = key;
      hit->origin = Origin::memory_cache;
      hit->owner = it->second;
      return hit;
    }
  const std::filesystem::path dir = options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
  const std::string stem = hex_hash(key);
  std::shared_ptr<OrcKernel> kernel;
  // On disk: <stem>.key (the whole key, compared on load) and one object per mode, <stem>.eval.o, <stem>.train.o.
  const std::array<std::filesystem::path, 2> object_paths{dir / (stem + ".eval.o"), dir / (stem + ".train.o")};
  if (options.use_disk_cache) {
    const auto stored_key = read_file(dir / (stem + ".key"));
    std::vector<std::string> objects;
    for (const auto& path : object_paths)
      if (auto object = stored_key && *stored_key == key ? read_file(path) : std::nullopt) objects.push_back(std::move(*object));
    if (objects.size() == object_paths.size()) {
      // A file that does not load (damaged, truncated) is compiled again and replaced.
      try {
        kernel = link(objects, key);
        kernel->origin = Origin::disk_cache;
      } catch (const Error&) {
        kernel = nullptr;
      }
    }
  }
  if (!kernel) {
    const std::vector<std::string> objects = lower_objects(net, std::string(kEntryName));
    kernel = link(objects, key);
    kernel->origin = Origin::compiled;
    if (options.use_disk_cache) {
      for (std::size_t i = 0; i < objects.size(); ++i) write_file(object_paths[i], objects[i]);
      write_file(dir / (stem + ".key"), key);
    }
  }
  kernel->packed_floats = packed_floats(net);
  if (options.use_memory_cache) loaded[key] = kernel;
  return kernel;
}

}  // namespace kiln::mlir
