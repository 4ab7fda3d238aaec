// Softmax and LogSoftmax along one per-sample axis: exp(x - max) / sum(exp(x - max)), and its log.
#pragma once

#include <kiln/dsl/layers/softmax.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

#include <algorithm>
#include <cmath>

namespace kiln::et {

// The largest of xs[0], xs[inner], ..., xs[(length - 1) * inner] but NaN (NaN only if xs[0] is). PyTorch's max is
// NaN where a value is, but Softmax's needs not be: exp(NaN - max) is NaN, and the sum takes it to every value of
// the row, as PyTorch's NaN max does; -0 and +0 as the max give the same outputs. In vectors that is x86's maxps
// (vmax), one instruction, where carrying NaN took three more (the MLIR kernel's softmax max does the same:
// build_network.cpp, largerNotNaN).
inline float strided_max(const float* xs, index_t length, index_t inner) {
  float m = xs[0];
  for (index_t k = 1; k < length; ++k) m = xs[k * inner] > m ? xs[k * inner] : m;
  return m;
}

// strided_max on each of n lanes.
inline vfloat strided_max_block(const float* xs, index_t length, index_t inner, index_t n) {
  vfloat m = load_first(xs, n);
  for (index_t k = 1; k < length; ++k) m = vmax(load_first(xs + k * inner, n), m);
  return m;
}
// Along a dim that is not the last (inner > 1), the values of one position of the inner dims lie `inner`
// apart and those of neighbouring positions side by side: f(xs, ys, n, m) for each block of n <= simd_width
// neighbouring positions (xs, ys: x and y at its first value; m: their maxima along the dim), which works on
// them as the lanes of vectors.
template <class F>
inline void for_inner_blocks(const float* x, float* y, index_t outer, index_t length, index_t inner, F f) {
  for (index_t o = 0; o < outer; ++o)
    for (index_t in = 0; in < inner; in += simd_width) {
      const index_t at = o * length * inner + in, n = std::min<index_t>(simd_width, inner - in);
      f(x + at, y + at, n, strided_max_block(x + at, length, inner, n));
    }
}

// The largest of x[0, n) as strided_max: simd_width running maxima, the last vector overlapping the one before
// where n is not a multiple (a max may see a value twice).
inline float max_vectors(const float* x, index_t n) {
  if (n < simd_width) return strided_max(x, n, 1);
  vfloat m = load(x);
  index_t i = simd_width;
  for (; i + simd_width <= n; i += simd_width) m = vmax(load(x + i), m);
  if (i < n) m = vmax(load(x + n - simd_width), m);
  return lane_tree(m, [](vfloat a, vfloat b) { return vmax(b, a); });
}

// Sum of exp(x[i] - m) over x[0, n), in simd_width partial sums.
inline float sum_exp_vectors(const float* x, index_t n, float m) {
  vfloat acc{};
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width) acc += vexp(load(x + i) - m);
  float sum = lane_sum(acc);
  if (i < n) {
    float e[simd_width];
    store(e, vexp(load_first(x + i, n - i) - m));
    for (index_t k = 0; k < n - i; ++k) sum += e[k];
  }
  return sum;
}

// x viewed as [outer, length, inner]; softmax over the middle dim. x and y may be the same. Rows along the last
// dim (inner 1) in vectors: a row of 256 took 0.55 us with its max one scalar comparison after the other.
inline void softmax_forward(const float* x, float* y, index_t outer, index_t length, index_t inner) {
  if (inner == 1) {
    for (index_t o = 0; o < outer; ++o) {
      const float* xs = x + o * length;
      float* ys = y + o * length;
      const float m = max_vectors(xs, length);
      map_vectors(xs, ys, length, [m](vfloat v) { return vexp(v - m); });
      const float inv = 1.0f / sum_vectors(ys, length);
      map_vectors(ys, ys, length, [inv](vfloat v) { return v * inv; });
    }
    return;
  }
  for_inner_blocks(x, y, outer, length, inner, [&](const float* xs, float* ys, index_t n, vfloat m) {
    vfloat sum{};
    for (index_t k = 0; k < length; ++k) {
      const vfloat e = vexp(load_first(xs + k * inner, n) - m);
      store_first(ys + k * inner, e, n);
      sum += e;
    }
    const vfloat inv = 1.0f / sum;
    for (index_t k = 0; k < length; ++k) store_first(ys + k * inner, load_first(ys + k * inner, n) * inv, n);
  });
}

// dx = y * (dy - sum(dy * y)) along the softmax's dim.
inline void softmax_backward(const float* y, const float* dy, float* dx, index_t outer, index_t length, index_t inner) {
  if (inner == 1) {
    for (index_t o = 0; o < outer; ++o) {
      const index_t base = o * length;
      vfloat acc{};
      for (index_t k = 0; k < length; k += simd_width) {
        const long n = std::min<index_t>(simd_width, length - k);
        acc += load_first(dy + base + k, n) * load_first(y + base + k, n);
      }
      const float dot = lane_sum(acc);
      for (index_t k = 0; k < length; k += simd_width) {
        const long n = std::min<index_t>(simd_width, length - k);
        const vfloat yv = load_first(y + base + k, n);
        store_first(dx + base + k, yv * (load_first(dy + base + k, n) - dot), n);
      }
    }
    return;
  }
  for (index_t o = 0; o < outer; ++o)
    for (index_t in = 0; in < inner; ++in) {
      const index_t base = o * length * inner + in;
      float dot = 0;
      for (index_t k = 0; k < length; ++k) dot += dy[base + k * inner] * y[base + k * inner];
      for (index_t k = 0; k < length; ++k) dx[base + k * inner] = y[base + k * inner] * (dy[base + k * inner] - dot);
    }
}

// x viewed as [outer, length, inner]; y = x - max - log(sum(exp(x - max))) over the middle dim. x and y may be
// the same.
inline void log_softmax_forward(const float* x, float* y, index_t outer, index_t length, index_t inner) {
  if (inner == 1) {
    for (index_t o = 0; o < outer; ++o) {
      const float* xs = x + o * length;
      const float m = max_vectors(xs, length), log_sum = std::log(sum_exp_vectors(xs, length, m));
      map_vectors(xs, y + o * length, length, [m, log_sum](vfloat v) { return (v - m) - log_sum; });
    }
    return;
  }
  for_inner_blocks(x, y, outer, length, inner, [&](const float* xs, float* ys, index_t n, vfloat m) {
    vfloat sum{};
    for (index_t k = 0; k < length; ++k) {
      const vfloat d = load_first(xs + k * inner, n) - m;
      store_first(ys + k * inner, d, n);
      sum += vexp(d);
    }
    const vfloat log_sum = vlog(sum);  // (x - max) - log_sum, as PyTorch: x - (max + log_sum) would round
    for (index_t k = 0; k < length; ++k) store_first(ys + k * inner, load_first(ys + k * inner, n) - log_sum, n);
  });
}

// dx = dy - exp(y) * sum(dy) along the dim.
inline void log_softmax_backward(const float* y, const float* dy, float* dx, index_t outer, index_t length,
                                 index_t inner) {
  if (inner == 1) {
    for (index_t o = 0; o < outer; ++o) {
      const index_t base = o * length;
      const float sum = sum_vectors(dy + base, length);
      for (index_t k = 0; k < length; k += simd_width) {
        const long n = std::min<index_t>(simd_width, length - k);
        store_first(dx + base + k, load_first(dy + base + k, n) - vexp(load_first(y + base + k, n)) * sum, n);
      }
    }
    return;
  }
  for (index_t o = 0; o < outer; ++o)
    for (index_t in = 0; in < inner; ++in) {
      const index_t base = o * length * inner + in;
      float sum = 0;
      for (index_t k = 0; k < length; ++k) sum += dy[base + k * inner];
      for (index_t k = 0; k < length; ++k)
        dx[base + k * inner] = dy[base + k * inner] - vexp(broadcast(y[base + k * inner]))[0] * sum;
    }
}

// Softmax<Dim> or LogSoftmax<Dim>, with its forward and backward along the layer's axis.
template <class Layer, auto Forward, auto Backward>
struct AlongDimEval {
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer&, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext&) {
    const int axis = Layer::axis(in);
    Forward(x, y, samples * in.product(0, axis), in.sizes[axis], in.product(axis + 1, in.rank));
  }
  static void backward(const Layer&, Dims in, const LayerParams&, const LayerGrads&, const float*, const float* y,
                       const float* dy, float* dx, index_t samples, const TileContext&) {
    if (!dx) return;
    const int axis = Layer::axis(in);
    Backward(y, dy, dx, samples * in.product(0, axis), in.sizes[axis], in.product(axis + 1, in.rank));
  }
};

template <int Dim>
struct Eval<nn::Softmax<Dim>> : AlongDimEval<nn::Softmax<Dim>, softmax_forward, softmax_backward> {};
template <int Dim>
struct Eval<nn::LogSoftmax<Dim>> : AlongDimEval<nn::LogSoftmax<Dim>, log_softmax_forward, log_softmax_backward> {};

}  // namespace kiln::et
