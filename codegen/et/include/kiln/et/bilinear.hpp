// Bilinear's forward: y_o = b_o + sum_i x1_i sum_j A_oij x2_j, per row.
#pragma once

#include <kiln/dsl/layers/bilinear.hpp>
#include <kiln/et/eval.hpp>

namespace kiln::et {

inline void bilinear_forward(const float* x1, const float* x2, index_t rows, index_t in1, index_t in2, index_t out,
                             const float* a, const float* bias, float* y) {
  for (index_t r = 0; r < rows; ++r) {
    const float* u = x1 + r * in1;
    const float* v = x2 + r * in2;
    for (index_t o = 0; o < out; ++o) {
      float acc = 0;
      for (index_t i = 0; i < in1; ++i) {
        const float* row = a + (o * in1 + i) * in2;
        float t = 0;
        for (index_t j = 0; j < in2; ++j) t += row[j] * v[j];
        acc += u[i] * t;
      }
      y[r * out + o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

template <index_t In1, index_t In2, index_t Out, bool Bias>
struct Eval<nn::Bilinear<In1, In2, Out, Bias>> {
  using Layer = nn::Bilinear<In1, In2, Out, Bias>;
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward2(const Layer&, Dims in, const LayerParams& p, const float* x1, const float* x2, float* y,
                       index_t samples, const TileContext&) {
    bilinear_forward(x1, x2, samples * (in.numel() / In1), In1, In2, Out, p.weight, p.bias, y);
  }
};

}  // namespace kiln::et
