// What Kiln's runtime tests share: where the golden files are, and the PyTorch tolerance.
#pragma once

#include <kiln/kiln.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

namespace kiln::testing {

inline std::filesystem::path golden_path(const std::string& name) {
  return std::filesystem::path{KILN_GOLDEN_DIR} / (name + ".safetensors");
}

// Max relative error of `actual` against `expected`, the measure of docs/SEMANTICS.md: within 1e-5 relative,
// or 1e-6 absolute near zero. Returns the worst |a - e| / (1e-5 |e| + 1e-6) ratio (<= 1 passes) and where.
struct Closeness {
  double worst_ratio = 0;
  double max_rel_error = 0;
  index_t worst_index = -1;
  float actual = 0, expected = 0;
};

inline Closeness closeness(const float* actual, const float* expected, index_t n, double rel = 1e-5,
                           double abs = 1e-6) {
  Closeness c;
  for (index_t i = 0; i < n; ++i) {
    const double a = actual[i], e = expected[i];
    const double diff = std::abs(a - e);
    double ratio = diff / (rel * std::abs(e) + abs);
    // NaN only where PyTorch has NaN, an infinity only where it has the same one
    if (!std::isfinite(a) || !std::isfinite(e)) ratio = (a == e || (std::isnan(a) && std::isnan(e))) ? 0 : INFINITY;
    if (std::abs(e) > 1e-6) c.max_rel_error = std::max(c.max_rel_error, diff / std::abs(e));
    if (ratio > c.worst_ratio) c = {ratio, c.max_rel_error, i, actual[i], expected[i]};
  }
  return c;
}

// CHECKs that two tensors have the same shape and agree within the tolerance; says where they do not.
inline void check_close(const Tensor& actual, const Tensor& expected, const std::string& what, double rel = 1e-5,
                        double abs = 1e-6) {
  INFO(what);
  REQUIRE(shape_text(actual.shape()) == shape_text(expected.shape()));
  const Closeness c = closeness(actual.data(), expected.data(), actual.numel(), rel, abs);
  INFO("worst element " << c.worst_index << ": got " << c.actual << ", expected " << c.expected
                        << " (max relative error " << c.max_rel_error << ")");
  CHECK(c.worst_ratio <= 1.0);
}

// Same shape, dtype and bytes: bit for bit (a NaN equals itself, 0.0 is not -0.0).
inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

// Puts the pool's thread count back when a test that changes it ends.
struct RestoreThreads {
  int n = get_num_threads();
  ~RestoreThreads() { set_num_threads(n); }
};

}  // namespace kiln::testing
