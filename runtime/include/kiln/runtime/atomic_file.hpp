// Files that appear whole or not at all: the data goes to a temporary file in the same folder, which is then
// renamed over the destination. For safetensors files, the JIT's disk cache and kiln_add_kernel's outputs.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>

namespace kiln {

// Calls write(stream) on a temporary file beside `path`, then renames it to `path`. The temporary has a name of
// its own, created exclusively (O_EXCL), so concurrent writers to one path each move a whole file into place
// (the last rename wins). Throws kiln::Error naming `path` when the temporary cannot be created, a write
// fails, `write` throws, or the rename fails; the temporary is then removed and `path` is as it was.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

}  // namespace kiln
