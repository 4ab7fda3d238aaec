// The layouts the Linear kernels read, against their definitions: pack_linear_matrix through each of its paths
// (in-register transposes, vector copies, the element loop for partial blocks, chunks of inputs for at most
// linear_dot_out outputs), transpose_matrix, group_sums, the partial and repeating loads and stores, and the 16x16
// (AVX-512) / 8x8 / 4x4 transpose_block itself. Every value is distinct, so a misplaced one shows. And the kernels'
// own buffers (et::float_buffer) start on a cache line, as their vector loads need to be fast on Intel CPUs.
#include "../support.hpp"

#include <bit>
#include <cstdint>
#include <utility>
#include <vector>

using kiln::index_t;
namespace et = kiln::et;

namespace {
std::vector<float> distinct_values(index_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(i + 1);
  return v;
}
}  // namespace

TEST_CASE("packing: transpose_block transposes a square block of vectors", "[packing]") {
  constexpr int n = et::simd_width;
  et::vfloat v[n];
  for (int r = 0; r < n; ++r)
    for (int l = 0; l < n; ++l) v[r][l] = static_cast<float>(r * 100 + l);
  et::transpose_block(v);
  for (int r = 0; r < n; ++r)
    for (int l = 0; l < n; ++l) REQUIRE(v[r][l] == static_cast<float>(l * 100 + r));
}

TEST_CASE("packing: load_first and store_first move the first n lanes and no others, for every n", "[packing]") {
  constexpr int n = et::simd_width;
  std::vector<float> src = distinct_values(n + 2);
  et::vfloat v;
  for (int l = 0; l < n; ++l) v[l] = static_cast<float>(-1 - l);
  for (int count = 0; count <= n; ++count) {
    const et::vfloat loaded = et::load_first(src.data() + 1, count);
    for (int l = 0; l < n; ++l) REQUIRE(loaded[l] == (l < count ? src[static_cast<std::size_t>(1 + l)] : 0.0f));
    std::vector<float> dst(n + 2, 7.0f);
    et::store_first(dst.data() + 1, v, count);
    REQUIRE(dst[0] == 7.0f);
    for (int l = 0; l <= n; ++l) REQUIRE(dst[static_cast<std::size_t>(1 + l)] == (l < count ? v[l] : 7.0f));
  }
}

TEST_CASE("packing: group_sums<simd_width, n> gives lane j the sum of vector j, for j < n, reading only the first n "
          "vectors", "[packing]") {
  [&]<int... N>(std::integer_sequence<int, N...>) {
    auto check = [&](auto count) {
      constexpr int n = count + 1;
      et::vfloat v[n];
      for (int r = 0; r < n; ++r)
        for (int l = 0; l < et::simd_width; ++l) v[r][l] = static_cast<float>((r + 1) * 1000 + l * l);
      const et::vfloat sums = et::group_sums<et::simd_width, n>(v);
      for (int r = 0; r < n; ++r) {
        float expected = 0;
        for (int l = 0; l < et::simd_width; ++l) expected += static_cast<float>((r + 1) * 1000 + l * l);
        INFO(n << " vectors, lane " << r);
        REQUIRE(sums[r] == expected);
      }
    };
    (check(std::integral_constant<int, N>{}), ...);
  }(std::make_integer_sequence<int, et::simd_width>{});
}

TEST_CASE("packing: group_sums<g> gives lane k * g + j the sum of vector j's lanes k * g to k * g + g - 1",
          "[packing]") {
  [&]<int... B>(std::integer_sequence<int, B...>) {
    auto check = [&](auto group) {
      constexpr int g = group;
      et::vfloat v[g];
      for (int j = 0; j < g; ++j)
        for (int l = 0; l < et::simd_width; ++l) v[j][l] = static_cast<float>((j + 1) * 1000 + l * l);
      const et::vfloat sums = et::group_sums<g>(v);
      for (int l = 0; l < et::simd_width; ++l) {
        const int k = l / g, j = l % g;
        float expected = 0;
        for (int m = k * g; m < k * g + g; ++m) expected += static_cast<float>((j + 1) * 1000 + m * m);
        INFO("groups of " << g << ", lane " << l);
        REQUIRE(sums[l] == expected);
      }
    };
    (check(std::integral_constant<int, (1 << B)>{}), ...);
  }(std::make_integer_sequence<int, std::bit_width(unsigned{et::simd_width})>{});
}

TEST_CASE("packing: load_repeated<n> repeats the first n values across the vector, load_repeated_first zeros past "
          "count", "[packing]") {
  const std::vector<float> src = distinct_values(et::simd_width);
  [&]<int... B>(std::integer_sequence<int, B...>) {
    auto check = [&](auto repeat) {
      constexpr int n = repeat;
      const et::vfloat all = et::load_repeated<n>(src.data());
      for (int l = 0; l < et::simd_width; ++l) REQUIRE(all[l] == src[static_cast<std::size_t>(l % n)]);
      for (int count = 0; count <= n; ++count) {
        const et::vfloat first = et::load_repeated_first<n>(src.data(), count);
        for (int l = 0; l < et::simd_width; ++l) {
          INFO(n << " repeated, " << count << " loaded, lane " << l);
          REQUIRE(first[l] == (l % n < count ? src[static_cast<std::size_t>(l % n)] : 0.0f));
        }
      }
    };
    (check(std::integral_constant<int, (1 << B)>{}), ...);
  }(std::make_integer_sequence<int, std::bit_width(unsigned{et::simd_width})>{});
}

TEST_CASE("packing: transpose_matrix equals its definition at every shape", "[packing]") {
  for (index_t rows : {1, 3, 15, 16, 17, 33, 64})
    for (index_t cols : {1, 4, 16, 31, 48, 256}) {
      const auto src = distinct_values(rows * cols);
      std::vector<float> dst(src.size(), -1.0f);
      et::transpose_matrix(src.data(), rows, cols, dst.data());
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
          INFO(rows << "x" << cols << " at " << r << ", " << c);
          REQUIRE(dst[static_cast<std::size_t>(c * rows + r)] == src[static_cast<std::size_t>(r * cols + c)]);
        }
    }
}

TEST_CASE("packing: pack_linear_matrix equals its definition for W and W^T at every shape", "[packing]") {
  constexpr index_t n = et::simd_width;
  for (index_t in : {1, 5, 16, 17, 48, 100})
    for (index_t out : {1, 2, 3, 4, 10, 16, 33, 64, 80, 130}) {
      const auto w = distinct_values(in * out);  // PyTorch's weight [out, in]
      for (const bool transposed : {false, true}) {
        // M [rows_m, cols_m]: W itself (stride_o = in, stride_i = 1), or W^T (stride_o = 1, stride_i = in).
        const index_t m_out = transposed ? in : out, m_in = transposed ? out : in;
        const index_t stride_o = transposed ? 1 : in, stride_i = transposed ? in : 1;
        std::vector<float> packed(static_cast<std::size_t>(et::linear_packed_size(m_in, m_out)), -1.0f);
        et::pack_linear_matrix(w.data(), m_in, m_out, stride_o, stride_i, packed.data());
        if (m_out <= et::linear_dot_out) {  // linear_dots' layout: chunks of c inputs for P outputs
          const index_t c = et::linear_dot_chunk(m_out);
          for (index_t o = 0; o < et::linear_dot_outputs(m_out); ++o)
            for (index_t i = 0; i < (m_in + c - 1) / c * c; ++i) {
              INFO((transposed ? "W^T of " : "W of ") << out << "x" << in << ": output " << o << ", input " << i);
              const float expected = o < m_out && i < m_in ? w[static_cast<std::size_t>(o * stride_o + i * stride_i)]
                                                           : 0.0f;
              REQUIRE(packed[static_cast<std::size_t>(i / c * n + o * c + i % c)] == expected);
            }
          continue;
        }
        const index_t blocks = et::linear_blocks(m_out);
        for (index_t o = 0; o < blocks * n; ++o)
          for (index_t i = 0; i < m_in; ++i) {
            const index_t block = o / n, lane = o % n;
            const index_t g0 = block / et::linear_block_group * et::linear_block_group;
            const index_t nb = std::min<index_t>(et::linear_block_group, blocks - g0);
            const index_t at = g0 * m_in * n + (i * nb + (block - g0)) * n + lane;
            const float expected = o < m_out ? w[static_cast<std::size_t>(o * stride_o + i * stride_i)] : 0.0f;
            INFO((transposed ? "W^T of " : "W of ") << out << "x" << in << ": output " << o << ", input " << i);
            REQUIRE(packed[static_cast<std::size_t>(at)] == expected);
          }
      }
    }
}

TEST_CASE("packing: a float_buffer starts on a 64-byte boundary at every size, grown, copied and moved", "[packing]") {
  auto aligned = [](const et::float_buffer& b) { return reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0; };
  for (const std::size_t n : {1, 3, 17, 1000, 40000, 300000}) {
    et::float_buffer b(n, 1.0f);
    REQUIRE(aligned(b));
    b.resize(3 * n + 1, 2.0f);
    REQUIRE(aligned(b));
    REQUIRE((b[0] == 1.0f && b[n - 1] == 1.0f && b[n] == 2.0f && b[3 * n] == 2.0f));
    const et::float_buffer copy = b;
    REQUIRE(aligned(copy));
    REQUIRE(copy == b);
    const et::float_buffer moved = std::move(b);
    REQUIRE(aligned(moved));
  }
}
