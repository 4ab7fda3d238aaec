// The random numbers behind Dropout and the initialisation (Philox4x32-10), and the dropout mask drawn from them.
// Built again for x86-64-v3 and x86-64 (tests/CMakeLists.txt): the draws are vectorised for each.
#include "../support.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <vector>

using kiln::index_t;

TEST_CASE("runtime: Philox4x32-10 gives the published known answers", "[runtime]") {
  using P = kiln::Philox4x32;
  CHECK(P::generate({0, 0, 0, 0}, {0, 0}) == P::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(P::generate({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
        P::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(P::generate({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        P::Counter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("runtime: the vectorised dropout draws are the one-block draws, words in element order", "[runtime]") {
  const kiln::DropoutStream rng(0xF00DF00DDEADBEEFull, 3, 17);
  for (const std::uint64_t b0 : {std::uint64_t{0}, std::uint64_t{123456789}, (std::uint64_t{1} << 32) - 5}) {
    std::uint32_t words[4 * 32];
    auto check = [&](int blocks) {
      for (int k = 0; k < blocks; ++k)
        for (int w = 0; w < 4; ++w) {
          INFO(blocks << " blocks from " << b0 << ": block " << k << ", word " << w);
          CHECK(words[4 * k + w] == rng.block(b0 + static_cast<std::uint64_t>(k))[static_cast<std::size_t>(w)]);
        }
    };
    // A vector of blocks, the blocks whose rounds run side by side, and counts that leave the last set short.
    constexpr int kVector = kiln::DropoutStream::kBlocksPerVector, kFast = kiln::DropoutStream::kBlocksSideBySide;
    rng.blocks<kVector>(b0, words);
    check(kVector);
    rng.blocks<kFast>(b0, words);
    check(kFast);
    rng.blocks<16>(b0, words);
    check(16);
    rng.blocks<32>(b0, words);
    check(32);
  }
}

TEST_CASE("runtime: dropout_forward keeps element e iff its one-block draw is >= p, from any first element",
          "[runtime]") {
  // The vectorised draws (the blocks whose rounds run side by side, then a vector of blocks a call) and the head
  // and tail drawn a block at a time, against the definition.
  constexpr index_t fast = 4 * kiln::DropoutStream::kBlocksSideBySide;
  constexpr index_t vector = 4 * kiln::DropoutStream::kBlocksPerVector;
  const kiln::DropoutStream rng(0xC0FFEEull, 2, 4);
  for (const float p : {0.1f, 0.5f, 0.9f})
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{3}, (std::uint64_t{1} << 34) - 130})
      for (const index_t count : {index_t{5}, index_t{64}, index_t{199}, 2 * fast + vector + 7}) {
        std::vector<float> x(static_cast<std::size_t>(count), 1.5f), y(x.size());
        kiln::et::dropout_forward(x.data(), y.data(), count, first, p, rng);
        for (index_t i = 0; i < count; ++i) {
          const std::uint64_t e = first + static_cast<std::uint64_t>(i);
          const bool kept = kiln::Philox4x32::to_unit_float(rng.block(e / 4)[e % 4]) >= p;
          INFO("p " << p << ", first element " << first << ", count " << count << ", element " << i);
          CHECK(y[i] == (kept ? 1.5f * (1.0f / (1.0f - p)) : 0.0f));  // x times the scale, as the kernel
        }
      }
}

TEST_CASE("runtime: Dropout's backward reads the mask off its output, and draws it where the output cannot tell",
          "[runtime]") {
  // The reference: the mask drawn again for every element (dropout_forward applied to dy, as the backward did).
  const kiln::DropoutStream rng(0x5EEDull, 1, 9);
  constexpr float p = 0.3f;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  kiln::Philox4x32::Counter noise{};
  for (const bool with_zeros : {false, true})
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{5}, std::uint64_t{64 * 1000 + 37}})
      for (const index_t count : {index_t{1}, index_t{63}, index_t{64}, index_t{300}}) {
        std::vector<float> x(static_cast<std::size_t>(count)), y(x.size()), dy(x.size()), dx(x.size()), ref(x.size());
        for (index_t i = 0; i < count; ++i) {
          noise = kiln::Philox4x32::generate({static_cast<std::uint32_t>(i), 7, 0, 0}, {1, 2});
          x[i] = kiln::Philox4x32::to_unit_float(noise[0]) - 0.5f;
          dy[i] = kiln::Philox4x32::to_unit_float(noise[1]) + 0.25f;
          if (with_zeros && noise[2] % 5 == 0) x[i] = std::array<float, 5>{0.0f, -0.0f, inf, -inf, nan}[noise[3] % 5];
        }
        if (count > 2) dy[1] = nan;  // a NaN gradient stays NaN where dropped, as PyTorch's grad * mask
        kiln::et::dropout_forward(x.data(), y.data(), count, first, p, rng);
        kiln::et::dropout_forward(dy.data(), ref.data(), count, first, p, rng);
        kiln::et::dropout_backward(x.data(), y.data(), dy.data(), dx.data(), count, first, p, rng);
        for (index_t i = 0; i < count; ++i) {
          INFO("zeros " << with_zeros << ", first element " << first << ", count " << count << ", element " << i);
          if (std::isnan(ref[i])) CHECK(std::isnan(dx[i]));
          else CHECK(dx[i] == ref[i]);
        }
      }
}
