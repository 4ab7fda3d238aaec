// A Google Benchmark reporter that also prints, per case and batch size, each variant's median and its speed
// relative to an anchor variant measured in the same run. Benchmarks are named "<case>/<variant>/<batch>"
// and run with repetitions, so each has a median aggregate.
#pragma once

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <map>
#include <string>
#include <vector>

namespace kiln::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  explicit RatioReporter(std::string anchor) : anchor_(std::move(anchor)) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Aggregate || r.aggregate_name != "median") continue;
      const std::string name = r.run_name.function_name + r.run_name.args;  // "case/variant" + "/batch"
      const auto a = name.find('/'), b = name.find('/', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      medians_[name.substr(0, a) + name.substr(b)][name.substr(a + 1, b - a - 1)] = r.GetAdjustedRealTime();
      unit_ = benchmark::GetTimeUnitString(r.time_unit);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    fmt::print("\nmedians ({}) and speed-up of each variant over {} (>1: faster), same run:\n", unit_, anchor_);
    for (const auto& [key, variants] : medians_) {
      const auto anchor = variants.find(anchor_);
      std::string line = fmt::format("  {:<28}", key);
      for (const auto& [variant, t] : variants)
        line += anchor == variants.end() || variant == anchor_
                    ? fmt::format(" {}={:.2f}", variant, t)
                    : fmt::format(" {}={:.2f} (x{:.2f})", variant, t, anchor->second / t);
      fmt::print("{}\n", line);
    }
  }

 private:
  std::string anchor_, unit_;
  std::map<std::string, std::map<std::string, double>> medians_;
};

}  // namespace kiln::bench
