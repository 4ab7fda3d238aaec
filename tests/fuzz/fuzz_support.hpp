// What the fuzz targets share: the readers take a path, so each input is written to a scratch file of this
// process's own (fuzzers may run side by side), removed when the fuzzer exits. The scratch folder is in
// /dev/shm where there is one: rewriting a file on ext4 flushes it to disk, 10x slower.
#pragma once

#include <fmt/format.h>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>

namespace kiln::fuzz {

inline std::filesystem::path memory_backed_temp() {
  std::error_code ec;
  return std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : std::filesystem::temp_directory_path();
}

struct ScratchDir {
  std::filesystem::path path = memory_backed_temp() / fmt::format("kiln_fuzz_{}", ::getpid());
  ScratchDir() { std::filesystem::create_directories(path); }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

inline std::filesystem::path scratch_file(const std::string& name) {
  static const ScratchDir dir;
  return dir.path / name;
}

inline void write_input(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace kiln::fuzz
