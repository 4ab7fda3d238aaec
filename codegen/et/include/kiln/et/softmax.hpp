// Softmax's forward along one per-sample axis: exp(x - max) / sum(exp(x - max)).
#pragma once

#include <kiln/dsl/layers/softmax.hpp>
#include <kiln/et/eval.hpp>

#include <cmath>

namespace kiln::et {

// x viewed as [outer, length, inner]; softmax over the middle dim.
inline void softmax_forward(const float* x, float* y, index_t outer, index_t length, index_t inner) {
  for (index_t o = 0; o < outer; ++o)
    for (index_t in = 0; in < inner; ++in) {
      const float* xs = x + o * length * inner + in;
      float* ys = y + o * length * inner + in;
      float m = xs[0];
      for (index_t k = 1; k < length; ++k) m = std::max(m, xs[k * inner]);
      float sum = 0;
      for (index_t k = 0; k < length; ++k) sum += ys[k * inner] = std::exp(xs[k * inner] - m);
      const float inv = 1.0f / sum;
      for (index_t k = 0; k < length; ++k) ys[k * inner] *= inv;
    }
}

template <int Dim>
struct Eval<nn::Softmax<Dim>> {
  static bool passes_through(const nn::Softmax<Dim>&, bool) { return false; }
  static void forward(const nn::Softmax<Dim>&, Dims in, const LayerParams&, const float* x, float* y,
                      index_t samples, const TileContext&) {
    const int axis = nn::Softmax<Dim>::axis(in);
    softmax_forward(x, y, samples * in.product(0, axis), in.sizes[axis], in.product(axis + 1, in.rank));
  }
};

}  // namespace kiln::et
