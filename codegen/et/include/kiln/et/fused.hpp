// The fused forward pass: the whole network as one kernel over tiles of batch rows.
//
// A tile of `tile_rows` samples walks through every layer with its intermediates in two per-thread scratch
// buffers (ping-pong) that stay in cache; only the network's output is written to memory. Views (Flatten,
// Unflatten) and eval-mode Dropout pass the tile on without work.
//
// BatchNorm1d with batch statistics (train mode, or no running stats) needs the mean and variance over the
// whole batch before it can normalise any row. The kernel splits there: the layers before it run fused over
// all tiles into one full-batch buffer (its input), the statistics are computed from that buffer, and the
// next fused segment starts at the BatchNorm. In eval mode BatchNorm is a per-channel affine map and the
// network is a single segment.
//
// forward_unfused runs the same network one layer at a time over the whole batch, every intermediate a
// full-batch buffer: with Unfused::same_kernels it uses the fused kernel's per-layer code (the baseline that
// shows what fusion gains), with Unfused::plain_loops plain loops for Linear (the independent reference the
// tests compare the fused kernel against).
#pragma once

#include <kiln/dsl/schema.hpp>
#include <kiln/dsl/sequential.hpp>
#include <kiln/et/evaluators.hpp>
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/threads.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <vector>

namespace kiln::et {

// One forward call: the network, its parameters (one LayerParams per leaf layer), the inputs and output
// ([batch, per-sample] row-major), and the state that dropout and batch norm need.
template <Network Net>
struct ForwardCall {
  const Net& net;
  std::span<const LayerParams> params;
  const float* x = nullptr;
  const float* x2 = nullptr;  // the second input, for a network that starts with Bilinear
  float* y = nullptr;
  index_t batch = 0;
  bool training = false;
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
};

// Memory a forward call reuses from one call to the next, so that a call allocates nothing: per BatchNorm1d
// its per-channel scale and shift, and the full-batch buffers where the kernel splits.
template <Network Net>
struct Workspace {
  static constexpr std::size_t L = network_traits<Net>::leaf_count;
  std::array<std::vector<float>, L> batchnorm;
  std::vector<float> stage[2];
  std::uint32_t calls = 0;  // calls so far: odd and even ones walk the weights in opposite orders
  Workspace() {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((BatchStatsEvaluator<typename network_traits<Net>::template leaf<I>>
            ? batchnorm[I].resize(2 * static_cast<std::size_t>(network_traits<Net>::analysis.in[I].sizes[0]))
            : void()),
       ...);
    }(std::make_index_sequence<L>{});
  }
};

namespace detail {
// Calls f(index_constant) for each leaf index in [first, last).
template <std::size_t L, class F>
void for_leaves_in(std::size_t first, std::size_t last, F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I >= first && I < last ? f(std::integral_constant<std::size_t, I>{}) : void()), ...);
  }(std::make_index_sequence<L>{});
}
}  // namespace detail

// The batch-statistics checks PyTorch makes, done before anything runs so a failed call changes nothing.
template <Network Net, class Leaves>
void check_batch_stats(const Leaves& leaves, index_t batch, bool training) {
  using T = network_traits<Net>;
  detail::for_leaves_in<T::leaf_count>(0, T::leaf_count, [&](auto i) {
    using Layer = typename T::template leaf<i>;
    if constexpr (BatchStatsEvaluator<Layer>) {
      const auto& bn = std::get<i>(leaves);
      if (bn.uses_batch_stats(training) && Eval<Layer>::values_per_channel(T::analysis.in[i], batch) <= 1)
        throw Error(fmt::format("layer {} ({}): expected more than 1 value per channel when training, got input of "
                                "size [{}{}]",
                                T::analysis.path[i].view(), Layer::name().view(), batch,
                                [&] {
                                  std::string s;
                                  for (int d = 0; d < T::analysis.in[i].rank; ++d)
                                    s += fmt::format(", {}", T::analysis.in[i].sizes[d]);
                                  return s;
                                }()));
    }
  });
}

namespace detail {

// How a batch is cut into tiles: blocks of linear_rows rows (the micro-kernel's), dealt out as evenly as
// possible to a number of tiles that is a multiple of the thread count (so the threads get equal work), each
// tile at most max_rows rows. Tile t covers rows [begin(t), begin(t + 1)).
struct Tiling {
  index_t batch = 0, blocks = 0, count = 0;
  int threads = 1;
  Tiling(index_t batch_, index_t max_rows, int threads_)
      : batch(batch_), blocks((batch_ + linear_rows - 1) / linear_rows), threads(threads_) {
    const index_t per_tile = std::max<index_t>(max_rows / linear_rows, 1);
    count = (blocks + per_tile - 1) / per_tile;
    if (threads > 1 && blocks >= 2 * threads) count = (count + threads - 1) / threads * threads;
    count = std::max<index_t>(std::min(count, blocks), batch_ > 0 ? 1 : 0);
  }
  // Rounded up: where the blocks do not divide evenly the first tiles are the larger ones, and the caller,
  // which runs tile 0 while the workers are still taking up the job, starts first.
  index_t begin(index_t t) const { return std::min(batch, (t * blocks + count - 1) / count * linear_rows); }
  index_t rows(index_t t) const { return begin(t + 1) - begin(t); }
  // How many threads take part in run_tiles, each with its own fixed set of tiles.
  index_t slots() const { return std::min<index_t>(threads, count); }
  // Runs body(slot, t) for every tile t. Slot w takes tiles w, w + slots(), ...: the same rows go to the same
  // slot on every call (slot 0 is the caller's), so a core finds their input and output in its own cache, and
  // per-slot sums (the training pass's gradients) do not depend on timing. Taken dynamically, tiles moved
  // between cores from call to call, and for small layers moving the rows cost as much as computing them (tiny,
  // batch 4096, 2 threads: 1.75x the 1-thread throughput).
  template <class Body>
  void run_tiles(Body&& body) const {
    const index_t n = slots();
    auto slot = [&](index_t w) {
      for (index_t t = w; t < count; t += n) body(w, t);
    };
    if (threads > 1) parallel_for(n, slot);  // on the pool when this tiling uses threads, inline otherwise
    else
      for (index_t w = 0; w < n; ++w) slot(w);
  }
};

template <Network Net>
struct Plan {
  using T = network_traits<Net>;
  static constexpr std::size_t L = T::leaf_count;
  static_assert([]<class... Leaves>(std::tuple<Leaves...>*) { return (Evaluator<Leaves> && ...); }(
                    static_cast<typename T::leaves*>(nullptr)),
                "kiln::et: a layer of this network has no complete evaluator (see the Evaluator concept in et/eval.hpp)");

  static constexpr index_t max_width() {
    index_t w = std::max(T::input_dims.numel(), T::input2_dims.numel());
    for (std::size_t i = 0; i < L; ++i) w = std::max({w, T::analysis.in[i].numel(), T::analysis.out[i].numel()});
    return w;
  }
  // Rows per tile, at most: two scratch buffers of about 128 KiB each, a multiple of the micro-kernel's rows.
  // (A tile of the Tiling has at most one block more than its share: tile_rows + linear_rows.)
  static constexpr index_t tile_rows =
      std::clamp<index_t>(32768 / max_width() / linear_rows * linear_rows, linear_rows, 40 * linear_rows);
  static constexpr index_t scratch_rows = tile_rows + linear_rows;

  // Below this much work per call (about 2 us) the threads cost more than they save: one thread runs it.
  // Handing a tile to a worker that is awake costs about 0.3 us; to one that sleeps, one notification.
  static constexpr double min_parallel_flops = 4e5;

  static Tiling tiling(const Net& net, index_t batch) {
    const bool parallel = static_cast<double>(batch) * static_cast<double>(flops_per_sample(net)) >= min_parallel_flops;
    return Tiling(batch, tile_rows, parallel ? get_num_threads() : 1);
  }

  // The ordinal of leaf I among the network's Dropouts (its RNG stream).
  template <std::size_t I>
  static constexpr std::uint32_t dropout_stream() {
    return [&]<std::size_t... J>(std::index_sequence<J...>) {
      return (0u + ... + (std::is_same_v<typename T::template leaf<J>, nn::Dropout> ? 1u : 0u));
    }(std::make_index_sequence<I>{});
  }
};

// What a call knows about each leaf before it runs: its parameters (with BatchNorm's scale and shift, already
// prepared where the running stats apply), whether it passes the tile on unchanged, whether it needs the
// statistics of the whole batch.
template <Network Net>
struct CallSetup {
  static constexpr std::size_t L = network_traits<Net>::leaf_count;
  std::array<LayerParams, L> params;
  std::array<bool, L> passes{}, batch_stats{};
  bool reverse_weights = false;
};

template <Network Net, class Leaves>
CallSetup<Net> setup_call(const ForwardCall<Net>& call, const Leaves& leaves, Workspace<Net>& ws) {
  using T = network_traits<Net>;
  constexpr std::size_t L = T::leaf_count;
  check_batch_stats<Net>(leaves, call.batch, call.training);
  CallSetup<Net> setup;
  for (std::size_t i = 0; i < L; ++i) setup.params[i] = call.params[i];
  setup.reverse_weights = (ws.calls++ & 1) != 0;
  for_leaves_in<L>(0, L, [&](auto i) {
    using Layer = typename T::template leaf<i>;
    const auto& layer = std::get<i>(leaves);
    setup.passes[i] = Eval<Layer>::passes_through(layer, call.training);
    if constexpr (BatchStatsEvaluator<Layer>) {
      setup.batch_stats[i] = layer.uses_batch_stats(call.training);
      setup.params[i].scale = ws.batchnorm[i].data();
      setup.params[i].shift = ws.batchnorm[i].data() + Layer::num_features;
      if (!setup.batch_stats[i])
        Eval<Layer>::prepare(layer, T::analysis.in[i], setup.params[i], call.training, nullptr, call.batch,
                             ws.batchnorm[i].data(), ws.batchnorm[i].data() + Layer::num_features);
    }
  });
  return setup;
}

// Prepares the batch-statistics BatchNorm at leaf `i` from its whole input x (and updates its running stats).
template <Network Net, class Leaves>
void prepare_batch_stats(std::size_t i, const ForwardCall<Net>& call, const Leaves& leaves, CallSetup<Net>& setup,
                         Workspace<Net>& ws, const float* x) {
  using T = network_traits<Net>;
  for_leaves_in<T::leaf_count>(i, i + 1, [&](auto c) {
    using Layer = typename T::template leaf<c>;
    if constexpr (BatchStatsEvaluator<Layer>)
      Eval<Layer>::prepare(std::get<c>(leaves), T::analysis.in[c], setup.params[c], call.training, x, call.batch,
                           ws.batchnorm[c].data(), ws.batchnorm[c].data() + Layer::num_features);
  });
}

// Runs leaves [first, last) fused over the whole batch, in tiles of `tile` rows spread over the threads:
// reads src (the input of `first`, full batch) and writes dst (the output of last - 1, full batch).
template <Network Net, class Leaves>
void run_segment(std::size_t first, std::size_t last, const ForwardCall<Net>& call, const Leaves& leaves,
                 const CallSetup<Net>& setup, const Tiling& tiling, const float* src, float* dst) {
  using T = network_traits<Net>;
  using P = Plan<Net>;
  constexpr std::size_t L = T::leaf_count;
  const index_t batch = call.batch;
  const index_t in_width = T::analysis.in[first].numel(), out_width = T::analysis.out[last - 1].numel();
  std::size_t last_compute = L;
  for (std::size_t i = first; i < last; ++i)
    if (!setup.passes[i]) last_compute = i;
  if (last_compute == L) {  // only views: the data is unchanged
    if (src != dst) std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(batch * in_width));
    return;
  }
  tiling.run_tiles([&](index_t, index_t t) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<std::size_t>(2 * P::scratch_rows * P::max_width()))
      scratch.resize(static_cast<std::size_t>(2 * P::scratch_rows * P::max_width()));
    float* const buffers[2] = {scratch.data(), scratch.data() + P::scratch_rows * P::max_width()};
    const index_t r0 = tiling.begin(t), rows = tiling.rows(t);
    const float* cur = src + r0 * in_width;
    TileContext ctx{call.training, r0, call.seed, call.step, 0, setup.reverse_weights};
    for_leaves_in<L>(first, last_compute + 1, [&](auto i) {
      using Layer = typename T::template leaf<i>;
      if (setup.passes[i]) return;
      float* out = i == last_compute ? dst + r0 * out_width : (cur == buffers[0] ? buffers[1] : buffers[0]);
      ctx.dropout_stream = P::template dropout_stream<i>();
      if constexpr (TwoInputEvaluator<Layer>)
        Eval<Layer>::forward_two_inputs(std::get<i>(leaves), T::analysis.in[i], setup.params[i], cur,
                              call.x2 + r0 * T::input2_dims.numel(), out, rows, ctx);
      else
        Eval<Layer>::forward(std::get<i>(leaves), T::analysis.in[i], setup.params[i], cur, out, rows, ctx);
      cur = out;
    });
  });
}

// How a call cuts the network: segment s is leaves [first(s), last(s)). A segment starts at leaf 0 and at every
// BatchNorm that needs the statistics of its whole input, which must be complete before any row can go on.
template <std::size_t L>
struct Segments {
  std::array<std::size_t, L + 1> start{};
  std::size_t count = 0;
  explicit Segments(const std::array<bool, L>& batch_stats) {
    for (std::size_t i = 0; i < L; ++i)
      if (i == 0 || batch_stats[i]) start[count++] = i;
    start[count] = L;
  }
  std::size_t first(std::size_t s) const { return start[s]; }
  std::size_t last(std::size_t s) const { return start[s + 1]; }
};

// Runs segments [0, upto) forward over the whole batch, fused tile by tile: segment 0 reads the call's input,
// segment s writes output_of(s) (the next segment's input, or the network's output), and a batch-statistics
// BatchNorm that starts a segment is prepared from that segment's input first. Returns the last one written.
template <Network Net, class Leaves, class OutputOf>
const float* run_segments(const ForwardCall<Net>& call, const Leaves& leaves, CallSetup<Net>& setup,
                          Workspace<Net>& ws, const Tiling& tiling, const Segments<network_traits<Net>::leaf_count>& segments,
                          std::size_t upto, OutputOf&& output_of) {
  const float* src = call.x;
  for (std::size_t s = 0; s < upto; ++s) {
    if (setup.batch_stats[segments.first(s)]) prepare_batch_stats(segments.first(s), call, leaves, setup, ws, src);
    float* dst = output_of(s);
    run_segment(segments.first(s), segments.last(s), call, leaves, setup, tiling, src, dst);
    src = dst;
  }
  return src;
}

}  // namespace detail

template <Network Net>
void forward_fused(const ForwardCall<Net>& call, Workspace<Net>& ws) {
  using T = network_traits<Net>;
  using P = detail::Plan<Net>;
  constexpr std::size_t L = T::leaf_count;
  const auto leaves = leaf_values(call.net);
  const index_t batch = call.batch;

  if constexpr (L == 0) {
    std::memcpy(call.y, call.x, sizeof(float) * static_cast<std::size_t>(batch * T::input_dims.numel()));
  } else {
    detail::CallSetup<Net> setup = detail::setup_call(call, leaves, ws);
    const detail::Segments<L> segments(setup.batch_stats);
    // The full-batch input of each later segment lives in one of the workspace's two stage buffers.
    detail::run_segments(call, leaves, setup, ws, P::tiling(call.net, batch), segments, segments.count,
                         [&](std::size_t s) {
                           if (s + 1 == segments.count) return call.y;
                           auto& buffer = ws.stage[s & 1];
                           buffer.resize(static_cast<std::size_t>(batch * T::analysis.in[segments.first(s + 1)].numel()));
                           return buffer.data();
                         });
  }
}

enum class Unfused { plain_loops, same_kernels };

template <Network Net>
void forward_unfused(const ForwardCall<Net>& call, Unfused how) {
  using T = network_traits<Net>;
  using P = detail::Plan<Net>;
  constexpr std::size_t L = T::leaf_count;
  const auto leaves = leaf_values(call.net);
  const index_t batch = call.batch;
  check_batch_stats<Net>(leaves, batch, call.training);

  std::vector<float> current(call.x, call.x + batch * T::input_dims.numel()), next;
  detail::for_leaves_in<L>(0, L, [&](auto i) {
    using Layer = typename T::template leaf<i>;
    const auto& layer = std::get<i>(leaves);
    LayerParams p = call.params[i];
    std::vector<float> scale_shift;
    if constexpr (BatchStatsEvaluator<Layer>) {
      scale_shift.resize(2 * Layer::num_features);
      p.scale = scale_shift.data();
      p.shift = scale_shift.data() + Layer::num_features;
      Eval<Layer>::prepare(layer, T::analysis.in[i], p, call.training, current.data(), batch, scale_shift.data(),
                           scale_shift.data() + Layer::num_features);
    }
    if (Eval<Layer>::passes_through(layer, call.training)) return;
    next.assign(static_cast<std::size_t>(batch * T::analysis.out[i].numel()), 0.0f);
    const TileContext ctx{call.training, 0, call.seed, call.step, P::template dropout_stream<i>()};
    if constexpr (TwoInputEvaluator<Layer>) {
      if (how == Unfused::plain_loops)
        Eval<Layer>::forward_two_inputs_reference(layer, T::analysis.in[i], p, current.data(), call.x2, next.data(), batch, ctx);
      else
        Eval<Layer>::forward_two_inputs(layer, T::analysis.in[i], p, current.data(), call.x2, next.data(), batch, ctx);
    } else if constexpr (ReferenceEvaluator<Layer>) {
      if (how == Unfused::plain_loops)
        Eval<Layer>::forward_reference(layer, T::analysis.in[i], p, current.data(), next.data(), batch, ctx);
      else
        Eval<Layer>::forward(layer, T::analysis.in[i], p, current.data(), next.data(), batch, ctx);
    } else
      Eval<Layer>::forward(layer, T::analysis.in[i], p, current.data(), next.data(), batch, ctx);
    std::swap(current, next);
  });
  std::memcpy(call.y, current.data(), sizeof(float) * current.size());
}

}  // namespace kiln::et
