// Kiln's fused kernel against libtorch (PyTorch's C++ frontend) on six networks, in eval mode, with the same
// weights, for batches 1, 32, 256 and 4096 on 1 and 2 threads; Kiln's unfused evaluator for context.
//
//   <case>_t<threads>/<variant>/<batch>, variants:
//     torch    torch::nn::Sequential of the same layers, eval(), under torch::NoGradGuard, called as a user
//              would: seq->forward(x) (libtorch's modules have no out= form; each call allocates its output
//              and temporaries, as in PyTorch)
//     kiln     model.forward(x, y) into a preallocated y
//     jit      kiln::jit::compile(model) (the MLIR backend), kernel.forward(x, y); 1 thread only
//     unfused  model.forward_unfused(x, y): the same per-layer kernels, one layer at a time over the whole
//              batch (what fusion gains); with a Kiln that has no forward_unfused, model.forward_reference(x)
//              (plain loops), and then not at batch 4096
//     onednn   the vendor ceiling (onednn_mlp.hpp): the same layers as oneDNN matmul primitives with the bias
//              and ReLU fused, created once, for the networks that are such a chain (mlp_s, tiny), at batches
//              256 and 4096 where the matrix products dominate; built only when CMake finds oneDNN (Debian:
//              libdnnl-dev), and the program says at start whether it was
//
// Before anything is timed, each network's Kiln and libtorch outputs are compared at every batch and thread
// count (within 1e-4 relative; the program stops otherwise): fused, unfused, and model.forward_reference (plain
// loops, the tests' reference) up to batch 256. The single-core FP32 FMA peak is measured at
// start, and the table gives GFLOP/s (kiln::flops_per_sample x batch / time) as a fraction of it x threads.
// Each measurement also records the cores other processes kept busy meanwhile ("others"; quiet.hpp), and
// KILN_BENCH_WAIT_QUIET=<seconds> makes each wait (up to that long) for a quiet machine first. The CPU, the
// OpenBLAS kernel set libtorch ran on and the oneDNN version go to the output and to the JSON's context
// (bench/run.sh runs the torch variant once per OpenBLAS kernel set and keeps the fastest).
//
//   bench/run.sh   (sets the environment PyTorch wants, see bench/README.md), or by hand:
//   build-bench/bench/kiln_vs_torch --benchmark_filter=_t1/ --benchmark_repetitions=5
#include "cpu_name.hpp"
#include "fma_peak.hpp"
#include "networks.hpp"
#include "quiet.hpp"
#include "ratio_reporter.hpp"
#include "stream_bound.hpp"

#include <kiln/kiln.hpp>
#if __has_include(<kiln/runtime/threads.hpp>)
#include <kiln/runtime/threads.hpp>
#define KILN_BENCH_HAS_THREADS 1
#endif

#if __has_include(<kiln/jit.hpp>) && defined(KILN_BENCH_HAS_JIT)
#include <kiln/jit.hpp>
#define KILN_BENCH_JIT 1
#endif

#ifdef KILN_BENCH_HAS_DNNL
#include "onednn_mlp.hpp"
#endif

#include <torch/torch.h>

#include <dlfcn.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace nn = kiln::nn;

namespace {

constexpr kiln::index_t batches[] = {1, 32, 256, 4096};
constexpr int thread_counts[] = {1, 2};
constexpr kiln::index_t reference_max_batch = 256;  // plain loops run at a few GFLOP/s
// The vendor ceiling is about the matrix products, which dominate from batch 256; below, per-call overheads do.
constexpr kiln::index_t vendor_batches[] = {256, 4096};
constexpr bool is_vendor_batch(kiln::index_t b) { return std::ranges::find(vendor_batches, b) != std::end(vendor_batches); }

template <class M>
constexpr bool has_forward_unfused = requires(M& m, const kiln::Tensor& x, kiln::Tensor& y) { m.forward_unfused(x, y); };

// ---- the networks ----------------------------------------------------------------------------------------------

using namespace kiln::bench::networks;  // Kiln's declarations; libtorch's follow

// torch.nn.RMSNorm (PyTorch 2.4) for libtorch 1.13, which has none: eps = FLT_EPSILON as torch's default for
// float32, and Kiln's.
struct RMSNormImpl : torch::nn::Module {
  explicit RMSNormImpl(std::int64_t features) : weight(register_parameter("weight", torch::ones({features}))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
  }
  torch::Tensor weight;
  double eps = FLT_EPSILON;
};
TORCH_MODULE(RMSNorm);

// python/kiln_nn.py's Residual: y = x + body(x), the body's parameters under "body.".
struct ResidualImpl : torch::nn::Module {
  explicit ResidualImpl(torch::nn::Sequential b) : body(register_module("body", std::move(b))) {}
  torch::Tensor forward(const torch::Tensor& x) { return x + body->forward(x); }
  torch::nn::Sequential body;
};
TORCH_MODULE(Residual);

torch::nn::Sequential torch_resmlp(int blocks) {
  torch::nn::Sequential seq(torch::nn::Linear(64, 256));
  for (int b = 0; b < blocks; ++b)
    seq->push_back(Residual(torch::nn::Sequential(torch::nn::LayerNorm(torch::nn::LayerNormOptions({256})),
                                                  torch::nn::Linear(256, 512), torch::nn::GELU(),
                                                  torch::nn::Linear(512, 256))));
  seq->push_back(torch::nn::Linear(256, 10));
  return seq;
}

torch::nn::Sequential torch_mlp_s() {
  return torch::nn::Sequential(torch::nn::Linear(784, 256), torch::nn::ReLU(), torch::nn::Linear(256, 256),
                               torch::nn::ReLU(), torch::nn::Linear(256, 10), torch::nn::Softmax(1));
}
torch::nn::Sequential torch_mlp_norm() {
  return torch::nn::Sequential(torch::nn::Linear(512, 512), torch::nn::LayerNorm(torch::nn::LayerNormOptions({512})),
                               torch::nn::ReLU(), torch::nn::Dropout(0.5), torch::nn::Linear(512, 512),
                               torch::nn::BatchNorm1d(512), torch::nn::Tanh(), torch::nn::Linear(512, 512),
                               RMSNorm(512), torch::nn::Sigmoid());
}
torch::nn::Sequential torch_tiny() {
  return torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::ReLU(), torch::nn::Linear(32, 32),
                               torch::nn::ReLU(), torch::nn::Linear(32, 4));
}
torch::nn::Sequential torch_bilinear() { return torch::nn::Sequential(torch::nn::Bilinear(64, 48, 32)); }

// Before each measurement, wait up to KILN_BENCH_WAIT_QUIET seconds (default 0: never) for other processes to
// leave the cores alone (quiet.hpp).
kiln::bench::QuietGate quiet_gate{std::getenv("KILN_BENCH_WAIT_QUIET") ? std::atof(std::getenv("KILN_BENCH_WAIT_QUIET")) : 0};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "kiln_vs_torch: %s\n", what.c_str());
  std::exit(1);
}

// ---- threads: Kiln, torch (intra-op), and OpenBLAS (which libtorch's matmuls call here) ---------------------

using openblas_int_fn = void (*)(int);
using openblas_str_fn = char* (*)();
openblas_int_fn openblas_set_threads() {
  return reinterpret_cast<openblas_int_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

// Only when the count changes: resizing Kiln's pool and reconfiguring OpenMP and OpenBLAS costs far more than a
// small forward call.
void set_threads(int n) {
  static int current = 0;
  if (n == current) return;
  current = n;
#ifdef KILN_BENCH_HAS_THREADS
  kiln::set_num_threads(n);
#endif
  torch::set_num_threads(n);
  if (openblas_int_fn f = openblas_set_threads()) f(n);
}

// Which BLAS libtorch's matmuls go to: OpenBLAS (and its kernel set), or something else (Debian's reference
// BLAS, which is ~40x slower for these sizes).
std::string blas_description() {
  auto config = reinterpret_cast<openblas_str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto core = reinterpret_cast<openblas_str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!config || !core) return "not OpenBLAS (no openblas_get_config): probably the reference BLAS";
  return fmt::format("{}; kernels for {}", config(), core());
}

// The OpenBLAS kernel set libtorch runs on, as bench/run.sh labels its configurations: the core's name, with
// "(auto)" when OpenBLAS picked it itself (OPENBLAS_CORETYPE unset).
std::string blas_kernels() {
  auto core = reinterpret_cast<openblas_str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!core) return "not OpenBLAS";
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  return forced && *forced ? std::string(core()) : fmt::format("{} (auto)", core());
}

std::string onednn_description() {
#ifdef KILN_BENCH_HAS_DNNL
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("oneDNN {}.{}.{}", v->major, v->minor, v->patch);
#else
  return "not built (CMake did not find oneDNN; Debian: libdnnl-dev): no vendor-ceiling variant";
#endif
}

#ifdef KILN_BENCH_HAS_DNNL
// The network as a chain of dense layers for oneDNN, when it is one: Linear layers, each optionally followed
// by a ReLU, and at most a Softmax over dim 1 at the end. Other networks (norms, Bilinear, residuals) get no
// vendor variant: their time is not mostly matrix products.
std::optional<kiln::bench::DenseChain> dense_chain(const torch::nn::Sequential& seq) {
  kiln::bench::DenseChain chain;
  const auto modules = seq->children();
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const bool follows_linear = !chain.layers.empty() && !chain.layers.back().relu && !chain.softmax;
    if (auto* linear = modules[i]->as<torch::nn::Linear>(); linear && !chain.softmax)
      chain.layers.push_back({linear->weight.data_ptr<float>(), linear->bias.data_ptr<float>(),
                              linear->options.in_features(), linear->options.out_features(), false});
    else if (modules[i]->as<torch::nn::ReLU>() && follows_linear) chain.layers.back().relu = true;
    else if (auto* softmax = modules[i]->as<torch::nn::Softmax>();
             softmax && softmax->options.dim() == 1 && !chain.layers.empty() && i + 1 == modules.size())
      chain.softmax = true;
    else return std::nullopt;
  }
  if (chain.layers.empty()) return std::nullopt;
  return chain;
}
#endif

// ---- one network in both frameworks ---------------------------------------------------------------------------

template <class Net>
struct Case {
  std::string name;
  const Net& net;
  kiln::Model<Net> model;
  torch::nn::Sequential seq;
  // Per batch: inputs (the same numbers in both frameworks' tensors) and Kiln's output.
  std::map<kiln::index_t, std::vector<kiln::Tensor>> kx;
  std::map<kiln::index_t, std::vector<torch::Tensor>> tx;
  std::map<kiln::index_t, kiln::Tensor> ky;
#ifdef KILN_BENCH_JIT
  // The MLIR backend's kernel of the same model (single-threaded: the jit variant runs on 1 thread only).
  std::optional<kiln::jit::Kernel<Net>> jit;
  std::map<kiln::index_t, kiln::Tensor> jy;
  void jit_forward(kiln::index_t b) {
    if constexpr (inputs == 1) jit->forward(kx[b][0], jy[b]);
    else jit->forward(kx[b][0], kx[b][1], jy[b]);
  }
#endif

#ifdef KILN_BENCH_HAS_DNNL
  // The vendor ceiling, where the network is a dense chain (dense_chain); its outputs per vendor batch.
  std::optional<kiln::bench::DenseChain> chain;
  std::map<kiln::index_t, kiln::Tensor> vy;
  std::string onednn_implementation;
  double onednn_worst = 0;  // oneDNN against torch, relative (check_onednn)
#endif

  static constexpr int inputs = kiln::network_traits<Net>::input_count;

  Case(std::string n, const Net& network, torch::nn::Sequential s, std::uint64_t seed)
      : name(std::move(n)), net(network), model(network, seed), seq(std::move(s)) {
    give_norms_nontrivial_values(seed);
    copy_weights_to_torch();
    model.eval();
    seq->eval();
#ifdef KILN_BENCH_HAS_DNNL
    if constexpr (inputs == 1) chain = dense_chain(seq);
#endif
    std::mt19937 rng(static_cast<std::uint32_t>(seed) + 1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (kiln::index_t b : batches) {
      for (int i = 0; i < inputs; ++i) {
        const kiln::Dims d = i == 0 ? kiln::network_traits<Net>::input_dims : kiln::network_traits<Net>::input2_dims;
        kiln::Shape shape{b};
        for (int k = 0; k < d.rank; ++k) shape.push_back(d.sizes[k]);
        kiln::Tensor t(shape);
        for (float& v : t.values()) v = u(rng);
        tx[b].push_back(torch::from_blob(t.data(), std::vector<std::int64_t>(shape.begin(), shape.end()),
                                         torch::kFloat32)
                            .clone());
        kx[b].push_back(std::move(t));
      }
      kiln::Shape out{b};
      const kiln::Dims d = kiln::network_traits<Net>::output_dims;
      for (int k = 0; k < d.rank; ++k) out.push_back(d.sizes[k]);
      ky[b] = kiln::Tensor(out);
#ifdef KILN_BENCH_JIT
      jy[b] = kiln::Tensor(out);
#endif
#ifdef KILN_BENCH_HAS_DNNL
      if (chain && is_vendor_batch(b)) vy[b] = kiln::Tensor(out);
#endif
    }
#ifdef KILN_BENCH_JIT
    jit.emplace(kiln::jit::compile(model));
#endif
  }

  // Norm weights and biases start at ones and zeros, and BatchNorm's running stats at 0 and 1: draw them
  // instead, so that a mix-up between them (or a missed copy) shows in the outputs.
  void give_norms_nontrivial_values(std::uint64_t seed) {
    kiln::TensorMap sd = model.state_dict();
    std::mt19937 rng(static_cast<std::uint32_t>(seed));
    auto ends_with = [](const std::string& s, std::string_view suffix) {
      return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    for (auto& [key, t] : sd) {
      if (t.dtype() != kiln::DType::float32 || t.numel() == 0) continue;
      const auto v = t.values();
      if (!std::all_of(v.begin(), v.end(), [&](float x) { return x == v[0]; })) continue;  // drawn already
      std::uniform_real_distribution<float> u = ends_with(key, "running_var") ? std::uniform_real_distribution<float>(0.5f, 2.0f)
                                                : v[0] == 1.0f ? std::uniform_real_distribution<float>(0.5f, 1.5f)
                                                               : std::uniform_real_distribution<float>(-0.5f, 0.5f);
      for (float& x : v) x = u(rng);
    }
    model.load_state_dict(sd);
  }

  // Every torch parameter and buffer from Kiln's state_dict, by name; each Kiln entry must be used once.
  void copy_weights_to_torch() {
    const kiln::TensorMap sd = model.state_dict();
    std::set<std::string> used;
    torch::NoGradGuard no_grad;
    auto copy = [&](const std::string& key, torch::Tensor& dst) {
      const auto it = sd.find(key);
      if (it == sd.end()) fail(fmt::format("{}: torch has {} but Kiln's state_dict does not", name, key));
      const kiln::Tensor& src = it->second;
      const std::vector<std::int64_t> shape(src.shape().begin(), src.shape().end());
      if (dst.sizes().vec() != shape)
        fail(fmt::format("{}: {} is {} in Kiln but {} in torch", name, key, kiln::shape_text(src.shape()),
                         fmt::join(dst.sizes().vec(), ", ")));
      if (src.dtype() == kiln::DType::int64)
        dst.copy_(torch::from_blob(const_cast<std::int64_t*>(src.data_i64()), shape, torch::kInt64));
      else dst.copy_(torch::from_blob(const_cast<float*>(src.data()), shape, torch::kFloat32));
      used.insert(key);
    };
    for (auto& p : seq->named_parameters(true)) copy(p.key(), p.value());
    for (auto& b : seq->named_buffers(true)) copy(b.key(), b.value());
    for (const auto& [key, t] : sd)
      if (!used.count(key)) fail(fmt::format("{}: Kiln's {} has no counterpart in torch", name, key));
  }

  torch::Tensor torch_forward(kiln::index_t b) {
    return inputs == 1 ? seq->forward(tx[b][0]) : seq->forward(tx[b][0], tx[b][1]);
  }
  void kiln_forward(kiln::index_t b) {
    if constexpr (inputs == 1) model.forward(kx[b][0], ky[b]);
    else model.forward(kx[b][0], kx[b][1], ky[b]);
  }
  static constexpr bool unfused_is_reference = !has_forward_unfused<kiln::Model<Net>>;
  static constexpr kiln::index_t unfused_max_batch = unfused_is_reference ? reference_max_batch : 4096;
  kiln::Tensor reference_forward(kiln::index_t b) {
    if constexpr (inputs == 1) return model.forward_reference(kx[b][0]);
    else if constexpr (requires { model.forward_reference(kx[b][0], kx[b][1]); })
      return model.forward_reference(kx[b][0], kx[b][1]);
    else return model.forward_reference(kx[b][0], &kx[b][1]);  // a Kiln before the two-input overload
  }
  // Into a preallocated y where the API allows (forward_unfused), else a new tensor.
  const kiln::Tensor& unfused_forward(kiln::index_t b, kiln::Tensor& y) {
    if constexpr (unfused_is_reference) {
      y = reference_forward(b);
    } else {
      if constexpr (inputs == 1) model.forward_unfused(kx[b][0], y);
      else model.forward_unfused(kx[b][0], kx[b][1], y);
    }
    return y;
  }

  // |kiln - torch| <= 1e-4 * max(|torch|, 1e-2 * max |torch|) everywhere (the floor keeps values that cancel
  // to near 0 from failing on rounding noise).
  static double worst_relative_error(const float* k, const torch::Tensor& t, const std::string& what) {
    const torch::Tensor tc = t.contiguous();
    const float* r = tc.data_ptr<float>();
    const std::int64_t n = tc.numel();
    double scale = 0, worst = 0;
    for (std::int64_t i = 0; i < n; ++i) scale = std::max(scale, std::abs(static_cast<double>(r[i])));
    for (std::int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(k[i]) || !std::isfinite(r[i])) fail(fmt::format("{}: non-finite output at {}", what, i));
      const double e = std::abs(static_cast<double>(k[i]) - r[i]) / std::max({std::abs(static_cast<double>(r[i])), 1e-2 * scale, 1e-30});
      worst = std::max(worst, e);
    }
    return worst;
  }

  // Kiln (fused, and unfused where it is benchmarked) against torch, at every batch and thread count.
  void check_agreement() {
    torch::NoGradGuard no_grad;
    double worst = 0;
    for (int threads : thread_counts)
      for (kiln::index_t b : batches) {
        set_threads(threads);
        const torch::Tensor ref = torch_forward(b);
        kiln_forward(b);
        const std::string what = fmt::format("{} batch {} threads {}", name, b, threads);
        if (ref.sizes().vec() != std::vector<std::int64_t>(ky[b].shape().begin(), ky[b].shape().end()))
          fail(fmt::format("{}: output shapes differ", what));
        const double e = worst_relative_error(ky[b].data(), ref, what + " (kiln)");
        if (e > 1e-4) fail(fmt::format("{}: Kiln and torch disagree: {:.3g} relative (> 1e-4); weights copied wrong?", what, e));
        worst = std::max(worst, e);
#ifdef KILN_BENCH_JIT
        jit_forward(b);
        const double ej = worst_relative_error(jy[b].data(), ref, what + " (jit)");
        if (ej > 1e-4) fail(fmt::format("{}: Kiln's JIT kernel and torch disagree: {:.3g} relative", what, ej));
        worst = std::max(worst, ej);
#endif
        if (b <= unfused_max_batch) {
          kiln::Tensor u(ky[b].shape());
          const double eu = worst_relative_error(unfused_forward(b, u).data(), ref, what + " (unfused)");
          if (eu > 1e-4) fail(fmt::format("{}: Kiln's unfused path and torch disagree: {:.3g} relative", what, eu));
          worst = std::max(worst, eu);
        }
        if (b <= reference_max_batch) {
          const kiln::Tensor r = reference_forward(b);
          const double er = worst_relative_error(r.data(), ref, what + " (reference)");
          if (er > 1e-4) fail(fmt::format("{}: Kiln's reference evaluator and torch disagree: {:.3g} relative", what, er));
          worst = std::max(worst, er);
        }
#ifdef KILN_BENCH_HAS_DNNL
        if (chain && is_vendor_batch(b)) check_onednn(b, ref, what);
#endif
      }
    fmt::print("{}: Kiln (fused, unfused, reference, jit) == torch within {:.2g} relative at batches 1-4096, 1 and 2 "
               "threads\n", name, worst);
#ifdef KILN_BENCH_HAS_DNNL
    if (chain)
      fmt::print("{}: oneDNN runs it as {} matmuls with fused bias, {} of them with a fused ReLU{} ({}); == torch "
                 "within {:.2g} relative at batches 256 and 4096, 1 and 2 threads\n",
                 name, chain->layers.size(), std::ranges::count_if(chain->layers, &kiln::bench::DenseLayer::relu),
                 chain->softmax ? ", then a softmax" : "", onednn_implementation, onednn_worst);
#endif
  }

#ifdef KILN_BENCH_HAS_DNNL
  // oneDNN's chain, created under the current thread count, against torch's output `ref` (the same bound).
  void check_onednn(kiln::index_t b, const torch::Tensor& ref, const std::string& what) {
    kiln::bench::OneDnnMlp mlp(*chain, b);
    mlp.forward(kx[b][0].data(), vy[b].data());
    onednn_implementation = mlp.implementation();
    const double e = worst_relative_error(vy[b].data(), ref, what + " (onednn)");
    if (e > 1e-4) fail(fmt::format("{}: oneDNN and torch disagree: {:.3g} relative", what, e));
    onednn_worst = std::max(onednn_worst, e);
  }
#endif

  // One benchmark, its thread count already set: a quiet machine awaited (KILN_BENCH_WAIT_QUIET), `body` timed,
  // and the counters: GFLOP/s, threads, and the cores other processes kept busy meanwhile ("others").
  template <class Body>
  void measure(benchmark::State& state, int threads, Body body) {
    quiet_gate();
    // Warm-up, untimed (Google Benchmark 1.7 has none): at least 2 calls, up to 50 ms. The first calls after a
    // change of thread count, or after other work, can take milliseconds (thread wake-up, OpenBLAS buffers).
    const auto warm_start = std::chrono::steady_clock::now();
    for (int i = 0; i < 2 || (i < 1000 && std::chrono::steady_clock::now() - warm_start < std::chrono::milliseconds(50)); ++i)
      body();
    const kiln::bench::CpuSample before = kiln::bench::sample_cpu();
    for (auto _ : state) body();
    const double others = kiln::bench::others_cores(before, kiln::bench::sample_cpu());
    // GFLOP per iteration, as a rate: GFLOP/s
    state.counters["GFLOP/s"] =
        benchmark::Counter(static_cast<double>(kiln::flops_per_sample(net)) * static_cast<double>(state.range(0)) * 1e-9,
                           benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = threads;
    state.counters["others"] = others;
  }

  // One benchmark <name>_t<threads>/<variant>/<batch>; make_body(batch) runs once, untimed, and returns what
  // measure() times.
  template <class MakeBody>
  void add(const std::string& variant, int threads, kiln::index_t b, MakeBody make_body) {
    benchmark::RegisterBenchmark(fmt::format("{}_t{}/{}", name, threads, variant).c_str(),
                                 [this, threads, make_body](benchmark::State& state) {
                                   torch::NoGradGuard no_grad;
                                   // before make_body: oneDNN plans a primitive's work for the threads it is
                                   // created under
                                   set_threads(threads);
                                   measure(state, threads, make_body(state.range(0)));
                                 })
        ->Arg(b)
        ->Unit(benchmark::kMicrosecond);
  }

  void register_benchmarks() {
    for (int threads : thread_counts)
      for (kiln::index_t b : batches) {
        add("torch", threads, b, [this](kiln::index_t batch) {
          return [this, batch] {
            torch::Tensor y = torch_forward(batch);
            benchmark::DoNotOptimize(y.data_ptr());
          };
        });
        add("kiln", threads, b, [this](kiln::index_t batch) {
          return [this, batch] {
            kiln_forward(batch);
            benchmark::DoNotOptimize(ky[batch].data());
            benchmark::ClobberMemory();
          };
        });
#ifdef KILN_BENCH_JIT
        if (threads == 1)
          add("jit", threads, b, [this](kiln::index_t batch) {
            return [this, batch] {
              jit_forward(batch);
              benchmark::DoNotOptimize(jy[batch].data());
              benchmark::ClobberMemory();
            };
          });
#endif
        if (b <= unfused_max_batch)
          add("unfused", threads, b, [this](kiln::index_t batch) {
            return [this, batch, y = kiln::Tensor(ky[batch].shape())]() mutable {
              benchmark::DoNotOptimize(unfused_forward(batch, y).data());
              benchmark::ClobberMemory();
            };
          });
#ifdef KILN_BENCH_HAS_DNNL
        if (chain && is_vendor_batch(b))
          add("onednn", threads, b, [this](kiln::index_t batch) {
            return [this, batch, mlp = kiln::bench::OneDnnMlp(*chain, batch)]() mutable {
              mlp.forward(kx[batch][0].data(), vy[batch].data());
              benchmark::DoNotOptimize(vy[batch].data());
              benchmark::ClobberMemory();
            };
          });
#endif
      }
  }

};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  at::set_num_interop_threads(1);
  torch::manual_seed(0);
#ifndef KILN_BENCH_HAS_THREADS
  fmt::print("note: this Kiln has no kiln::set_num_threads; its _t2 numbers are on its default threads\n");
#endif
  // Which machine and libraries every number below comes from; also in the JSON output's context.
  const std::string cpu = kiln::bench::cpu_name();
  fmt::print("CPU: {}\n", cpu);
  fmt::print("libtorch {}; BLAS: {}\n", TORCH_VERSION, blas_description());
  fmt::print("oneDNN (the vendor ceiling): {}\n", onednn_description());
  benchmark::AddCustomContext("cpu", cpu);
  benchmark::AddCustomContext("blas_kernels", blas_kernels());
  benchmark::AddCustomContext("onednn", onednn_description());
  const char* env = std::getenv("OPENBLAS_NUM_THREADS");
  fmt::print("OPENBLAS_NUM_THREADS={} OPENBLAS_CORETYPE={} GLIBC_TUNABLES={}\n", env ? env : "(unset)",
             std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)",
             std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)");
  const kiln::bench::FmaPeak peak = kiln::bench::measure_fma_peak();
  fmt::print("single-core FP32 FMA peak: {:.1f} GFLOP/s ({})\n", peak.gflops, peak.isa);
  benchmark::AddCustomContext("fma_peak_gflops", fmt::format("{:.2f}", peak.gflops));  // for bench/goals.py

  // Cases live until the benchmarks have run (the registered lambdas point into them).
  Case<std::remove_cvref_t<decltype(mlp_s)>> c_mlp_s{"mlp_s", mlp_s, torch_mlp_s(), 1};
  Case<std::remove_cvref_t<decltype(mlp_norm)>> c_mlp_norm{"mlp_norm", mlp_norm, torch_mlp_norm(), 2};
  Case<std::remove_cvref_t<decltype(tiny)>> c_tiny{"tiny", tiny, torch_tiny(), 3};
  Case<std::remove_cvref_t<decltype(bilinear)>> c_bilinear{"bilinear", bilinear, torch_bilinear(), 4};
  c_mlp_s.check_agreement();
  c_mlp_norm.check_agreement();
  c_tiny.check_agreement();
  c_bilinear.check_agreement();
  Case<std::remove_cvref_t<decltype(resmlp)>> c_resmlp{"resmlp", resmlp, torch_resmlp(2), 5};
  Case<std::remove_cvref_t<decltype(resmlp6)>> c_resmlp6{"resmlp6", resmlp6, torch_resmlp(6), 6};
  c_resmlp.check_agreement();
  c_resmlp6.check_agreement();
  c_mlp_s.register_benchmarks();
  c_mlp_norm.register_benchmarks();
  c_tiny.register_benchmarks();
  c_bilinear.register_benchmarks();
  c_resmlp.register_benchmarks();
  c_resmlp6.register_benchmarks();

  kiln::bench::RatioReporter reporter("torch", peak.gflops);
  // Batch 1 reads every weight once: the time to read them is its bound (stream_bound.hpp: in the best order,
  // and in layer order, which is what a forward pass can do where the weights outgrow L2).
  auto stream_bound = [&](const char* name, const auto& net) {
    const double bytes = static_cast<double>(kiln::parameter_count(net)) * sizeof(float);
    using kiln::bench::Order;
    const double best = kiln::bench::stream_read_us(static_cast<std::size_t>(bytes), Order::best);
    const double layer_order = kiln::bench::stream_read_us(static_cast<std::size_t>(bytes), Order::layer_order);
    fmt::print("{}: reading its {:.3f} MB of weights once takes {:.2f} us in the best order ({:.0f} GB/s), {:.2f} us "
               "in layer order\n", name, bytes / 1e6, best, bytes / best / 1e3, layer_order);
    reporter.set_stream_bound(name, best, layer_order, bytes);
    benchmark::AddCustomContext(fmt::format("stream_bound_us/{}", name),
                                fmt::format("{:.4f} {:.4f}", best, layer_order));
  };
  stream_bound("mlp_s", mlp_s);
  stream_bound("mlp_norm", mlp_norm);
  stream_bound("tiny", tiny);
  stream_bound("bilinear", bilinear);
  stream_bound("resmlp", resmlp);
  stream_bound("resmlp6", resmlp6);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
