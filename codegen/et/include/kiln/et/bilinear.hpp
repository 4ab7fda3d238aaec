// Bilinear's forward: y_o = b_o + sum_j x2_j sum_i x1_i A_oij, summed in PyTorch's order (x1 against A first,
// as its _trilinear does), so that an Inf in an input gives Inf or NaN where PyTorch's does.
//
// The inner sums for every (o, j) are one GEMM: T[r, o*In2 + j] = sum_i x1[r, i] B[o*In2 + j, i], with
// B[o*In2 + j, i] = A[o, i, j] (A with its last two dims swapped, packed like a Linear weight, linear.hpp).
// Then y[r, o] is a dot product of x2[r] with T[r, o*In2 .. o*In2 + In2). T is computed for a few rows at a
// time so it stays in cache.
#pragma once

#include <kiln/dsl/layers/bilinear.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/linear.hpp>
#include <kiln/et/vmath.hpp>

#include <algorithm>
#include <vector>

namespace kiln::et {

// Packs A [out, in1, in2] as the Linear weight B [out * in2, in1] above.
inline void pack_bilinear_weight(const float* a, index_t in1, index_t in2, index_t out, float* packed) {
  thread_local float_buffer swapped;  // kept: packing follows every optimizer step
  swapped.resize(static_cast<std::size_t>(out * in1 * in2));
  for (index_t o = 0; o < out; ++o)
    for (index_t i = 0; i < in1; ++i)
      for (index_t j = 0; j < in2; ++j) swapped[static_cast<std::size_t>((o * in2 + j) * in1 + i)] = a[(o * in1 + i) * in2 + j];
  pack_linear_weight(swapped.data(), in1, out * in2, packed);
}

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that the scalar tail's offsets could overflow once the vector loop has taken every output.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
template <index_t kShortIn = 0>
inline void bilinear_forward(const float* x1, const float* x2, index_t rows, index_t in1, index_t in2, index_t out,
                             const float* packed, const float* bias, float* y) {
  constexpr index_t block = 2 * linear_rows;
  thread_local float_buffer t_buffer;
  if (t_buffer.size() < static_cast<std::size_t>(block * out * in2))
    t_buffer.resize(static_cast<std::size_t>(block * out * in2));
  float* t = t_buffer.data();
  for (index_t r0 = 0; r0 < rows; r0 += block) {
    const index_t n = std::min(block, rows - r0);
    linear_forward<NoEpilogue, kShortIn>(x1 + r0 * in1, n, in1, out * in2, packed, nullptr, t);
    for (index_t r = 0; r < n; ++r) {
      const float* v = x2 + (r0 + r) * in2;
      index_t o = 0;
      // simd_width outputs at a time: one accumulator each, then one transpose sums all of them at once (a
      // lane-by-lane sum per output took a sixth of the layer's time).
      if (in2 % simd_width == 0)
        for (; o + simd_width <= out; o += simd_width) {
          vfloat acc[simd_width];
#pragma GCC unroll 16
          for (int k = 0; k < simd_width; ++k) acc[k] = vfloat{};  // in registers (`= {}` was a memset call)
          for (index_t j = 0; j < in2; j += simd_width) {
            const vfloat vj = load(v + j);
            for (index_t k = 0; k < simd_width; ++k) acc[k] += vj * load(t + (r * out + o + k) * in2 + j);
          }
          transpose_block(acc);
          vfloat sum = bias ? load(bias + o) : vfloat{};
          for (index_t k = 0; k < simd_width; ++k) sum += acc[k];
          store(y + (r0 + r) * out + o, sum);
        }
      for (; o < out; ++o) {
        const float* tr = t + (r * out + o) * in2;
        const index_t vectors_end = in2 / simd_width * simd_width;
        vfloat acc{};
        for (index_t j = 0; j < vectors_end; j += simd_width) acc += load(v + j) * load(tr + j);
        float s = lane_sum(acc);
        for (index_t j = vectors_end; j < in2; ++j) s += v[j] * tr[j];
        y[(r0 + r) * out + o] = s + (bias ? bias[o] : 0.0f);
      }
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The plain loops, for the reference evaluator and kiln::F (which has no packed weight).
inline void bilinear_forward_reference(const float* x1, const float* x2, index_t rows, index_t in1, index_t in2,
                                       index_t out, const float* a, const float* bias, float* y) {
  for (index_t r = 0; r < rows; ++r) {
    const float* u = x1 + r * in1;
    const float* v = x2 + r * in2;
    for (index_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (index_t j = 0; j < in2; ++j) {  // x1 against A first, as bilinear_forward
        double t = 0;
        for (index_t i = 0; i < in1; ++i) t += static_cast<double>(a[(o * in1 + i) * in2 + j]) * u[i];
        acc += v[j] * t;
      }
      y[r * out + o] = static_cast<float>(acc);
    }
  }
}

template <index_t In1, index_t In2, index_t Out, bool Bias>
struct Eval<nn::Bilinear<In1, In2, Out, Bias>> {
  using Layer = nn::Bilinear<In1, In2, Out, Bias>;
  static constexpr index_t packed_size = linear_packed_size(In1, Out * In2);
  static void pack(const float* weight, float* packed) { pack_bilinear_weight(weight, In1, In2, Out, packed); }

  static bool passes_through(const Layer&, bool) { return false; }
  static void forward_two_inputs(const Layer&, Dims in, const LayerParams& p, const float* x1, const float* x2, float* y,
                       index_t samples, const TileContext&) {
    bilinear_forward<(In1 <= linear_short_in ? In1 : 0)>(x1, x2, samples * (in.numel() / In1), In1, In2, Out,
                                                       p.packed_weight, p.bias, y);
  }
  // dA_oij += dy_o x1_i x2_j; dx1_i = sum_o dy_o (A_o x2)_i; dx2_j = sum_oi dy_o x1_i A_oij; db += dy.
  static void backward_two_inputs(const Layer&, Dims in, const LayerParams& p, const LayerGrads& g, const float* x1,
                        const float* x2, const float* dy, float* dx1, float* dx2, index_t samples, const TileContext&) {
    const index_t rows = samples * (in.numel() / In1);
    for (index_t r = 0; r < rows; ++r) {
      const float* u = x1 + r * In1;
      const float* v = x2 + r * In2;
      const float* d = dy + r * Out;
      if (dx1) std::fill(dx1 + r * In1, dx1 + (r + 1) * In1, 0.0f);
      if (dx2) std::fill(dx2 + r * In2, dx2 + (r + 1) * In2, 0.0f);
      for (index_t o = 0; o < Out; ++o) {
        if (Bias && g.bias) g.bias[o] += d[o];
        for (index_t i = 0; i < In1; ++i) {
          const float* a = p.weight + (o * In1 + i) * In2;
          float* ga = g.weight + (o * In1 + i) * In2;
          const float du = d[o] * u[i];
          float av = 0;
          for (index_t j = 0; j < In2; ++j) {
            av += a[j] * v[j];
            ga[j] += du * v[j];
            if (dx2) dx2[r * In2 + j] += du * a[j];
          }
          if (dx1) dx1[r * In1 + i] += d[o] * av;
        }
      }
    }
  }
  static void forward_two_inputs_reference(const Layer&, Dims in, const LayerParams& p, const float* x1, const float* x2,
                                 float* y, index_t samples, const TileContext&) {
    bilinear_forward_reference(x1, x2, samples * (in.numel() / In1), In1, In2, Out, p.weight, p.bias, y);
  }
};

}  // namespace kiln::et
