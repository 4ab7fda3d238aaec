// kiln::to_pytorch of every golden network, written to DIR/<case>.py (usage: kiln_to_pytorch_cases DIR);
// check_to_pytorch.py then builds each in PyTorch, loads the golden weights with load_state_dict and compares.
#include <kiln/dsl/layers.hpp>
#include <kiln/dsl/to_pytorch.hpp>

#include <fmt/format.h>

#include <fstream>
#include <string>

namespace nn = kiln::nn;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int count = 0;
  auto write = [&](const char* name, const std::string& source) {
    std::ofstream(fmt::format("{}/{}.py", argv[1], name)) << source;
    ++count;
  };
#define KILN_CASE(name, ...) write(name, kiln::to_pytorch(__VA_ARGS__));
#include "golden_layer_cases.inc"
#include "golden_network_cases.inc"
#include "golden_graph_cases.inc"
#undef KILN_CASE
  fmt::print("wrote {} networks as PyTorch source\n", count);
}
