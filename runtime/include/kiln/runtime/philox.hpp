// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based RNG.
// A draw depends only on (key, counter), so any backend and any tiling of the batch can reproduce a dropout
// mask or an initialisation exactly. Known answer: counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
#pragma once

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
  // The words of blocks b0 .. b0 + kBlocks - 1, element-major: words[4 * k + w] is word w of block b0 + k.
  // The same rounds as generate(), on native vectors of blocks: each 32-bit word in a 64-bit lane, so that the
  // 32 x 32 -> 64-bit products are lane-wise multiplies (GCC and clang vector extensions). The groups of blocks
  // take each round side by side, as one group's rounds are a chain of dependent multiplies (dropout_forward:
  // 0.70 ns per element a group after the other, 0.44 four groups side by side; Intel Xeon, model 167).
  template <int kBlocks>
  void blocks(std::uint64_t b0, std::uint32_t* words) const {
    static_assert(kBlocks % 8 == 0, "DropoutStream::blocks: a multiple of 8 blocks");
    constexpr int kGroups = kBlocks / kLanes;
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
      // Element-major by two interleaves: the words (w0, w1) and (w2, w3) of each block side by side, then those
      // pairs as 64-bit lanes, giving each block's w0 w1 w2 w3 in turn (not 4 * kLanes lane extractions).
      const u32v w0 = __builtin_convertvector(c0[h], u32v), w1 = __builtin_convertvector(c1[h], u32v),
                 w2 = __builtin_convertvector(c2[h], u32v), w3 = __builtin_convertvector(c3[h], u32v);
      const auto w01 = interleave(w0, w1, std::make_index_sequence<2 * kLanes>{});
      const auto w23 = interleave(w2, w3, std::make_index_sequence<2 * kLanes>{});
      const u64v pairs01 = reinterpret_cast<u64v>(w01), pairs23 = reinterpret_cast<u64v>(w23);
      const u64v first = interleave(pairs01, pairs23, std::make_index_sequence<kLanes>{});
      const u64v second = interleave(pairs01, pairs23, offset<kLanes / 2>(std::make_index_sequence<kLanes>{}));
      __builtin_memcpy(words + 4 * kLanes * h, &first, sizeof first);
      __builtin_memcpy(words + 4 * kLanes * h + 2 * kLanes, &second, sizeof second);
    }
  }

 private:
  // The widest vector of 64-bit lanes the target has (two lanes where it has no vectors: the compiler splits them).
#if defined(__AVX512F__)
  static constexpr int kLanes = 8;
#elif defined(__AVX2__)
  static constexpr int kLanes = 4;
#else
  static constexpr int kLanes = 2;
#endif
  using u64v = std::uint64_t __attribute__((vector_size(8 * kLanes)));
  using u32v = std::uint32_t __attribute__((vector_size(4 * kLanes)));

  template <std::size_t... I>
  static u64v lane_numbers(std::index_sequence<I...>) {
    return u64v{I...};
  }
  // Lanes I of a and b interleaved (a[0] b[0] a[1] b[1] ...): lane 2i is a[i], lane 2i + 1 is b[i].
  template <class V, std::size_t... I>
  static auto interleave(V a, V b, std::index_sequence<I...>) {
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
