// The fused forward pass: the whole network as one kernel over tiles of batch rows.
//
// A tile of `tile_rows` samples walks through every step of the network's data flow (its layers, and the joins
// of Residual, Sum and Concat) with its intermediates in per-thread scratch slots that stay in cache (flow.hpp:
// two, ping-pong, for a straight line; one more while a skip path waits); only the network's output is written
// to memory. Views (Flatten, Unflatten, Identity) and eval-mode Dropout pass the tile on without work, and an
// element-wise layer right after a Linear runs in the Linear's stores (its epilogue) where nothing else reads the
// Linear's output: a pass over the tile less (tiny 16-32-32-4, batch 4096: 116 -> 110 us).
//
// BatchNorm1d with batch statistics (train mode, or no running stats) needs the mean and variance over the
// whole batch before it can normalise any row. The kernel splits there: the steps before it run fused over
// all tiles into one full-batch buffer (its input, and any skip path that crosses it), the statistics are
// computed from that buffer, and the next fused segment starts at the BatchNorm. In eval mode BatchNorm is a
// per-channel affine map and the network is a single segment.
//
// forward_unfused runs the same network one step at a time over the whole batch, every intermediate a
// full-batch buffer: with Unfused::same_kernels it uses the fused kernel's per-layer code (the baseline that
// shows what fusion gains), with Unfused::plain_loops plain loops for Linear (the independent reference the
// tests compare the fused kernel against).
#pragma once

#include <kiln/dsl/schema.hpp>
#include <kiln/dsl/sequential.hpp>
#include <kiln/et/evaluators.hpp>
#include <kiln/et/flow.hpp>
#include <kiln/et/shard.hpp>
#include <kiln/runtime/cpu.hpp>
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/threads.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
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
  Shard shard{};  // data-parallel training: this call's rows within the global batch (shard.hpp)
};

// Memory a forward call reuses from one call to the next, so that a call allocates nothing: per BatchNorm1d
// its per-channel scale and shift, and its parameters pointing at them; per value the full-batch buffer where the
// kernel splits.
template <Network Net>
struct Workspace {
  static constexpr std::size_t L = network_traits<Net>::leaf_count;
  std::array<float_buffer, L> batchnorm;
  std::array<LayerParams, L> batchnorm_params;
  std::array<float_buffer, first_step_value + network_traits<Net>::step_count> stored;
  // Per mode (eval, train): where the values live. It follows from the layers, which a model never changes, so
  // it is planned on the first call in that mode.
  std::optional<Flow<network_traits<Net>::step_count>> flows[2];
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

// How a batch is cut into tiles. Its rows are shared out as evenly as possible, row by row, to the threads that
// take part (slots), each a contiguous range; each slot's rows are cut into blocks of linear_rows rows (the
// micro-kernel's), dealt out as evenly as possible to tiles of at most max_rows rows, the same number of tiles
// in every slot. Shared out in whole blocks instead, one slot could get a block more, which set the time of the
// call (tiny 16-32-32-4 at batch 256 on 2 threads: 132 rows against 124, 2T 4.85 -> 4.72 us shared by rows).
// Tile t covers rows [begin(t), begin(t + 1)).
struct Tiling {
  index_t batch = 0, slot_count = 1, per_slot = 0, count = 0;  // count: the tiles of all slots
  Tiling(index_t batch_, index_t max_rows, int threads) : batch(batch_) {
    const index_t per_tile = std::max<index_t>(max_rows / linear_rows, 1);
    auto tiles_for = [&](index_t rows) { return (blocks_in(rows) + per_tile - 1) / per_tile; };
    // Split where every thread gets two blocks or more, or where one thread would run several tiles.
    if (threads > 1)
      slot_count = std::max<index_t>(
          blocks_in(batch) >= 2 * threads ? threads : std::min<index_t>(threads, tiles_for(batch)), 1);
    per_slot = tiles_for((batch + slot_count - 1) / slot_count);
    count = slot_count * per_slot;
  }
  static index_t blocks_in(index_t rows) { return (rows + linear_rows - 1) / linear_rows; }
  // Rounded up: where the rows do not divide evenly the first slots are the larger ones, and the caller, which
  // runs slot 0 while the workers are still taking up the job, starts first.
  index_t slot_begin(index_t w) const { return (w * batch + slot_count - 1) / slot_count; }
  index_t first_tile(index_t w) const { return w * per_slot; }
  index_t begin(index_t t) const {
    if (count <= 1) return t == 0 ? 0 : batch;  // the small batches, where integer divisions show, and none
    if (slot_count == 1) return tile_begin(t, count, 0, batch);  // one division, not four (1 thread: 0.7%)
    const index_t w = t / per_slot;
    return tile_begin(t - w * per_slot, per_slot, slot_begin(w), slot_begin(w + 1));
  }
  // Where tile i of `tiles` starts in a slot of rows [first, end).
  static index_t tile_begin(index_t i, index_t tiles, index_t first, index_t end) {
    return std::min(end, first + (i * blocks_in(end - first) + tiles - 1) / tiles * linear_rows);
  }
  index_t rows(index_t t) const { return begin(t + 1) - begin(t); }
  // The rows of the largest tile (the first: slot 0 is a largest slot, and a slot's first tile its largest; none
  // for an empty batch): what a tile's scratch must hold.
  index_t max_rows() const { return count > 0 ? rows(0) : 0; }
  // How many threads take part in run_tiles, each with its own fixed set of tiles.
  index_t slots() const { return slot_count; }
  // Runs body(slot, t) for every tile t with rows. Slot w takes its own tiles, first_tile(w) up to
  // first_tile(w + 1): the same rows go to the same slot on every call (slot 0 is the caller's), so a core finds
  // their input and output in its own cache, and per-slot sums (the training pass's gradients) do not depend on
  // timing. Taken dynamically, tiles moved between cores from call to call, and for small layers moving the rows
  // cost as much as computing them (tiny, batch 4096, 2 threads: 1.75x the 1-thread throughput).
  template <class Body>
  void run_tiles(Body&& body) const {
    auto slot = [&](index_t w) {
      for (index_t t = first_tile(w); t < first_tile(w + 1); ++t)
        if (slot_count == 1 || rows(t) > 0) body(w, t);  // a slot with fewer blocks than tiles has empty ones
    };
    if (slot_count > 1) parallel_for(slot_count, slot);  // on the pool when this tiling uses threads
    else if (count > 0) slot(0);
  }
};

template <Network Net>
struct Plan {
  using T = network_traits<Net>;
  static constexpr std::size_t L = T::leaf_count, S = T::step_count;
  static_assert([]<class... Leaves>(std::tuple<Leaves...>*) { return (Evaluator<Leaves> && ...); }(
                    static_cast<typename T::leaves*>(nullptr)),
                "kiln::et: a layer of this network has no complete evaluator (see the Evaluator concept in et/eval.hpp)");

  // The widest value of the data flow, per sample.
  static constexpr index_t max_width() {
    index_t w = std::max(T::input_dims.numel(), T::input2_dims.numel());
    for (std::size_t k = 0; k < S; ++k) w = std::max(w, T::analysis.steps[k].out.numel());
    return w;
  }
  // The floats of the packed weights the forward reads, all layers together.
  static constexpr index_t packed_floats() {
    return []<class... Leaves>(std::tuple<Leaves...>*) {
      return (index_t{0} + ... + [] {
        if constexpr (PackingEvaluator<Leaves>) return Eval<Leaves>::packed_size;
        else return index_t{0};
      }());
    }(static_cast<typename T::leaves*>(nullptr));
  }
  // Rows per tile, at most: scratch slots of about 128 KiB each, a multiple of the micro-kernel's rows, up to
  // 240 rows; 120 where the weights fit in L1 (32 KiB), which every tile reads from there anyway: it is then the
  // values that must stay in L1 from step to step (tiny 16-32-32-4 at batch 4096: 153-180 us in tiles of 240 rows,
  // 30 KB per value; 128-140 us in tiles of 120). Larger weights are read from L2 once per tile, and longer tiles
  // read them fewer times (Bilinear(64, 48, 32), 393 KB: 3-5% slower in tiles of 120).
  static constexpr index_t max_tile_rows = packed_floats() * 4 <= 32 * 1024 ? 20 * linear_rows : 40 * linear_rows;
  static constexpr index_t rows_for(index_t floats) {
    return std::clamp<index_t>(floats / max_width() / linear_rows * linear_rows, linear_rows, max_tile_rows);
  }
  static constexpr index_t tile_rows = rows_for(32768);
  // A training pass's tiles are longer, slots of about 512 KiB: each tile's backward reads and writes every
  // weight's gradient (dW += dy^T x), a pass over the weights that longer tiles make fewer times. The Fashion-MNIST
  // network (Linear(784, 256) first) at batch 64, one thread, Zen 4: an epoch 0.700 -> 0.666 s in one tile of 64
  // rows instead of two of 36 and 28; at 256, 0.638 -> 0.607 s. Evaluation, with weights in L2, gained nothing from
  // longer tiles (eval_tile_rows).
  static constexpr index_t train_tile_rows = rows_for(131072);
  // Evaluation's rows per tile: tile_rows, or more where the weights outgrow this CPU's L2. Every tile then reads
  // them from L3, and longer tiles read them fewer times, up to a tile whose values (its `slots` scratch slots)
  // take half of L2. Intel Xeon (2 MiB L2), one thread, medians of 3 runs, batch 256 / 4096, us: mlp_norm (3 MB
  // of weights) 2680 / 43047 -> 2557 / 39059, resmlp (2 MB) 1878 / 29025 -> 1717 / 27637, resmlp6 (6 MB)
  // 5675 / 88135 -> 5263 / 81495 (the JIT's layer by layer over blocks of rows: 2366 / 38159, 1749 / 28011, 5080 /
  // 81953).
  static index_t eval_tile_rows(int slots) {
    if (packed_floats() * 4 <= l2_cache_bytes()) return tile_rows;
    const index_t fit = l2_cache_bytes() / 2 / (std::max(slots, 1) * max_width() * 4) / linear_rows * linear_rows;
    return std::clamp(fit, tile_rows, max_tile_rows);
  }

  // Below this much work per call (about 2 us) the threads cost more than they save: one thread runs it.
  // Handing a tile to a worker that is awake costs about 0.3 us; to one that sleeps, one notification.
  static constexpr double min_parallel_flops = 4e5;

  static Tiling tiling(const Net& net, index_t batch, index_t rows_per_tile) {
    const bool parallel = static_cast<double>(batch) * static_cast<double>(flops_per_sample(net)) >= min_parallel_flops;
    return Tiling(batch, rows_per_tile, parallel ? get_num_threads() : 1);
  }

  // The ordinal of leaf I among the network's Dropouts (its RNG stream).
  template <std::size_t I>
  static constexpr std::uint32_t dropout_stream() {
    return [&]<std::size_t... J>(std::index_sequence<J...>) {
      return (0u + ... + (std::is_same_v<typename T::template leaf<J>, nn::Dropout> ? 1u : 0u));
    }(std::make_index_sequence<I>{});
  }
  // Per sample, the size of value v (a table: the tiles look it up for every step).
  static constexpr std::array<index_t, first_step_value + S> widths = [] {
    std::array<index_t, first_step_value + S> w{};
    for (std::size_t v = 0; v < w.size(); ++v) w[v] = T::analysis.dims(static_cast<int>(v)).numel();
    return w;
  }();
  static constexpr index_t width(int v) { return widths[static_cast<std::size_t>(v)]; }
};

// Calls f(index_constant) for each step index in [first, last), in order.
template <std::size_t S, class F>
void for_steps_in(std::size_t first, std::size_t last, F&& f) {
  for_leaves_in<S>(first, last, f);
}

// What a call knows about each leaf before it runs: its parameters (with BatchNorm's scale and shift, already
// prepared where the running stats apply), whether it passes the tile on unchanged, whether it needs the
// statistics of the whole batch; and so where each value of the data flow lives (Flow).
template <Network Net>
struct CallSetup {
  static constexpr std::size_t L = network_traits<Net>::leaf_count, S = network_traits<Net>::step_count;
  // Per leaf: the call's parameters, or a BatchNorm1d's in the workspace, with this call's scale and shift.
  // Pointers: a copy of every leaf's parameters, zeroed and then written, took 6% of a call of tiny 16-32-32-4
  // at batch 1.
  std::array<const LayerParams*, L> params{};
  std::array<bool, L> passes{}, batch_stats{};
  const Flow<S>* flow = nullptr;  // the workspace's plan for this call's mode
  bool reverse_weights = false;
};

// Per step: an element-wise layer right after a layer that can apply it as its epilogue.
template <Network Net>
constexpr std::array<bool, network_traits<Net>::step_count> fusable_steps() {
  using T = network_traits<Net>;
  std::array<bool, T::step_count> fusable{};
  if constexpr (T::step_count > 1) [&]<std::size_t... K>(std::index_sequence<K...>) {  // steps K + 1 after K
    auto check = [&](auto k) {
      constexpr Step before = T::analysis.steps[k], step = T::analysis.steps[k + 1];
      if constexpr (before.op == Step::Op::layer && step.op == Step::Op::layer)
        fusable[k + 1] = FusingEvaluator<typename T::template leaf<before.leaf>> &&
                         EpilogueEvaluator<typename T::template leaf<step.leaf>>;
    };
    (check(std::integral_constant<std::size_t, K>{}), ...);
  }(std::make_index_sequence<T::step_count - 1>{});
  return fusable;
}

template <Network Net, class Leaves>
CallSetup<Net> setup_call(const ForwardCall<Net>& call, const Leaves& leaves, Workspace<Net>& ws) {
  using T = network_traits<Net>;
  constexpr std::size_t L = T::leaf_count, S = T::step_count;
  check_batch_stats<Net>(leaves, call.batch, call.training);
  CallSetup<Net> setup;
  for (std::size_t i = 0; i < L; ++i) setup.params[i] = &call.params[i];
  setup.reverse_weights = (ws.calls++ & 1) != 0;
  for_leaves_in<L>(0, L, [&](auto i) {
    using Layer = typename T::template leaf<i>;
    const auto& layer = std::get<i>(leaves);
    setup.passes[i] = Eval<Layer>::passes_through(layer, call.training);
    if constexpr (BatchStatsEvaluator<Layer>) {
      setup.batch_stats[i] = layer.uses_batch_stats(call.training);
      LayerParams& params = ws.batchnorm_params[i];
      params = call.params[i];
      params.scale = ws.batchnorm[i].data();
      params.shift = ws.batchnorm[i].data() + Layer::num_features;
      setup.params[i] = &params;
      if (!setup.batch_stats[i])
        Eval<Layer>::prepare(layer, T::analysis.in[i], params, call.training, nullptr, call.batch,
                             ws.batchnorm[i].data(), ws.batchnorm[i].data() + Layer::num_features);
    }
  });
  std::optional<Flow<S>>& flow = ws.flows[call.training ? 1 : 0];
  if (!flow) {
    std::array<bool, S> step_passes{}, step_batch_stats{};
    for (std::size_t k = 0; k < S; ++k) {
      const Step& step = T::analysis.steps[k];
      if (step.op != Step::Op::layer) continue;
      step_passes[k] = setup.passes[step.leaf];
      step_batch_stats[k] = setup.batch_stats[step.leaf];
    }
    flow = plan_flow<S>(T::analysis, step_passes, step_batch_stats, fusable_steps<Net>());
  }
  setup.flow = &*flow;
  for (std::size_t r = 0; r < flow->V; ++r)
    if (flow->stored[r])
      ws.stored[r].resize(static_cast<std::size_t>(call.batch * Plan<Net>::width(static_cast<int>(r))));
  return setup;
}

// Where value v of the call is, full batch (for a network input or a stored value), else null.
template <Network Net>
const float* full_batch_value(const ForwardCall<Net>& call, const CallSetup<Net>& setup, const Workspace<Net>& ws,
                              int v) {
  const int r = setup.flow->root[static_cast<std::size_t>(v)];
  if (r == 0) return call.x;
  if (r == 1) return call.x2;
  return setup.flow->stored[static_cast<std::size_t>(r)] ? ws.stored[static_cast<std::size_t>(r)].data() : nullptr;
}

// Prepares the batch-statistics BatchNorm at step k from its whole input (and updates its running stats).
template <Network Net, class Leaves>
void prepare_batch_stats(std::size_t k, const ForwardCall<Net>& call, const Leaves& leaves, CallSetup<Net>& setup,
                         Workspace<Net>& ws) {
  using T = network_traits<Net>;
  for_steps_in<T::step_count>(k, k + 1, [&](auto c) {
    constexpr Step step = T::analysis.steps[c];
    if constexpr (step.op == Step::Op::layer) {
      using Layer = typename T::template leaf<step.leaf>;
      if constexpr (BatchStatsEvaluator<Layer>)
        Eval<Layer>::prepare(std::get<step.leaf>(leaves), T::analysis.in[step.leaf], *setup.params[step.leaf],
                             call.training, full_batch_value(call, setup, ws, step.inputs[0]), call.batch,
                             ws.batchnorm[step.leaf].data(), ws.batchnorm[step.leaf].data() + Layer::num_features,
                             call.shard.batch_stats_sum);
    }
  });
}

// Step K's forward on a tile's rows: in(j) is where its j-th input is, out where its output goes.
template <Network Net, std::size_t K, class Leaves, class In>
void run_step(const Leaves& leaves, const CallSetup<Net>& setup, In&& in, float* out, index_t rows, TileContext& ctx) {
  using T = network_traits<Net>;
  constexpr Step step = T::analysis.steps[K];
  if constexpr (step.op == Step::Op::layer) {
    using Layer = typename T::template leaf<step.leaf>;
    ctx.dropout_stream = Plan<Net>::template dropout_stream<step.leaf>();
    const auto& layer = std::get<step.leaf>(leaves);
    if constexpr (TwoInputEvaluator<Layer>)
      Eval<Layer>::forward_two_inputs(layer, T::analysis.in[step.leaf], *setup.params[step.leaf], in(0), in(1), out,
                                      rows, ctx);
    else
      Eval<Layer>::forward(layer, T::analysis.in[step.leaf], *setup.params[step.leaf], in(0), out, rows, ctx);
  } else {
    std::array<const float*, nn::max_branches> x{};
    for (int j = 0; j < step.input_count; ++j) x[static_cast<std::size_t>(j)] = in(j);
    if constexpr (step.op == Step::Op::add)
      join::add(x.data(), step.input_count, out, rows * step.out.numel());
    else
      join::concat(join::ConcatLayout(T::analysis, step), x.data(), step.input_count, out, rows);
  }
}

// Step K's forward with step K + 1, an element-wise layer, as its epilogue: out is where step K + 1's output goes.
template <Network Net, std::size_t K, class Leaves>
void run_step_with_epilogue(const Leaves& leaves, const CallSetup<Net>& setup, const float* in, float* out,
                            index_t rows, const TileContext& ctx) {
  using T = network_traits<Net>;
  constexpr Step step = T::analysis.steps[K], next = T::analysis.steps[K + 1];
  using Layer = typename T::template leaf<step.leaf>;
  using Next = typename T::template leaf<next.leaf>;
  Eval<Layer>::forward_then(std::get<step.leaf>(leaves), T::analysis.in[step.leaf], *setup.params[step.leaf], in, out,
                            rows, ctx, Eval<Next>::epilogue(std::get<next.leaf>(leaves)));
}

// Runs segment s fused over the whole batch, in tiles spread over the threads: values from earlier segments
// are read from their full-batch buffers, values read later are written to theirs, the output to call.y.
template <Network Net, class Leaves>
void run_segment(std::size_t s, const ForwardCall<Net>& call, const Leaves& leaves, const CallSetup<Net>& setup,
                 Workspace<Net>& ws, const Tiling& tiling) {
  using T = network_traits<Net>;
  using P = Plan<Net>;
  const Flow<T::step_count>& flow = *setup.flow;
  const auto slot_floats = static_cast<std::size_t>(tiling.max_rows() * P::max_width());
  tiling.run_tiles([&](index_t, index_t t) {
    thread_local float_buffer scratch;
    if (scratch.size() < static_cast<std::size_t>(flow.slots) * slot_floats)
      scratch.resize(static_cast<std::size_t>(flow.slots) * slot_floats);
    const index_t r0 = tiling.begin(t), rows = tiling.rows(t);
    // Inlined: called, it took 7% of a batch-1 call of tiny 16-32-32-4 (6 calls); inlined, v is a constant.
    auto at = [&](int v) __attribute__((always_inline)) -> float* {
      const auto r = static_cast<std::size_t>(flow.root[static_cast<std::size_t>(v)]);
      if (const float* full = full_batch_value(call, setup, ws, v)) return const_cast<float*>(full) + r0 * P::width(v);
      if (static_cast<int>(r) == flow.output_root) return call.y + r0 * P::width(v);
      return scratch.data() + static_cast<std::size_t>(flow.slot[r]) * slot_floats;
    };
    TileContext ctx{call.training, call.shard.first_sample + r0, call.seed, call.step, 0, setup.reverse_weights};
    for_steps_in<T::step_count>(flow.first(s), flow.last(s), [&](auto k) {
      constexpr Step step = T::analysis.steps[k];
      if (step.op == Step::Op::layer && setup.passes[step.leaf]) return;
      if (flow.epilogue[k]) return;  // ran with the step before
      if constexpr (k + 1 < T::step_count && fusable_steps<Net>()[k + 1])
        if (flow.epilogue[k + 1]) {
          run_step_with_epilogue<Net, k>(leaves, setup, at(step.inputs[0]), at(value_of_step(k + 1)), rows, ctx);
          return;
        }
      run_step<Net, k>(leaves, setup, [&](int j) -> const float* { return at(step.inputs[static_cast<std::size_t>(j)]); },
                       at(value_of_step(k)), rows, ctx);
    });
  });
}

// Runs segments [0, upto) forward over the whole batch, fused tile by tile; a batch-statistics BatchNorm that
// starts a segment is prepared from its whole input first.
template <Network Net, class Leaves>
void run_segments(const ForwardCall<Net>& call, const Leaves& leaves, CallSetup<Net>& setup, Workspace<Net>& ws,
                  const Tiling& tiling, std::size_t upto) {
  using T = network_traits<Net>;
  for (std::size_t s = 0; s < upto; ++s) {
    const Step& first = T::analysis.steps[setup.flow->first(s)];
    if (first.op == Step::Op::layer && setup.batch_stats[first.leaf]) prepare_batch_stats(setup.flow->first(s), call, leaves, setup, ws);
    run_segment(s, call, leaves, setup, ws, tiling);
  }
}

}  // namespace detail

template <Network Net>
void forward_fused(const ForwardCall<Net>& call, Workspace<Net>& ws) {
  using T = network_traits<Net>;
  using P = detail::Plan<Net>;
  const auto leaves = leaf_values(call.net);
  const auto n = static_cast<std::size_t>(call.batch * T::output_dims.numel());
  if constexpr (T::step_count == 0) {
    std::memcpy(call.y, call.x, sizeof(float) * n);
  } else {
    detail::CallSetup<Net> setup = detail::setup_call(call, leaves, ws);
    const detail::Tiling tiling = P::tiling(call.net, call.batch, P::eval_tile_rows(setup.flow->slots));
    detail::run_segments(call, leaves, setup, ws, tiling, setup.flow->segments);
    if (!setup.flow->output_direct)  // the output is the input or a stored value (a network of views)
      std::memcpy(call.y, detail::full_batch_value(call, setup, ws, T::analysis.output_value), sizeof(float) * n);
  }
}

enum class Unfused { plain_loops, same_kernels };

template <Network Net>
void forward_unfused(const ForwardCall<Net>& call, Unfused how) {
  using T = network_traits<Net>;
  using P = detail::Plan<Net>;
  constexpr std::size_t S = T::step_count;
  const auto leaves = leaf_values(call.net);
  const index_t batch = call.batch;
  check_batch_stats<Net>(leaves, batch, call.training);

  // Every value of the data flow for the whole batch (a view's is its input's).
  std::array<std::vector<float>, first_step_value + S> store;
  std::array<const float*, first_step_value + S> at{call.x, call.x2};
  detail::for_steps_in<S>(0, S, [&](auto k) {
    constexpr Step step = T::analysis.steps[k];
    auto& out = store[value_of_step(k)];
    if constexpr (step.op == Step::Op::layer) {
      using Layer = typename T::template leaf<step.leaf>;
      const auto& layer = std::get<step.leaf>(leaves);
      const float* x = at[static_cast<std::size_t>(step.inputs[0])];
      LayerParams p = call.params[step.leaf];
      std::vector<float> scale_shift;
      if constexpr (BatchStatsEvaluator<Layer>) {
        scale_shift.resize(2 * Layer::num_features);
        p.scale = scale_shift.data();
        p.shift = scale_shift.data() + Layer::num_features;
        Eval<Layer>::prepare(layer, T::analysis.in[step.leaf], p, call.training, x, batch, scale_shift.data(),
                             scale_shift.data() + Layer::num_features, call.shard.batch_stats_sum);
      }
      if (Eval<Layer>::passes_through(layer, call.training)) {
        at[value_of_step(k)] = x;
        return;
      }
      out.assign(static_cast<std::size_t>(batch * step.out.numel()), 0.0f);
      const TileContext ctx{call.training, call.shard.first_sample, call.seed, call.step,
                            P::template dropout_stream<step.leaf>()};
      const Dims& in = T::analysis.in[step.leaf];
      if constexpr (TwoInputEvaluator<Layer>) {
        if (how == Unfused::plain_loops)
          Eval<Layer>::forward_two_inputs_reference(layer, in, p, x, call.x2, out.data(), batch, ctx);
        else
          Eval<Layer>::forward_two_inputs(layer, in, p, x, call.x2, out.data(), batch, ctx);
      } else if constexpr (ReferenceEvaluator<Layer>) {
        if (how == Unfused::plain_loops)
          Eval<Layer>::forward_reference(layer, in, p, x, out.data(), batch, ctx);
        else
          Eval<Layer>::forward(layer, in, p, x, out.data(), batch, ctx);
      } else {
        Eval<Layer>::forward(layer, in, p, x, out.data(), batch, ctx);
      }
    } else {
      out.assign(static_cast<std::size_t>(batch * step.out.numel()), 0.0f);
      std::array<const float*, nn::max_branches> x{};
      for (int j = 0; j < step.input_count; ++j) x[static_cast<std::size_t>(j)] = at[static_cast<std::size_t>(step.inputs[j])];
      if constexpr (step.op == Step::Op::add)
        join::add(x.data(), step.input_count, out.data(), batch * step.out.numel());
      else
        join::concat(join::ConcatLayout(T::analysis, step), x.data(), step.input_count, out.data(), batch);
    }
    at[value_of_step(k)] = out.data();
  });
  std::memcpy(call.y, at[static_cast<std::size_t>(T::analysis.output_value)],
              sizeof(float) * static_cast<std::size_t>(batch * T::output_dims.numel()));
}

}  // namespace kiln::et
