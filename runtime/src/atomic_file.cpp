#include <kiln/runtime/atomic_file.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <system_error>

namespace kiln {

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(fmt::format("{}: {}", path.string(), what));
}

// Creates an empty temporary file beside `path` that no other writer uses: the name holds the process id and
// a per-process counter, and O_EXCL refuses a name that exists (a stale file left by a crashed writer whose
// process id is reused), in which case the next number is tried.
std::filesystem::path create_temporary(const std::filesystem::path& path) {
  static std::atomic<unsigned long> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::filesystem::path tmp = path.string() + fmt::format(".tmp{}.{}", ::getpid(), counter++);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      return tmp;
    }
    if (errno != EEXIST)
      fail(path, fmt::format("cannot create the temporary file {}: {}", tmp.string(),
                             std::error_code(errno, std::generic_category()).message()));
  }
  fail(path, "cannot create a temporary file: 100 names in a row were taken");
}

// Removes the temporary file unless it was moved into place, whatever way the write ends (an exception included).
struct RemoveUnlessMoved {
  const std::filesystem::path& tmp;
  bool moved = false;
  ~RemoveUnlessMoved() {
    std::error_code ignored;
    if (!moved) std::filesystem::remove(tmp, ignored);
  }
};

}  // namespace

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path tmp = create_temporary(path);
  RemoveUnlessMoved cleanup{tmp};
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) fail(path, fmt::format("cannot open the temporary file {}", tmp.string()));
    write(out);
    out.flush();
    if (!out) fail(path, "write failed (disk full?); nothing was written");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(path, "cannot move the written file into place: " + ec.message());
  cleanup.moved = true;
}

}  // namespace kiln
