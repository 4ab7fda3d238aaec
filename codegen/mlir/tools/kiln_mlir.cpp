// kiln-mlir: a sample network at any stage of Kiln's MLIR ladder.
//
//   kiln-mlir --network=mnist-mlp --emit=linalg            # print the stage
//   kiln-mlir --network=mnist-mlp --emit=obj -o mlp.o      # write the object file
//   kiln-mlir --network=mnist-mlp --emit=linalg --cpu=x86-64-v3   # for that CPU instead of this machine's
//   kiln-mlir --network=wide --emit=obj -o wide.o --time-passes   # where the compile time goes, pass by pass
//   kiln-mlir --list                                       # the networks it knows
#include "sample_networks.hpp"

#include <kiln/mlir/compiler.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>

namespace {
int usage(const char* why) {
  std::fprintf(stderr,
               "kiln-mlir: %s\nusage: kiln-mlir --network=NAME --emit=mlir|linalg|llvm-dialect|llvm-ir|obj [--name=SYMBOL] "
               "[--cpu=CPU] [-o FILE] [--time-passes]\n       kiln-mlir --list\n",
               why);
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  std::string network, emit = "mlir", name = "kiln_net", output;
  bool time_passes = false;
  kiln::mlir::Target target;  // this machine's, unless --cpu names another (LLVM's name: "skylake-avx512", ...)
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--list") {
      for (const auto& [key, net] : kiln::samples::sample_networks()) fmt::print("{}\n", key);
      return 0;
    }
    if (a.starts_with("--network=")) network = a.substr(10);
    else if (a.starts_with("--emit=")) emit = a.substr(7);
    else if (a.starts_with("--name=")) name = a.substr(7);
    else if (a.starts_with("--cpu=")) target.cpu = a.substr(6);
    else if (a == "-o" && i + 1 < argc) output = argv[++i];
    else if (a == "--time-passes") time_passes = true;
    else return usage(fmt::format("unknown argument \"{}\"", a).c_str());
  }
  const auto networks = kiln::samples::sample_networks();
  const auto it = networks.find(network);
  if (it == networks.end())
    return usage(fmt::format("unknown network \"{}\" (kiln-mlir --list names them)", network).c_str());
  try {
    const kiln::mlir::Stage stage = kiln::mlir::stage_from_name(emit);
    const std::string text = kiln::mlir::lower(it->second, name, stage, target, time_passes);
    if (output.empty()) {
      if (stage == kiln::mlir::Stage::obj) return usage("--emit=obj writes binary: give -o FILE");
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    }
    std::ofstream out(output, std::ios::binary);
    if (!out.write(text.data(), static_cast<std::streamsize>(text.size())))
      throw kiln::Error(fmt::format("cannot write {}", output));
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln-mlir: %s\n", e.what());
    return 1;
  }
  return 0;
}
