// Dims: the static per-sample shape of an activation (every dim but the batch).
// One notation everywhere (errors, summaries, docs): [N, 1, 28, 28] is a batch of per-sample [1, 28, 28].
#pragma once

#include <kiln/dsl/text.hpp>

namespace kiln {

using index_t = long;

struct Dims {
  static constexpr int max_rank = 7;
  int rank = 0;
  index_t sizes[max_rank]{};

  constexpr Dims() = default;
  template <class I0, class... I>
  constexpr explicit Dims(I0 s0, I... s)
      : rank(static_cast<int>(1 + sizeof...(I))), sizes{static_cast<index_t>(s0), static_cast<index_t>(s)...} {}

  constexpr index_t operator[](int i) const { return sizes[i]; }
  constexpr index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank; ++i) n *= sizes[i];
    return n;
  }
  constexpr index_t last() const { return sizes[rank - 1]; }
  // Product of the dims from `first` (inclusive) to `end` (exclusive).
  constexpr index_t product(int first, int end) const {
    index_t n = 1;
    for (int i = first; i < end; ++i) n *= sizes[i];
    return n;
  }
  friend constexpr bool operator==(const Dims& a, const Dims& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i)
      if (a.sizes[i] != b.sizes[i]) return false;
    return true;
  }
  // "[N, 1, 28, 28]": the batch is written N.
  constexpr Text text() const {
    Text t{"[N"};
    for (int i = 0; i < rank; ++i) t += Text{", "} + sizes[i];
    return t += "]";
  }
};

}  // namespace kiln
