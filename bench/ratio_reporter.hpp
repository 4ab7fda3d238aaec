// A Google Benchmark reporter that also prints, per case and batch size, each variant's median and its speed
// relative to an anchor variant measured in the same run. Benchmarks are named "<case>/<variant>/<batch>"
// and run with repetitions, so each has a median aggregate (without repetitions, the one run is taken).
//
// Where a benchmark sets a "GFLOP/s" counter, the table also gives each variant's median GFLOP/s; where the
// reporter is given the machine's single-core peak (fma_peak.hpp), also that as a fraction of the peak times
// the benchmark's "threads" counter (1 if it has none). Where benchmarks set an "others" counter (the cores
// other processes kept busy meanwhile, quiet.hpp), the table flags rows measured on a shared machine. The
// table is Markdown, so it can go into a README.
#pragma once

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kiln::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal (a reporter passed to RunSpecifiedBenchmarks does not see --benchmark_color).
  explicit RatioReporter(std::string anchor, double peak_gflops_per_thread = 0)
      : benchmark::ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular),
        anchor_(std::move(anchor)),
        peak_(peak_gflops_per_thread) {}

  // The time to read a network's weights once (stream_bound.hpp), the bound of a batch-1 forward pass, in the
  // best order and in layer order: Finalize then also prints each variant's batch-1 median as a multiple of
  // each, for the cases named "<network>_t<threads>".
  void set_stream_bound(const std::string& network, double best, double layer_order, double bytes) {
    bounds_[network] = {best, layer_order, bytes};
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      // the median of repetitions, or the one run when there are no repetitions
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (!median && !(r.run_type == Run::RT_Iteration && r.repetitions <= 1)) continue;
      // function_name "case/variant", args "batch"
      const std::string& f = r.run_name.function_name;
      const auto slash = f.find('/');
      std::string args = r.run_name.args;
      if (!args.empty() && args[0] == '/') args.erase(0, 1);
      if (slash == std::string::npos || args.empty()) continue;
      const std::string name = f.substr(0, slash), variant = f.substr(slash + 1);
      const long batch = std::strtol(args.c_str(), nullptr, 10);
      Median m{r.GetAdjustedRealTime(), 0, 1};
      if (auto it = r.counters.find("GFLOP/s"); it != r.counters.end()) m.gflops = it->second.value;
      if (auto it = r.counters.find("threads"); it != r.counters.end()) m.threads = it->second.value;
      if (auto it = r.counters.find("others"); it != r.counters.end()) m.others = it->second.value, any_others_ = true;
      if (std::find(cases_.begin(), cases_.end(), name) == cases_.end()) cases_.push_back(name);
      if (variant != anchor_ && std::find(variants_.begin(), variants_.end(), variant) == variants_.end())
        variants_.push_back(variant);
      medians_[{name, batch}][variant] = m;
      unit_ = benchmark::GetTimeUnitString(r.time_unit);
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    if (medians_.empty()) return;
    std::vector<std::string> order{anchor_};
    order.insert(order.end(), variants_.begin(), variants_.end());
    bool any_gflops = false;
    for (const auto& [key, vs] : medians_)
      for (const auto& [v, m] : vs) any_gflops |= m.gflops > 0;

    fmt::print("\nmedians ({}) and speed-up of each variant over {} (x > 1: faster than {}), same run", unit_,
               anchor_, anchor_);
    if (any_gflops && peak_ > 0)
      fmt::print("; GFLOP/s and % of peak (threads x {:.1f} GFLOP/s, the measured single-core FP32 FMA peak)",
                 peak_);
    fmt::print(":\n\n");

    std::vector<std::string> header{"case", "batch"};
    for (const std::string& v : order) {
      header.push_back(fmt::format("{} {}", v, unit_));
      if (v != anchor_) header.push_back(fmt::format("{} x {}", v, anchor_));
    }
    if (any_gflops)
      for (const std::string& v : order) header.push_back(fmt::format("{} GFLOP/s{}", v, peak_ > 0 ? " (% peak)" : ""));
    if (any_others_) header.push_back("others");
    bool busy = false;
    std::vector<std::vector<std::string>> rows;
    for (const std::string& name : cases_)
      for (const auto& [key, vs] : medians_) {
        if (key.first != name) continue;
        std::vector<std::string> row{name, std::to_string(key.second)};
        const auto anchor = vs.find(anchor_);
        for (const std::string& v : order) {
          const auto it = vs.find(v);
          row.push_back(it == vs.end() ? "-" : fmt::format("{:.2f}", it->second.time));
          if (v != anchor_)
            row.push_back(it == vs.end() || anchor == vs.end()
                              ? "-"
                              : fmt::format("{:.2f}", anchor->second.time / it->second.time));
        }
        if (any_gflops)
          for (const std::string& v : order) {
            const auto it = vs.find(v);
            if (it == vs.end() || it->second.gflops <= 0) row.push_back("-");
            else if (peak_ > 0)
              row.push_back(fmt::format("{:.1f} ({:.0f}%)", it->second.gflops,
                                        100 * it->second.gflops / (peak_ * it->second.threads)));
            else row.push_back(fmt::format("{:.1f}", it->second.gflops));
          }
        if (any_others_) {
          double others = 0;
          for (const auto& [v, m] : vs) others = std::max(others, m.others);
          row.push_back(fmt::format("{:.2f}{}", others, others > busy_threshold ? " !" : ""));
          busy |= others > busy_threshold;
        }
        rows.push_back(std::move(row));
      }
    print_table(header, rows);
    if (any_others_)
      fmt::print("\nothers: the cores other processes kept busy during the row's measurements (median over "
                 "repetitions, the most over variants){}\n",
                 busy ? fmt::format("; ! over {}: the machine was shared, those timings are not to be trusted",
                                    busy_threshold)
                      : "");
    print_stream_bounds(order);
  }

 private:
  static constexpr double busy_threshold = 0.1;

  struct Median {
    double time = 0, gflops = 0, threads = 1, others = 0;
  };
  struct Bound {
    double best = 0, layer_order = 0, bytes = 0;
  };

  void print_stream_bounds(const std::vector<std::string>& order) const {
    std::vector<std::vector<std::string>> rows;
    for (const std::string& name : cases_) {
      const auto t = name.rfind("_t");
      const auto bound = t == std::string::npos ? bounds_.end() : bounds_.find(name.substr(0, t));
      const auto batch1 = medians_.find({name, 1});
      if (bound == bounds_.end() || batch1 == medians_.end()) continue;
      const Bound& b = bound->second;
      std::vector<std::string> row{name, fmt::format("{:.3f}", b.bytes / 1e6),
                                   fmt::format("{:.2f} ({:.0f} GB/s)", b.best, b.bytes / b.best / 1e3),
                                   fmt::format("{:.2f} ({:.0f} GB/s)", b.layer_order, b.bytes / b.layer_order / 1e3)};
      for (const std::string& v : order) {
        const auto it = batch1->second.find(v);
        row.push_back(it == batch1->second.end()
                          ? "-"
                          : fmt::format("{:.2f} / {:.2f}", it->second.time / b.best, it->second.time / b.layer_order));
      }
      rows.push_back(std::move(row));
    }
    if (rows.empty()) return;
    fmt::print("\nbatch 1 against reading the network's weights once (stream_bound.hpp, same process), in the best "
               "order and in layer order: each variant's median as a multiple of each\n\n");
    std::vector<std::string> header{"case", "weights MB", fmt::format("read, best order {}", unit_),
                                    fmt::format("read in layer order {}", unit_)};
    for (const std::string& v : order) header.push_back(fmt::format("{} / best, / layer order", v));
    print_table(header, rows);
  }

  static void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width(header.size());
    for (std::size_t c = 0; c < header.size(); ++c) {
      width[c] = header[c].size();
      for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string s = "|";
      for (std::size_t c = 0; c < cells.size(); ++c)
        s += c < 2 ? fmt::format(" {:<{}} |", cells[c], width[c]) : fmt::format(" {:>{}} |", cells[c], width[c]);
      fmt::print("{}\n", s);
    };
    line(header);
    std::string rule = "|";
    for (std::size_t c = 0; c < header.size(); ++c)
      rule += c < 2 ? fmt::format("{:-<{}}|", "", width[c] + 2) : fmt::format("{:-<{}}:|", "", width[c] + 1);
    fmt::print("{}\n", rule);
    for (const auto& row : rows) line(row);
  }

  std::string anchor_, unit_;
  double peak_ = 0;
  bool any_others_ = false;
  std::vector<std::string> cases_, variants_;
  std::map<std::pair<std::string, long>, std::map<std::string, Median>> medians_;
  std::map<std::string, Bound> bounds_;
};

}  // namespace kiln::bench
