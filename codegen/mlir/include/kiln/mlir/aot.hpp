// The generator kiln_add_kernel builds per kernel: writes <dir>/<name>.o and <dir>/<name>.h.
#pragma once

#include <kiln/ir/network.hpp>

namespace kiln::mlir {

// argv: <dir> [<target cpu>]. Returns the process's exit status; prints what failed.
int aot_main(const ir::Network& net, const char* name, int argc, char** argv);

}  // namespace kiln::mlir
