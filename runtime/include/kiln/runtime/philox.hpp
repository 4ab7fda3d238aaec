// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based RNG.
// A draw depends only on (key, counter), so any backend and any tiling of the batch can reproduce a dropout
// mask or an initialisation exactly. Known answer: counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#if defined(__SSE2__)
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
  // kBlocksPerVector: the blocks in a vector of 64-bit lanes, the widest the target has (two where it has no
  // vectors: the compiler splits them). kGroupsSideBySide: the groups of a vector of blocks whose rounds run side by
  // side, as many as the vector registers hold with 4 vectors of state each, beside the two keys and the products in
  // flight (16 registers but with AVX-512's 32). One group's rounds are a chain of dependent multiplies
  // (dropout_forward: 0.70 ns per element a group after the other, 0.44 four groups side by side; Intel Xeon, model
  // 167); more groups than the registers hold spill (AVX2 on AMD EPYC Zen 3: 8 groups side by side 0.84 ns per
  // element, sets of 4 0.76, of 3 0.64, of 2 0.70).
#if defined(__AVX512F__)
  static constexpr int kBlocksPerVector = 8, kGroupsSideBySide = 4;
#elif defined(__AVX2__)
  static constexpr int kBlocksPerVector = 4, kGroupsSideBySide = 3;
#else
  static constexpr int kBlocksPerVector = 2, kGroupsSideBySide = 3;
#endif
  // blocks<kBlocksSideBySide> draws fastest.
  static constexpr int kBlocksSideBySide = kGroupsSideBySide * kBlocksPerVector;

  // The words of blocks b0 .. b0 + kBlocks - 1, element-major: words[4 * k + w] is word w of block b0 + k.
  // The same rounds as generate(), on native vectors of blocks: each 32-bit word in a 64-bit lane, so that the
  // 32 x 32 -> 64-bit products are lane-wise multiplies (GCC and clang vector extensions); kBlocksSideBySide
  // blocks at a time.
  template <int kBlocks>
  void blocks(std::uint64_t b0, std::uint32_t* words) const {
    static_assert(kBlocks % kBlocksPerVector == 0, "DropoutStream::blocks: a multiple of kBlocksPerVector blocks");
    constexpr int kGroups = kBlocks / kLanes, kSets = (kGroups + kGroupsSideBySide - 1) / kGroupsSideBySide;
    [&]<int... kSet>(std::integer_sequence<int, kSet...>) {
      (side_by_side<std::min(kGroupsSideBySide, kGroups - kGroupsSideBySide * kSet)>(
           b0 + static_cast<std::uint64_t>(kBlocksSideBySide * kSet), words + 4 * kBlocksSideBySide * kSet),
       ...);
    }(std::make_integer_sequence<int, kSets>{});
  }

 private:
  // The words of kGroups groups of kLanes blocks from b0 (kGroups <= kGroupsSideBySide), their rounds side by side.
  template <int kGroups>
  void side_by_side(std::uint64_t b0, std::uint32_t* words) const {
    constexpr std::uint64_t low = 0xFFFFFFFFu;
    u64v c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int h = 0; h < kGroups; ++h) {
      const u64v b = b0 + static_cast<std::uint64_t>(kLanes * h) + lane_numbers(std::make_index_sequence<kLanes>{});
      c0[h] = b & low;
      c1[h] = b >> 32;
      c2[h] = u64v{} + stream;
      c3[h] = u64v{} + step;
    }
    std::uint64_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k0 = (k0 + 0x9E3779B9u) & low;
        k1 = (k1 + 0xBB67AE85u) & low;
      }
      for (int h = 0; h < kGroups; ++h) {
        // The products are not masked to 32 bits: the multiplies read only the low halves of their lanes, and
        // the words are taken from the low halves below, so the high halves may hold anything.
        const u64v p0 = mul_low_halves(c0[h], 0xD2511F53), p1 = mul_low_halves(c2[h], 0xCD9E8D57);
        c0[h] = (p1 >> 32) ^ c1[h] ^ k0;
        c1[h] = p1;
        c2[h] = (p0 >> 32) ^ c3[h] ^ k1;
        c3[h] = p0;
      }
    }
    for (int h = 0; h < kGroups; ++h) {
      // Element-major in two steps: the words (w0, w1) and (w2, w3) of each block as the low and high halves of a
      // 64-bit lane (one blend of the low halves each), then those pairs interleaved, giving each block's w0 w1 w2
      // w3 in turn. (Narrowing the lanes to 32 bits first cost more shuffles than the rounds cost multiplies.)
      const u64v pairs01 = low_halves_paired(c0[h], c1[h], std::make_index_sequence<2 * kLanes>{});
      const u64v pairs23 = low_halves_paired(c2[h], c3[h], std::make_index_sequence<2 * kLanes>{});
      const u64v first = interleave(pairs01, pairs23, std::make_index_sequence<kLanes>{});
      const u64v second = interleave(pairs01, pairs23, offset<kLanes / 2>(std::make_index_sequence<kLanes>{}));
      __builtin_memcpy(words + 4 * kLanes * h, &first, sizeof first);
      __builtin_memcpy(words + 4 * kLanes * h + 2 * kLanes, &second, sizeof second);
    }
  }

  static constexpr int kLanes = kBlocksPerVector;  // of u64v
  using u64v = std::uint64_t __attribute__((vector_size(8 * kLanes)));
  using u32x2v = std::uint32_t __attribute__((vector_size(8 * kLanes)));  // u64v's halves

  template <std::size_t... I>
  static u64v lane_numbers(std::index_sequence<I...>) {
    return u64v{I...};
  }
  // Lane i: the low half of a's lane i, then the low half of b's lane i (as 32-bit words, little-endian).
  template <std::size_t... I>
  static u64v low_halves_paired(u64v a, u64v b, std::index_sequence<I...>) {
    return reinterpret_cast<u64v>(__builtin_shufflevector(reinterpret_cast<u32x2v>(a), reinterpret_cast<u32x2v>(b),
                                                          (I % 2 == 0 ? I : 2 * kLanes + I - 1)...));
  }
  // Lanes I of a and b interleaved (a[0] b[0] a[1] b[1] ...): lane 2i is a[i], lane 2i + 1 is b[i].
  template <class V, std::size_t... I>
  static V interleave(V a, V b, std::index_sequence<I...>) {
    constexpr std::size_t n = sizeof a / sizeof a[0];
    return __builtin_shufflevector(a, b, (I % 2 == 0 ? I / 2 : n + I / 2)...);
  }
  // The lanes I moved on by kOffset pairs.
  template <std::size_t kOffset, std::size_t... I>
  static std::index_sequence<(2 * kOffset + I)...> offset(std::index_sequence<I...>) {
    return {};
  }
  // Lane-wise (a & 0xFFFFFFFF) * m, 32 x 32 -> 64 bits: one (v)pmuludq. Written plainly, g++ makes it a full
  // 64-bit multiply (vpmullq with AVX-512, three multiplies and shifts without), which made the draws a quarter
  // of a small-batch training step with AVX-512 and 41% with AVX2.
  static u64v mul_low_halves(u64v a, long long m) {
#if defined(__AVX512F__)
    // maskz: the unmasked form makes g++ 12 warn.
    return reinterpret_cast<u64v>(_mm512_maskz_mul_epu32(0xFF, reinterpret_cast<__m512i>(a), _mm512_set1_epi64(m)));
#elif defined(__AVX2__)
    return reinterpret_cast<u64v>(_mm256_mul_epu32(reinterpret_cast<__m256i>(a), _mm256_set1_epi64x(m)));
#elif defined(__SSE2__)
    return reinterpret_cast<u64v>(_mm_mul_epu32(reinterpret_cast<__m128i>(a), _mm_set1_epi64x(m)));
#else
    return (a & 0xFFFFFFFFu) * static_cast<std::uint64_t>(m);
#endif
  }
};

}  // namespace kiln
