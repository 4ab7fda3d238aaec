// The MLIR backend's compile times for the MNIST-sized MLP (784-256-256-10), in the three ways a program
// meets them: a cold compile (no cache), a second compile in the same process (the in-process cache), and
// a new process that finds the kernel in the on-disk cache (timed from main() to a kernel ready to call, and
// as the whole process seen from outside). Then the cold compile of a 13-layer, 512-wide network with every
// normalisation, and where its time goes: the ladder of kiln::mlir::lower run to each stage (both modes on one
// thread) against the JIT's compile (LLVM's work for the two modes on two threads).
//
//   build-bench/bench/kiln_jit_compile_time [repetitions]
#include "../codegen/mlir/tools/sample_networks.hpp"
#include "timing.hpp"

#include <kiln/jit.hpp>
#include <kiln/mlir/compiler.hpp>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace nn = kiln::nn;

namespace {

constexpr nn::Sequential mnist_mlp{kiln::input<784>, nn::Linear<784, 256>{}, nn::ReLU{}, nn::Linear<256, 256>{},
                                   nn::ReLU{}, nn::Linear<256, 10>{}};

// The 13-layer, 512-wide network (kiln-mlir knows it as `wide`).
constexpr const auto& wide = kiln::samples::wide_network;

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

using kiln::bench::median;

kiln::jit::Options options(const std::filesystem::path& dir, bool disk, bool memory = false) {
  kiln::jit::Options o;
  o.cache_dir = dir;
  o.use_disk_cache = disk;
  o.use_memory_cache = memory;
  return o;
}

// The wide network: its cold JIT compile, and lower() to each stage of the ladder (each run starts from the
// network again, so a stage's time includes the ones before it).
void print_wide_network(int reps, const std::filesystem::path& dir) {
  kiln::Model model{wide, 1};
  const kiln::ir::Network net = kiln::ir::describe(model.network());
  const kiln::mlir::Stage stages[] = {kiln::mlir::Stage::mlir, kiln::mlir::Stage::linalg,
                                      kiln::mlir::Stage::llvm_dialect, kiln::mlir::Stage::llvm_ir,
                                      kiln::mlir::Stage::obj};
  std::vector<double> cold;
  std::vector<std::vector<double>> ladder(std::size(stages));
  for (int r = 0; r < reps; ++r) {
    std::filesystem::remove_all(dir);
    auto t = Clock::now();
    auto kernel = kiln::jit::compile(model, options(dir, false));
    cold.push_back(ms_since(t));
    for (std::size_t s = 0; s < std::size(stages); ++s) {
      t = Clock::now();
      (void)kiln::mlir::lower(net, "wide", stages[s]);
      ladder[s].push_back(ms_since(t));
    }
  }
  std::filesystem::remove_all(dir);
  fmt::print("13 layers, 512 wide (Linear, LayerNorm, GELU, Dropout, BatchNorm1d, ReLU, RMSNorm, SiLU, Tanh), median of {}\n",
             reps);
  fmt::print("  cold compile (MLIR -> LLVM -> objects -> linked)  {:8.2f} ms\n", median(cold));
  const char* names[] = {"build the mlir functions", "+ linalg passes (fuse, bufferize, tile)",
                         "+ lower to the LLVM dialect", "+ translate, LLVM O3 (one thread)",
                         "+ LLVM codegen to an object (one thread)"};
  for (std::size_t s = 0; s < std::size(stages); ++s)
    fmt::print("  lower() to {:<41} {:8.2f} ms\n", names[s], median(ladder[s]));
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = Clock::now();
  kiln::Model model{mnist_mlp, 1};
  model.eval();
  if (argc == 3 && std::string(argv[1]) == "--from-disk") {  // the child: a new process with a warm disk cache
    auto kernel = kiln::jit::compile(model, options(argv[2], true, true));
    const double ready = ms_since(start);
    if (kernel.origin() != kiln::mlir::Origin::disk_cache) return 3;
    kiln::Tensor x({1, 784});
    x.fill(0.5f);
    (void)kernel(x);
    fmt::print("{}\n", ready);
    return 0;
  }
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("kiln-compile-time-{}", ::getpid());
  std::vector<double> cold, memory, disk_main, disk_process;
  for (int r = 0; r < reps; ++r) {
    std::filesystem::remove_all(dir);
    // Cold: nothing cached. The first repetition also pays for MLIR's one-time set-up in this process.
    auto t = Clock::now();
    auto a = kiln::jit::compile(model, options(dir, true));
    cold.push_back(ms_since(t));
    if (a.origin() != kiln::mlir::Origin::compiled) return 1;
    if (r == 0) (void)kiln::jit::compile(model, options(dir, false, true));  // into the in-process cache
    t = Clock::now();
    auto b = kiln::jit::compile(model, options(dir, false, true));
    memory.push_back(ms_since(t));
    if (b.origin() != kiln::mlir::Origin::memory_cache) return 1;
    // A new process, with the kernel on disk.
    std::fflush(stdout);
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    t = Clock::now();
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], STDOUT_FILENO);
      execl("/proc/self/exe", argv[0], "--from-disk", dir.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    char buf[64] = {};
    const ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    disk_process.push_back(ms_since(t));
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fmt::print("the child process did not find the kernel in the disk cache\n");
      return 1;
    }
    disk_main.push_back(std::stod(buf));
  }
  std::filesystem::remove_all(dir);
  fmt::print("MNIST MLP 784-256-256-10, median of {} (first cold compile: {:.1f} ms)\n", reps, cold.front());
  fmt::print("  cold compile (MLIR -> LLVM -> object -> linked)   {:8.2f} ms\n", median(std::vector<double>(cold.begin() + (reps > 1), cold.end())));
  fmt::print("  second compile, same process (in-process cache)  {:8.4f} ms\n", median(memory));
  fmt::print("  new process, kernel on disk: main() to ready     {:8.2f} ms\n", median(disk_main));
  fmt::print("  new process, kernel on disk: whole process       {:8.2f} ms\n", median(disk_process));
  print_wide_network(reps, dir);
}
