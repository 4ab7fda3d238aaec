// Which CPU a number came from, as lscpu names it: "Intel(R) Xeon(R) Processor (family 6, model 167, stepping 1)".
// The model name alone can be the hypervisor's generic string, and the same string covers several
// microarchitectures; family and model tell them apart (and decide which kernels OpenBLAS auto-detects).
#pragma once

#include <fstream>
#include <string>

namespace kiln::bench {

inline std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name = "unknown CPU", family = "?", model = "?", stepping = "?";
  auto value = [&] {
    const auto colon = line.find(": ");
    return colon == std::string::npos ? std::string() : line.substr(colon + 2);
  };
  while (std::getline(in, line) && !line.empty()) {  // the first processor's block
    if (line.rfind("model name", 0) == 0) name = value();
    else if (line.rfind("cpu family", 0) == 0) family = value();
    else if (line.rfind("model\t", 0) == 0) model = value();
    else if (line.rfind("stepping", 0) == 0) stepping = value();
  }
  return name + " (family " + family + ", model " + model + ", stepping " + stepping + ")";
}

}  // namespace kiln::bench
