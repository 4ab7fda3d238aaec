// Dropout's forward in train mode: keep element e iff its Philox draw is >= p, scale survivors by 1/(1-p).
// e counts over the whole batch, so the mask does not depend on how the batch is tiled.
#pragma once

#include <kiln/dsl/layers/dropout.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/simd.hpp>

#include <cmath>
#include <cstring>

namespace kiln::et {

inline void dropout_forward(const float* x, float* y, index_t count, std::uint64_t first_element, float p,
                            const DropoutStream& rng) {
  // x times the mask, as PyTorch computes it: a dropped NaN or Inf gives NaN, not 0.
  if (p >= 1.0f) {
    for (index_t i = 0; i < count; ++i) y[i] = x[i] * 0.0f;
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  // Kept iff to_unit_float(word) >= p, that is (word >> 8) * 2^-24 >= p, exactly: as integers,
  // (word >> 8) >= ceil(p * 2^24). One test for single elements and vectors.
  const auto threshold = static_cast<std::uint32_t>(std::ceil(static_cast<double>(p) * 16777216.0));
  index_t i = 0;
  auto one = [&](index_t k, std::uint32_t word) { y[k] = x[k] * ((word >> 8) >= threshold ? scale : 0.0f); };
  // Up to a block boundary one at a time, then 16 blocks (64 elements) per vectorised Philox call, the mask
  // applied a vector at a time (one element at a time it cost as much as the draws).
  for (; i < count && (first_element + static_cast<std::uint64_t>(i)) % 4 != 0; ++i) {
    const std::uint64_t e = first_element + static_cast<std::uint64_t>(i);
    one(i, rng.block(e / 4)[e % 4]);
  }
  constexpr int kBlocks = 16;
  static_assert(4 * kBlocks % simd_width == 0);
  using vuint = std::uint32_t __attribute__((vector_size(simd_width * sizeof(std::uint32_t))));
  std::uint32_t words[4 * kBlocks];
  for (; i + 4 * kBlocks <= count; i += 4 * kBlocks) {
    rng.blocks<kBlocks>((first_element + static_cast<std::uint64_t>(i)) / 4, words);
    for (int k = 0; k < 4 * kBlocks; k += simd_width) {
      vuint w;
      std::memcpy(&w, words + k, sizeof w);
      const vfloat mask = (w >> 8) >= threshold ? broadcast(scale) : vfloat{};
      store(y + i + k, load(x + i + k) * mask);
    }
  }
  for (; i < count; ++i) {
    const std::uint64_t e = first_element + static_cast<std::uint64_t>(i);
    one(i, rng.block(e / 4)[e % 4]);
  }
}

// dx = dy where the element was kept (times 1/(1-p)), 0 where dropped: the mask is drawn again, not stored.
inline void dropout_backward(const float* dy, float* dx, index_t count, std::uint64_t first_element, float p,
                             const DropoutStream& rng) {
  dropout_forward(dy, dx, count, first_element, p, rng);  // the same map: linear in its input
}

template <>
struct Eval<nn::Dropout> {
  static void backward(const nn::Dropout& d, Dims in, const LayerParams&, const LayerGrads&, const float*,
                       const float*, const float* dy, float* dx, index_t samples, const TileContext& ctx) {
    if (!dx) return;
    const DropoutStream rng(ctx.seed, ctx.dropout_stream, ctx.step);
    dropout_backward(dy, dx, samples * in.numel(), static_cast<std::uint64_t>(ctx.first_sample * in.numel()), d.p, rng);
  }
  static bool passes_through(const nn::Dropout& d, bool training) { return !training || d.p == 0.0f; }
  static void forward(const nn::Dropout& d, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext& ctx) {
    const DropoutStream rng(ctx.seed, ctx.dropout_stream, ctx.step);
    dropout_forward(x, y, samples * in.numel(), static_cast<std::uint64_t>(ctx.first_sample * in.numel()), d.p, rng);
  }
};

}  // namespace kiln::et
