// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based RNG.
// A draw depends only on (key, counter), so any backend and any tiling of the batch can reproduce a dropout
// mask or an initialisation exactly. Known answer: counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
#pragma once

#include <array>
#include <cstdint>

namespace kiln {

struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  static constexpr Counter generate(Counter c, Key k) {
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u, w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k[0] += w0;
        k[1] += w1;
      }
      const std::uint64_t p0 = std::uint64_t{m0} * c[0];
      const std::uint64_t p1 = std::uint64_t{m1} * c[2];
      c = {static_cast<std::uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<std::uint32_t>(p0)};
    }
    return c;
  }
  static constexpr Key key_of(std::uint64_t seed) {
    return {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  }
  // A uniform float in [0, 1) with 24 random bits: exact in float32, so every backend gets the same value.
  static constexpr float to_unit_float(std::uint32_t word) {
    return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
  }
};

// The dropout mask: element e (row-major over the whole batch) of the Dropout with ordinal `stream` among
// the network's Dropouts, at training step `step`, is kept iff its uniform draw is >= p.
// Counter (e / 4 low, e / 4 high, stream, step), key = the seed; the draw is word e % 4.
struct DropoutStream {
  Philox4x32::Key key{};
  std::uint32_t stream = 0, step = 0;

  constexpr DropoutStream(std::uint64_t seed, std::uint32_t stream_, std::uint32_t step_)
      : key(Philox4x32::key_of(seed)), stream(stream_), step(step_) {}

  // The four uniform draws of elements 4*block .. 4*block+3.
  constexpr Philox4x32::Counter block(std::uint64_t b) const {
    return Philox4x32::generate({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), stream, step},
                                key);
  }
  // The words of blocks b0 .. b0 + kBlocks - 1, element-major: words[4 * k + w] is word w of block b0 + k.
  // The same rounds as generate(), on vectors of 8 blocks: each 32-bit word in a 64-bit lane, so that the
  // 32 x 32 -> 64-bit products are lane-wise multiplies (GCC and clang vector extensions).
  template <int kBlocks>
  void blocks(std::uint64_t b0, std::uint32_t* words) const {
    static_assert(kBlocks % 8 == 0, "DropoutStream::blocks: a multiple of 8 blocks");
    using u64x8 = std::uint64_t __attribute__((vector_size(64)));
    constexpr std::uint64_t low = 0xFFFFFFFFu;
    for (int h = 0; h < kBlocks; h += 8) {
      u64x8 c0, c1, c2, c3;
      for (int k = 0; k < 8; ++k) {
        const std::uint64_t b = b0 + static_cast<std::uint64_t>(h + k);
        c0[k] = b & low;
        c1[k] = b >> 32;
        c2[k] = stream;
        c3[k] = step;
      }
      std::uint64_t k0 = key[0], k1 = key[1];
      for (int round = 0; round < 10; ++round) {
        if (round > 0) {
          k0 = (k0 + 0x9E3779B9u) & low;
          k1 = (k1 + 0xBB67AE85u) & low;
        }
        const u64x8 p0 = c0 * 0xD2511F53u, p1 = c2 * 0xCD9E8D57u;
        c0 = (p1 >> 32) ^ c1 ^ k0;
        c1 = p1 & low;
        c2 = (p0 >> 32) ^ c3 ^ k1;
        c3 = p0 & low;
      }
      for (int k = 0; k < 8; ++k) {
        std::uint32_t* w = words + 4 * (h + k);
        w[0] = static_cast<std::uint32_t>(c0[k]);
        w[1] = static_cast<std::uint32_t>(c1[k]);
        w[2] = static_cast<std::uint32_t>(c2[k]);
        w[3] = static_cast<std::uint32_t>(c3[k]);
      }
    }
  }
};

}  // namespace kiln
