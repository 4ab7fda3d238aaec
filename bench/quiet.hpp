// Other processes' CPU use while a benchmark runs, for benchmarks on a shared machine: on 2 cores, one compile
// beside a 2-thread benchmark changes its time many-fold (and a spinning OpenMP or OpenBLAS worker that loses
// its core, far more). Linux only (/proc); elsewhere everything reads as quiet.
//
//   kiln::bench::QuietGate gate{seconds};            // gate() before a measurement: wait (up to) for quiet
//   const auto before = kiln::bench::sample_cpu();
//   ... measure ...
//   double others = kiln::bench::others_cores(before, kiln::bench::sample_cpu());   // cores others kept busy
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace kiln::bench {

struct CpuSample {
  long long busy = 0;  // every CPU's non-idle jiffies (steal included: the hypervisor's other guests)
  long long self = 0;  // this process's (all its threads) user + system jiffies
  std::chrono::steady_clock::time_point when = std::chrono::steady_clock::now();
};

inline CpuSample sample_cpu() {
  CpuSample s;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  long long v[8] = {};  // user nice system idle iowait irq softirq steal
  if (stat >> cpu && cpu == "cpu")
    for (long long& x : v) stat >> x;
  s.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  std::ifstream self("/proc/self/stat");
  std::string line;
  if (std::getline(self, line)) {
    // after "pid (comm) ": state is field 3; utime and stime are fields 14 and 15
    std::istringstream fields(line.substr(std::min(line.size(), line.rfind(')') + 2)));
    std::string skip;
    for (int f = 3; f < 14; ++f) fields >> skip;
    long long utime = 0, stime = 0;
    fields >> utime >> stime;
    s.self = utime + stime;
  }
  s.when = std::chrono::steady_clock::now();
  return s;
}

// Cores' worth of CPU that other processes used between two samples.
inline double others_cores(const CpuSample& a, const CpuSample& b) {
  const double wall = std::chrono::duration<double>(b.when - a.when).count();
  if (wall <= 0) return 0;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return std::max(0.0, static_cast<double>((b.busy - a.busy) - (b.self - a.self)) / hz / wall);
}

// Waits until others use under `threshold` cores over `sample` seconds, or until `max_seconds` have passed;
// returns what others used in the last sample.
inline double wait_for_quiet(double max_seconds, double threshold = 0.1, double sample = 0.3) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const CpuSample a = sample_cpu();
    std::this_thread::sleep_for(std::chrono::duration<double>(sample));
    const double others = others_cores(a, sample_cpu());
    if (others < threshold ||
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= max_seconds)
      return others;
  }
}

// wait_for_quiet before a measurement, at most once every `interval` seconds (Google Benchmark calls a
// benchmark function several times per repetition); max_wait = 0: never waits.
class QuietGate {
 public:
  explicit QuietGate(double max_wait, double interval = 3) : max_wait_(max_wait), interval_(interval) {}
  void operator()() {
    if (max_wait_ <= 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (checked_ && std::chrono::duration<double>(now - last_).count() < interval_) return;
    wait_for_quiet(max_wait_);
    checked_ = true;
    last_ = std::chrono::steady_clock::now();
  }

 private:
  double max_wait_, interval_;
  bool checked_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace kiln::bench
