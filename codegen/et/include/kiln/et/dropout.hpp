// Dropout's forward in train mode: keep element e iff its Philox draw is >= p, scale survivors by 1/(1-p).
// e counts over the whole batch, so the mask does not depend on how the batch is tiled.
#pragma once

#include <kiln/dsl/layers/dropout.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/simd.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kiln::et {

// Elements [i, end) of dropout_forward, a multiple of 4 * kBlocks starting on a block: kBlocks blocks per
// vectorised Philox call, the mask applied a vector at a time (one element at a time it cost as much as the draws).
template <int kBlocks>
inline index_t dropout_blocks(const float* x, float* y, index_t i, index_t end, std::uint64_t first_element,
                              std::uint32_t threshold, float scale, const DropoutStream& rng) {
  static_assert(4 * kBlocks % simd_width == 0);
  using vuint = std::uint32_t __attribute__((vector_size(simd_width * sizeof(std::uint32_t))));
  std::uint32_t words[4 * kBlocks];
  for (; i < end; i += 4 * kBlocks) {
    rng.blocks<kBlocks>((first_element + static_cast<std::uint64_t>(i)) / 4, words);
    for (int k = 0; k < 4 * kBlocks; k += simd_width) {
      vuint w;
      std::memcpy(&w, words + k, sizeof w);
      const vfloat mask = (w >> 8) >= threshold ? broadcast(scale) : vfloat{};
      store(y + i + k, load(x + i + k) * mask);
    }
  }
  return i;
}

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
  // Elements i .. end - 1 a block's draws at a time (one Philox call per block, not per element).
  auto by_single_blocks = [&](index_t end) {
    while (i < end) {
      const std::uint64_t e = first_element + static_cast<std::uint64_t>(i);
      const Philox4x32::Counter words = rng.block(e / 4);
      for (std::uint64_t w = e % 4; w < 4 && i < end; ++w, ++i)
        y[i] = x[i] * ((words[w] >> 8) >= threshold ? scale : 0.0f);
    }
  };
  // Up to a block boundary, then the blocks whose rounds run side by side while they last, a vector of blocks at a
  // time while those last, the rest a block at a time.
  by_single_blocks(std::min<index_t>(count, static_cast<index_t>((4 - first_element % 4) % 4)));
  constexpr int kFast = DropoutStream::kBlocksSideBySide, kVector = DropoutStream::kBlocksPerVector;
  i = dropout_blocks<kFast>(x, y, i, i + (count - i) / (4 * kFast) * (4 * kFast), first_element, threshold, scale, rng);
  i = dropout_blocks<kVector>(x, y, i, i + (count - i) / (4 * kVector) * (4 * kVector), first_element, threshold, scale,
                              rng);
  by_single_blocks(count);
}

// Whether y = x * mask tells the mask of every element: y != 0 iff kept, where x is finite and not zero (the scale,
// >= 1, cannot round it to 0). Where x is 0, Inf or NaN, y is the same kept or dropped.
inline bool mask_in_output(const float* x, index_t count) {
  using vmask = decltype(vfloat{} == vfloat{});
  vmask all = ~vmask{};
  index_t i = 0;
  for (; i + simd_width <= count; i += simd_width) {
    const vfloat v = load(x + i);
    all &= (v != 0) & (v - v == 0);  // v - v is NaN for Inf and NaN
  }
#if defined(__AVX512F__)
  if (_mm512_cmpeq_epi32_mask(reinterpret_cast<__m512i>(all), _mm512_set1_epi32(-1)) != 0xFFFF) return false;
#else
  const vmask ones = ~vmask{};
  if (std::memcmp(&all, &ones, sizeof all) != 0) return false;  // through memory: slow with AVX-512's vectors
#endif
  for (; i < count; ++i)
    if (x[i] == 0 || x[i] - x[i] != 0) return false;
  return true;
}

// dx = dy where the element was kept (times 1/(1-p)), 0 where dropped. The mask is read off the forward's input x
// and output y in blocks of 64 elements where they tell it, and drawn again from the same Philox counters where
// they do not (an x of 0: after a ReLU, most blocks). Drawing it again cost as much as the forward's draws.
inline void dropout_backward(const float* x, const float* y, const float* dy, float* dx, index_t count,
                             std::uint64_t first_element, float p, const DropoutStream& rng) {
  if (p >= 1.0f) return dropout_forward(dy, dx, count, first_element, p, rng);
  const vfloat scale = broadcast(1.0f / (1.0f - p));
  constexpr index_t block = 4 * DropoutStream::kBlocksSideBySide;  // dropout_forward's fastest draws
  for (index_t i = 0; i < count;) {
    const std::uint64_t e = first_element + static_cast<std::uint64_t>(i);
    const index_t n = std::min<index_t>(count - i, block - static_cast<index_t>(e % block));
    if (n % simd_width == 0 && mask_in_output(x + i, n)) {
      for (index_t k = i; k < i + n; k += simd_width)
        store(dx + k, load(dy + k) * (load(y + k) != 0 ? scale : vfloat{}));
    } else {
      dropout_forward(dy + i, dx + i, n, e, p, rng);  // the same map: linear in its input
    }
    i += n;
  }
}

template <>
struct Eval<nn::Dropout> {
  static void backward(const nn::Dropout& d, Dims in, const LayerParams&, const LayerGrads&, const float* x,
                       const float* y, const float* dy, float* dx, index_t samples, const TileContext& ctx) {
    if (!dx) return;
    const DropoutStream rng(ctx.seed, ctx.dropout_stream, ctx.step);
    dropout_backward(x, y, dy, dx, samples * in.numel(), static_cast<std::uint64_t>(ctx.first_sample * in.numel()), d.p,
                     rng);
  }
  static bool passes_through(const nn::Dropout& d, bool training) { return !training || d.p == 0.0f; }
  static void forward(const nn::Dropout& d, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext& ctx) {
    const DropoutStream rng(ctx.seed, ctx.dropout_stream, ctx.step);
    dropout_forward(x, y, samples * in.numel(), static_cast<std::uint64_t>(ctx.first_sample * in.numel()), d.p, rng);
  }
};

}  // namespace kiln::et
