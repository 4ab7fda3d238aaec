// Where a call keeps each value of a network's data flow (the steps of sequential.hpp's Analysis), and the
// joins' kernels (Residual and Sum add, Concat concatenates).
//
// A value is stored where the step that computes it wrote it: a step that passes its input on (a view,
// eval-mode Dropout) adds no storage, its value is its input's (its root). Within a segment of the fused kernel
// (fused.hpp) a tile keeps values in per-thread scratch slots, reused once a value's last reader has run: a
// straight line needs two (ping-pong), a residual block three. A value read in a later segment than its own
// (the skip path around a batch-statistics BatchNorm) is stored for the whole batch; the network's output is
// written straight to the caller's y.
#pragma once

#include <kiln/dsl/sequential.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

namespace kiln::et {

template <std::size_t S>
struct Flow {
  static constexpr std::size_t V = first_step_value + S;  // values: the two inputs, then one per step
  std::array<int, V> root{};        // the value whose storage holds this one
  std::array<int, V> defined_at{};  // per root: the step that computes it (-1: a network input)
  std::array<int, V> last_use{};    // per root: the last step that reads it (S: the network's output)
  std::array<bool, V> stored{};     // per root: read in a later segment, so kept for the whole batch
  std::array<int, V> slot{};        // per root: its scratch slot in a tile, or -1
  std::array<bool, S> epilogue{};   // per step: it runs in the stores of the step before, whose value has no storage
  int slots = 0;
  std::array<std::size_t, S + 1> segment_start{};  // segment s is steps [segment_start[s], segment_start[s + 1])
  std::size_t segments = 0;
  std::array<std::size_t, S> segment_of{};
  int output_root = 0;
  bool output_direct = false;  // the output's root is computed in the last segment: its step writes y

  std::size_t first(std::size_t s) const { return segment_start[s]; }
  std::size_t last(std::size_t s) const { return segment_start[s + 1]; }
};

// The flow of one call, from the network's steps and, per step, whether it passes its input on, whether it
// needs the statistics of its whole input (a segment starts there), and whether it could run as the epilogue
// of the step before (an element-wise layer after a Linear): it does where it is that value's only reader and
// the value is neither stored nor the output.
template <std::size_t S, class A>
Flow<S> plan_flow(const A& analysis, const std::array<bool, S>& passes, const std::array<bool, S>& batch_stats,
                  const std::array<bool, S>& fusable) {
  Flow<S> f;
  const auto& steps = analysis.steps;
  f.root[0] = 0, f.root[1] = 1;
  f.defined_at.fill(-1);
  f.last_use.fill(-1);
  f.slot.fill(-1);
  for (std::size_t k = 0; k < S; ++k) {
    const int v = value_of_step(k);
    f.root[v] = passes[k] ? f.root[steps[k].inputs[0]] : v;
    if (!passes[k]) f.defined_at[v] = static_cast<int>(k);
    if (k == 0 || batch_stats[k]) f.segment_start[f.segments++] = k;
    f.segment_of[k] = f.segments - 1;
  }
  f.segment_start[f.segments] = S;
  auto segment_of_root = [&](int r) { return f.defined_at[r] < 0 ? 0 : f.segment_of[f.defined_at[r]]; };
  for (std::size_t k = 0; k < S; ++k) {
    if (passes[k]) continue;
    for (int j = 0; j < steps[k].input_count; ++j) {
      const int r = f.root[steps[k].inputs[j]];
      f.last_use[r] = static_cast<int>(k);
      if (f.defined_at[r] >= 0 && f.segment_of[k] > segment_of_root(r)) f.stored[r] = true;
    }
  }
  f.output_root = f.root[analysis.output_value];
  f.last_use[f.output_root] = static_cast<int>(S);
  if (f.output_root >= first_step_value && segment_of_root(f.output_root) + 1 < f.segments) f.stored[f.output_root] = true;
  f.output_direct = f.output_root >= first_step_value && !f.stored[f.output_root];
  for (std::size_t k = 1; k < S; ++k) {
    const int v = value_of_step(k - 1);
    f.epilogue[k] = fusable[k] && !passes[k - 1] && !passes[k] && !batch_stats[k] && steps[k].inputs[0] == v &&
                    f.last_use[v] == static_cast<int>(k) && !f.stored[v] && v != f.output_root;
  }
  // Scratch slots, greedily: a value takes the first slot whose last occupant's last reader ran before it.
  std::array<int, S> slot_free_after{};
  for (std::size_t k = 0; k < S; ++k) {
    const int r = value_of_step(k);
    if (passes[k] || f.stored[r] || (r == f.output_root && f.output_direct) || (k + 1 < S && f.epilogue[k + 1]))
      continue;
    int s = 0;
    // An epilogue's value is written by the step before, which must not write over its own input.
    const int written_at = static_cast<int>(f.epilogue[k] ? k - 1 : k);
    while (s < f.slots && slot_free_after[static_cast<std::size_t>(s)] >= written_at) ++s;
    if (s == f.slots) ++f.slots;
    f.slot[r] = s;
    slot_free_after[static_cast<std::size_t>(s)] = f.last_use[r];
  }
  return f;
}

// The joins, on `rows` rows. Each value is row-major [rows, its per-sample size].
namespace join {

// y = x_0 + x_1 + ... (in this order, as the reference modules add).
inline void add(const float* const* x, int n, float* y, index_t count) {
  if (n == 1) {
    std::memcpy(y, x[0], sizeof(float) * static_cast<std::size_t>(count));
    return;
  }
  for (index_t i = 0; i < count; ++i) y[i] = x[0][i] + x[1][i];
  for (int k = 2; k < n; ++k)
    for (index_t i = 0; i < count; ++i) y[i] += x[k][i];
}

// How a concat along per-sample dim d lays out a sample: `outer` blocks (the dims before d), each the
// branches' pieces of width[k] * inner floats one after the other.
struct ConcatLayout {
  index_t outer = 1, inner = 1, total = 0;
  std::array<index_t, nn::max_branches> piece{};
  ConcatLayout() = default;
  template <class A>
  ConcatLayout(const A& analysis, const Step& s) {
    const Dims& out = s.out;
    for (int i = 0; i < s.dim; ++i) outer *= out.sizes[i];
    for (int i = s.dim + 1; i < out.rank; ++i) inner *= out.sizes[i];
    for (int k = 0; k < s.input_count; ++k) {
      piece[static_cast<std::size_t>(k)] = analysis.dims(s.inputs[k]).sizes[s.dim] * inner;
      total += piece[static_cast<std::size_t>(k)];
    }
  }
};

inline void concat(const ConcatLayout& c, const float* const* x, int n, float* y, index_t rows) {
  for (index_t r = 0; r < rows * c.outer; ++r) {
    float* out = y + r * c.total;
    for (int k = 0; k < n; ++k) {
      const index_t w = c.piece[static_cast<std::size_t>(k)];
      std::memcpy(out, x[k] + r * w, sizeof(float) * static_cast<std::size_t>(w));
      out += w;
    }
  }
}

// dL/d(branch k's output) from dL/dy: its slice, written to dx (or added to it, when `accumulate`).
inline void concat_backward(const ConcatLayout& c, int k, const float* dy, float* dx, bool accumulate, index_t rows) {
  index_t offset = 0;
  for (int j = 0; j < k; ++j) offset += c.piece[static_cast<std::size_t>(j)];
  const index_t w = c.piece[static_cast<std::size_t>(k)];
  for (index_t r = 0; r < rows * c.outer; ++r) {
    const float* src = dy + r * c.total + offset;
    float* dst = dx + r * w;
    if (accumulate)
      for (index_t i = 0; i < w; ++i) dst[i] += src[i];
    else
      std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(w));
  }
}

// dx = dy, or dx += dy.
inline void pass_gradient(const float* dy, float* dx, bool accumulate, index_t count) {
  if (accumulate)
    for (index_t i = 0; i < count; ++i) dx[i] += dy[i];
  else
    std::memcpy(dx, dy, sizeof(float) * static_cast<std::size_t>(count));
}

}  // namespace join

}  // namespace kiln::et
