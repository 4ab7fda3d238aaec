#include <kiln/runtime/atomic_file.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <fstream>
#include <system_error>
#include <unistd.h>

namespace kiln {

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  auto fail = [&](const std::string& what) { throw Error(fmt::format("{}: {}", path.string(), what)); };
  const std::filesystem::path tmp = path.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(fmt::format("cannot create the temporary file {}", tmp.string()));
    write(out);
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp);
      fail("write failed (disk full?); nothing was written");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail("cannot move the written file into place: " + ec.message());
  }
}

}  // namespace kiln
