// Linear's forward: y = x W^T + b on a tile of rows, as a register-blocked micro-kernel.
//
// The weight [Out, In] (PyTorch's layout) is packed once, when the model's parameters change, into blocks of
// simd_width outputs: packed[block][i][lane] = W[block * simd_width + lane][i] (zero past Out). The micro-kernel
// keeps kRows x kBlocks accumulator vectors in registers; per input feature it loads kBlocks weight vectors
// and broadcasts one x per row, so every weight load feeds kRows FMAs. The bias initialises the accumulators.
#pragma once

#include <kiln/dsl/layers/linear.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/simd.hpp>

#include <algorithm>

namespace kiln::et {

inline constexpr index_t linear_blocks(index_t out) { return (out + simd_width - 1) / simd_width; }
inline constexpr index_t linear_packed_size(index_t in, index_t out) { return linear_blocks(out) * in * simd_width; }

inline void pack_linear_weight(const float* w, index_t in, index_t out, float* packed) {
  for (index_t b = 0; b < linear_blocks(out); ++b)
    for (index_t i = 0; i < in; ++i)
      for (index_t lane = 0; lane < simd_width; ++lane) {
        const index_t o = b * simd_width + lane;
        packed[(b * in + i) * simd_width + lane] = o < out ? w[o * in + i] : 0.0f;
      }
}

// kRows rows x kBlocks output blocks, starting at output block `block0`. The sum over the inputs runs in
// chunks of kChunk: each chunk starts from zero and is then added to the total, so rounding errors grow
// with the chunk length rather than with In (a 784-wide layer stays within PyTorch's 1e-5 after a
// train-mode BatchNorm amplifies them).
#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that output offsets could overflow for 2^59 blocks; layer sizes are far below that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
template <int kRows, int kBlocks>
inline void linear_micro_kernel(const float* x, index_t in, index_t out, const float* packed, const float* bias,
                                float* y, index_t block0) {
  constexpr index_t kChunk = 64;
  vfloat total[kRows][kBlocks];
  for (int k = 0; k < kBlocks; ++k) {
    vfloat b{};
    if (bias) {
      const index_t o0 = block0 * simd_width + k * simd_width;
      if (o0 + simd_width <= out) b = load(bias + o0);
      else
        for (index_t lane = 0; lane < simd_width && o0 + lane < out; ++lane) b[lane] = bias[o0 + lane];
    }
    for (int r = 0; r < kRows; ++r) total[r][k] = b;
  }
  const float* wp = packed + block0 * in * simd_width;
  for (index_t i0 = 0; i0 < in; i0 += kChunk) {
    const index_t i1 = std::min(in, i0 + kChunk);
    vfloat acc[kRows][kBlocks] = {};
    for (index_t i = i0; i < i1; ++i) {
      vfloat w[kBlocks];
      for (int k = 0; k < kBlocks; ++k) w[k] = load(wp + (k * in + i) * simd_width);
      for (int r = 0; r < kRows; ++r) {
        const vfloat xr = broadcast(x[r * in + i]);
        for (int k = 0; k < kBlocks; ++k) acc[r][k] += xr * w[k];
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int k = 0; k < kBlocks; ++k) total[r][k] += acc[r][k];
  }
  for (int k = 0; k < kBlocks; ++k) {
    const index_t o0 = (block0 + k) * simd_width;
    for (int r = 0; r < kRows; ++r) {
      if (o0 + simd_width <= out) store(y + r * out + o0, total[r][k]);
      else
        for (index_t lane = 0; lane < simd_width && o0 + lane < out; ++lane) y[r * out + o0 + lane] = total[r][k][lane];
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// y[rows, out] = x[rows, in] W^T + b, with W packed by pack_linear_weight.
inline void linear_forward(const float* x, index_t rows, index_t in, index_t out, const float* packed,
                           const float* bias, float* y) {
  constexpr int kRows = 4;
  constexpr int kBlocks = simd_width == 16 ? 4 : 2;  // keeps kRows * kBlocks accumulators within the registers
  const index_t blocks = linear_blocks(out);
  auto row_group = [&]<int R>(const float* xr, float* yr) {
    index_t b = 0;
    for (; b + kBlocks <= blocks; b += kBlocks) linear_micro_kernel<R, kBlocks>(xr, in, out, packed, bias, yr, b);
    for (; b < blocks; ++b) linear_micro_kernel<R, 1>(xr, in, out, packed, bias, yr, b);
  };
  index_t r = 0;
  for (; r + kRows <= rows; r += kRows) row_group.template operator()<kRows>(x + r * in, y + r * out);
  for (; r < rows; ++r) row_group.template operator()<1>(x + r * in, y + r * out);
}

// The plain loop, for the unfused reference evaluator: one dot product per output.
inline void linear_forward_reference(const float* x, index_t rows, index_t in, index_t out, const float* w,
                                     const float* bias, float* y) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (index_t i = 0; i < in; ++i) acc += static_cast<double>(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = static_cast<float>(acc);
    }
}

template <index_t In, index_t Out, bool Bias>
struct Eval<nn::Linear<In, Out, Bias>> {
  static constexpr index_t packed_size = linear_packed_size(In, Out);
  static void pack(const float* weight, float* packed) { pack_linear_weight(weight, In, Out, packed); }

  static bool passes_through(const nn::Linear<In, Out, Bias>&, bool) { return false; }
  static void forward(const nn::Linear<In, Out, Bias>&, Dims in, const LayerParams& p, const float* x, float* y,
                      index_t samples, const TileContext&) {
    linear_forward(x, samples * (in.numel() / In), In, Out, p.packed_weight, p.bias, y);
  }
  static void forward_reference(const nn::Linear<In, Out, Bias>&, Dims in, const LayerParams& p, const float* x,
                                float* y, index_t samples, const TileContext&) {
    linear_forward_reference(x, samples * (in.numel() / In), In, Out, p.weight, p.bias, y);
  }
};

}  // namespace kiln::et
