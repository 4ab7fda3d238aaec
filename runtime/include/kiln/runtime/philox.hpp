// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based RNG.
// A draw depends only on (key, counter), so any backend and any tiling of the batch can reproduce a dropout
// mask or an initialisation exactly. Known answer: counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
#pragma once

#include <array>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
  // 32 x 32 -> 64-bit products are lane-wise multiplies (GCC and clang vector extensions). The groups of 8
  // blocks take each round side by side, as one group's rounds are a chain of dependent multiplies (dropout_forward:
  // 0.70 ns per element a group after the other, 0.44 four groups side by side; Intel Xeon, model 167).
  template <int kBlocks>
  void blocks(std::uint64_t b0, std::uint32_t* words) const {
    static_assert(kBlocks % 8 == 0, "DropoutStream::blocks: a multiple of 8 blocks");
    constexpr int kGroups = kBlocks / 8;
    using u64x8 = std::uint64_t __attribute__((vector_size(64)));
    constexpr std::uint64_t low = 0xFFFFFFFFu;
    u64x8 c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int h = 0; h < kGroups; ++h) {
      const u64x8 b = b0 + static_cast<std::uint64_t>(8 * h) + u64x8{0, 1, 2, 3, 4, 5, 6, 7};
      c0[h] = b & low;
      c1[h] = b >> 32;
      c2[h] = u64x8{} + stream;
      c3[h] = u64x8{} + step;
    }
    std::uint64_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k0 = (k0 + 0x9E3779B9u) & low;
        k1 = (k1 + 0xBB67AE85u) & low;
      }
      for (int h = 0; h < kGroups; ++h) {
#if defined(__AVX512F__)
        // 32 x 32 -> 64-bit products, one vpmuludq each: g++ makes c * m a full 64-bit multiply (vpmullq), which
        // made the draws a quarter of a small-batch training step. (maskz: the unmasked form makes g++ 12 warn.)
        const auto mul = [](u64x8 a, long long m) {
          return reinterpret_cast<u64x8>(_mm512_maskz_mul_epu32(0xFF, reinterpret_cast<__m512i>(a), _mm512_set1_epi64(m)));
        };
        // vpmuludq reads only the low halves of its lanes, and the words are taken from the low halves below:
        // the high halves may hold anything, and the products are not masked to 32 bits.
        const u64x8 p0 = mul(c0[h], 0xD2511F53), p1 = mul(c2[h], 0xCD9E8D57);
        c0[h] = (p1 >> 32) ^ c1[h] ^ k0;
        c1[h] = p1;
        c2[h] = (p0 >> 32) ^ c3[h] ^ k1;
        c3[h] = p0;
#else
        const u64x8 p0 = c0[h] * 0xD2511F53u, p1 = c2[h] * 0xCD9E8D57u;
        c0[h] = (p1 >> 32) ^ c1[h] ^ k0;
        c1[h] = p1 & low;
        c2[h] = (p0 >> 32) ^ c3[h] ^ k1;
        c3[h] = p0 & low;
#endif
      }
    }
    for (int h = 0; h < kGroups; ++h) {
      // Element-major: blocks 0..3 then 4..7, each as its words 0..3 (two interleaves, not 32 lane extractions).
      using u32x8 = std::uint32_t __attribute__((vector_size(32)));
      using u32x16 = std::uint32_t __attribute__((vector_size(64)));
      const u32x8 w0 = __builtin_convertvector(c0[h], u32x8), w1 = __builtin_convertvector(c1[h], u32x8),
                  w2 = __builtin_convertvector(c2[h], u32x8), w3 = __builtin_convertvector(c3[h], u32x8);
      const u32x16 w01 = __builtin_shufflevector(w0, w1, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
      const u32x16 w23 = __builtin_shufflevector(w2, w3, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
      const u32x16 first = __builtin_shufflevector(w01, w23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
      const u32x16 second = __builtin_shufflevector(w01, w23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
      __builtin_memcpy(words + 32 * h, &first, sizeof first);
      __builtin_memcpy(words + 32 * h + 16, &second, sizeof second);
    }
  }
};

}  // namespace kiln
