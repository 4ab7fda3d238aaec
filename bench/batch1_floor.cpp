// How close batch 1 of tiny (16-32-32-4, ReLU) can come to reading its weights once (issue 15 asks for 1.2x),
// on this CPU: the read itself (stream_bound.hpp, layer order, as goals.py takes it), a hand-written forward
// that is the floor of any kernel (AVX-512, weights packed beforehand, every value in registers, no checks, no
// call around it), and Kiln's model.forward through both backends, each called back to back with the same input
// ("independent": the CPU overlaps one call with the next) and chained (each call's input waits for the last
// output, as in a control loop). The floor's output is checked against Kiln's, so it does all the work.
//
// Each weight of a batch-1 forward feeds one FMA, so reading the weights and multiplying them take about the same
// time wherever a vector FMA per cycle matches the vector loads per cycle (Zen 4: one 512-bit FMA and two 256-bit
// loads a cycle); tiny's weights fit in L1, and the three layers run one after the other.
//
//   build-bench/bench/kiln_batch1_floor
#include "networks.hpp"
#include "timing.hpp"
#include "stream_bound.hpp"

#include <kiln/jit.hpp>
#include <kiln/kiln.hpp>

#include <fmt/format.h>

#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#define KILN_BENCH_X86 1
#endif

namespace nn = kiln::nn;
namespace {

using kiln::bench::networks::tiny;

#ifdef KILN_BENCH_X86
// GCC 12's AVX-512 intrinsics start their results from _mm512_undefined_ps(), a self-initialised variable that
// -Wuninitialized reports wherever they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
// tiny's weights, packed for the floor: w1[k] and w2[k] the k-th input's column (32 outputs), the last layer in
// 8 vectors of 4 inputs x 4 outputs (lane 4 i + o: input 4 c + i, output o).
struct alignas(64) Packed {
  float w1[16][32], b1[32], w2[32][32], b2[32], w3[8][16], b3[16];
};

Packed pack(const kiln::TensorMap& state) {
  Packed p{};
  const kiln::Tensor &w1 = state.at("0.weight"), &w2 = state.at("2.weight"), &w3 = state.at("4.weight");
  const kiln::Tensor &b1 = state.at("0.bias"), &b2 = state.at("2.bias"), &b3 = state.at("4.bias");
  for (int j = 0; j < 32; ++j) {
    for (int k = 0; k < 16; ++k) p.w1[k][j] = w1[j * 16 + k];
    for (int k = 0; k < 32; ++k) p.w2[k][j] = w2[j * 32 + k];
    p.b1[j] = b1[j];
    p.b2[j] = b2[j];
  }
  for (int c = 0; c < 8; ++c)
    for (int i = 0; i < 4; ++i)
      for (int o = 0; o < 4; ++o) p.w3[c][4 * i + o] = w3[o * 32 + 4 * c + i];
  for (int o = 0; o < 4; ++o) p.b3[o] = b3[o];
  return p;
}

// A 32-wide layer (h: its 32 outputs after ReLU) of K inputs, 4 sets of accumulators as Kiln's one-row tiles
// use; its inputs are broadcast from x in memory, or from the 32 values in registers `in` where kFromRegisters.
// No lambdas: they would not inherit the target attribute in a build without AVX-512.
template <int K, bool kFromRegisters>
__attribute__((target("avx512f"), always_inline)) inline void dense32(const float (*w)[32], const float* b,
                                                                       const float* x, const __m512 (&in)[2],
                                                                       __m512 (&h)[2]) {
  __m512 a[4][2];
  a[0][0] = _mm512_load_ps(b);
  a[0][1] = _mm512_load_ps(b + 16);
  for (int s = 1; s < 4; ++s) a[s][0] = a[s][1] = _mm512_setzero_ps();
#pragma GCC unroll 32
  for (int k = 0; k < K; ++k) {
    __m512 v;
    if constexpr (kFromRegisters) v = _mm512_permutexvar_ps(_mm512_set1_epi32(k % 16), in[k / 16]);
    else v = _mm512_set1_ps(x[k]);
    a[k % 4][0] = _mm512_fmadd_ps(v, _mm512_load_ps(w[k]), a[k % 4][0]);
    a[k % 4][1] = _mm512_fmadd_ps(v, _mm512_load_ps(w[k] + 16), a[k % 4][1]);
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int j = 0; j < 2; ++j)
    h[j] = _mm512_max_ps(zero, _mm512_add_ps(_mm512_add_ps(a[0][j], a[1][j]), _mm512_add_ps(a[2][j], a[3][j])));
}

__attribute__((target("avx512f"), noinline)) void floor_forward(const Packed& p, const float* x, float* y) {
  __m512 h1[2], h2[2];
  dense32<16, false>(p.w1, p.b1, x, h1, h1);  // `in` unused
  dense32<32, true>(p.w2, p.b2, nullptr, h1, h2);
  __m512 sum[4] = {_mm512_load_ps(p.b3), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) {
    const int k = (c % 4) * 4;  // lanes 4 i .. 4 i + 3 take input k + i
    const __m512i lanes = _mm512_set_epi32(k + 3, k + 3, k + 3, k + 3, k + 2, k + 2, k + 2, k + 2, k + 1, k + 1, k + 1,
                                           k + 1, k, k, k, k);
    sum[c % 4] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lanes, h2[c / 4]), _mm512_load_ps(p.w3[c]), sum[c % 4]);
  }
  const __m512 t = _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3]));
  const __m256 u = _mm256_add_ps(_mm512_castps512_ps256(t),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
  _mm_storeu_ps(y, _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
}
#pragma GCC diagnostic pop
#endif

struct Timing {
  double independent, chained;
};

// Times `forward` (x -> y) back to back and chained through y[0] (scaled to nothing, so the values stay put).
template <class Forward>
Timing time_calls(float* x, const float* y, Forward&& forward) {
  constexpr int calls = 200000, loops = 10;
  const double independent = kiln::bench::best_us(
      [&] {
        forward();
        asm volatile("" ::: "memory");
      },
      calls, loops);
  const double chained = kiln::bench::best_us(
      [&] {
        forward();
        x[0] = y[0] * 1e-30f + x[0];
      },
      calls, loops);
  return {independent, chained};
}

}  // namespace

int main() {
  kiln::set_num_threads(1);
  kiln::Model model{tiny, 3};
  model.eval();
  kiln::Tensor x({1, 16}), y({1, 4});
  for (kiln::index_t i = 0; i < 16; ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const auto jit = kiln::jit::compile(model);

  const double bytes = static_cast<double>(kiln::parameter_count(tiny)) * sizeof(float);
  const double bound = kiln::bench::stream_read_us(static_cast<std::size_t>(bytes), kiln::bench::Order::layer_order);
  fmt::print("tiny (16-32-32-4, ReLU) at batch 1, one thread: reading its {:.0f} bytes of weights once takes {:.4f} us "
             "(layer order; issue 15's goal: {:.4f})\n", bytes, bound, 1.2 * bound);
  auto report = [&](const char* what, Timing t) {
    fmt::print("  {:<48} {:.4f} us ({:.2f}x the read), chained {:.4f} us ({:.2f}x)\n", what, t.independent,
               t.independent / bound, t.chained, t.chained / bound);
  };
#ifdef KILN_BENCH_X86
  if (__builtin_cpu_supports("avx512f")) {
    const Packed packed = pack(model.state_dict());
    float out[4];
    floor_forward(packed, x.data(), out);
    model.forward(x, y);
    for (int o = 0; o < 4; ++o)
      if (std::abs(out[o] - y[o]) > 1e-5f * (1 + std::abs(y[o]))) {
        fmt::print(stderr, "the floor's output {} is {}, Kiln's {}\n", o, out[o], y[o]);
        return 1;
      }
    report("hand-written floor (registers only, no checks)",
           time_calls(x.data(), out, [&] { floor_forward(packed, x.data(), out); }));
  } else {
    fmt::print("  the hand-written floor needs AVX-512, which this CPU lacks\n");
  }
#endif
  report("Kiln, expression templates: model.forward(x, y)",
         time_calls(x.data(), y.data(), [&] { model.forward(x, y); }));
  report("Kiln, MLIR JIT: kernel.forward(x, y)", time_calls(x.data(), y.data(), [&] { jit.forward(x, y); }));
}
