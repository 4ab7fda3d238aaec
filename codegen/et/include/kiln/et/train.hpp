// The fused training pass: forward, loss and backward of a whole network, tile by tile.
//
// The network is cut into the same segments as the forward pass (fused.hpp): a segment ends where a BatchNorm1d
// needs the statistics of its whole input. The forward pass runs every segment but the last as the forward
// kernel does, keeping the full-batch values that cross a segment boundary. Then each segment, last first, runs
// forward and backward in one pass per tile: its activations stay in the tile's scratch (a value kept for the
// whole batch is read, not recomputed), the last segment's tiles compute the loss gradient of their rows, and
// the backward walks the steps back while everything is in cache. Where paths meet (a skip connection, the
// branches of a Sum or Concat) their gradients are summed into the value they read. A value read in a later
// segment gets its gradient in a full-batch buffer, summed over the segments; a batch-statistics BatchNorm that
// starts a segment runs its backward over the whole batch once the segment's tiles are done. A Dropout's backward
// reads its mask off the kept activations, or draws it again from the same Philox counters (et/dropout.hpp).
//
// Parameter gradients accumulate in one buffer per worker thread, each worker taking a fixed set of tiles,
// and are added to the model's gradients in worker order: the result does not depend on timing.
#pragma once

#include <kiln/et/fused.hpp>
#include <kiln/et/loss.hpp>
#include <kiln/runtime/parameter.hpp>

#include <vector>

namespace kiln::et {

// needs[v]: whether a backward needs dL/d(value v): a step before it has parameters (their gradients need it),
// or the caller asks for the network input's gradient (dx, dx2). Where not, the backward skips that gradient:
// for a Linear after Flatten at the start of a network, a GEMM as large as its forward one, and the backward
// of the steps below.
template <Network Net>
std::array<bool, first_step_value + network_traits<Net>::step_count> values_needing_grad(const Net& net, bool dx,
                                                                                        bool dx2) {
  using T = network_traits<Net>;
  std::array<bool, first_step_value + T::step_count> needs{dx, dx2};
  std::array<bool, T::leaf_count> has_params{};
  for_each_leaf(net, [&](auto i, const auto& layer) { has_params[i] = layer.params(T::analysis.in[i]).count > 0; });
  for (std::size_t k = 0; k < T::step_count; ++k) {
    const Step& step = T::analysis.steps[k];
    bool need = step.op == Step::Op::layer && has_params[step.leaf];
    for (int j = 0; j < step.input_count; ++j) need = need || needs[static_cast<std::size_t>(step.inputs[j])];
    needs[static_cast<std::size_t>(value_of_step(k))] = need;
  }
  return needs;
}

// needed[i]: whether a backward computes dL/d(input of leaf i) (Model packs transposed weights only there).
template <Network Net>
std::array<bool, network_traits<Net>::leaf_count> input_grad_needed(const Net& net, bool input_grad) {
  using T = network_traits<Net>;
  const auto needs = values_needing_grad(net, input_grad, input_grad);
  std::array<bool, T::leaf_count> needed{};
  for (std::size_t i = 0; i < T::leaf_count; ++i)
    needed[i] = needs[static_cast<std::size_t>(T::analysis.steps[T::analysis.step_of[i]].inputs[0])];
  return needed;
}

template <Network Net>
struct TrainCall {
  ForwardCall<Net> forward;          // y may be null: the output is then not kept
  LossTerm loss;
  std::span<Parameter> state;        // the model's parameters and buffers: gradients are added to the parameters'
                                     // (as PyTorch accumulates them)
  float* dx = nullptr;               // optional dL/d(input) [batch, input dims]
  float* dx2 = nullptr;              // optional dL/d(second input), for a network that starts with Bilinear
};

template <Network Net>
struct TrainWorkspace {
  std::array<float_buffer, first_step_value + network_traits<Net>::step_count> grads;  // full-batch dL/d(value)
  float_buffer grad_sum;               // a batch-statistics BatchNorm's dL/dx, before it is added
  std::vector<float_buffer> partials;  // per worker but the first: every parameter's gradient
  bool partials_zero = false;  // the last pass added the partials up and left them zero (zeroing them as it read)
};

namespace detail {

// Calls f(index_constant) for each step index in [first, last), last first.
template <std::size_t S, class F>
void for_steps_in_reverse(std::size_t first, std::size_t last, F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((S - 1 - I >= first && S - 1 - I < last ? f(std::integral_constant<std::size_t, S - 1 - I>{}) : void()), ...);
  }(std::make_index_sequence<S>{});
}

// One training call, as the steps above: the forward of the segments before the last (forward_fused's driver),
// then each segment's backward from the last to the first, tile by tile, and the worker gradients summed.
template <Network Net>
class TrainPass {
  using T = network_traits<Net>;
  using P = Plan<Net>;
  static constexpr std::size_t L = T::leaf_count, S = T::step_count, V = first_step_value + S;
  using Leaves = decltype(leaf_values(std::declval<const Net&>()));

 public:
  TrainPass(const TrainCall<Net>& call, Workspace<Net>& ws, TrainWorkspace<Net>& tw)
      : call_(call), fc_(call.forward), ws_(ws), tw_(tw), leaves_(leaf_values(fc_.net)),
        setup_(setup_call(fc_, leaf_values(fc_.net), ws)), flow_(*setup_.flow),
        tiling_(P::tiling(fc_.net, fc_.batch, P::train_tile_rows)),
        needs_(values_needing_grad(fc_.net, call.dx != nullptr, call.dx2 != nullptr)) {
    bind_gradients();
    zero_partials_ = !tw_.partials_zero;  // until this pass has added them up (a pass that throws leaves them dirty)
    tw_.partials_zero = false;
    losses_.assign(static_cast<std::size_t>(tiling_.slots()), 0.0);
    for (std::size_t k = 0; k < S; ++k) {
      const int v = value_of_step(k);
      if (flow_.stored[static_cast<std::size_t>(v)] || starts_with_batch_stats(k)) {
        full_grad_[static_cast<std::size_t>(v)] = true;
        tw_.grads[static_cast<std::size_t>(v)].resize(static_cast<std::size_t>(fc_.batch * P::width(v)));
      }
    }
  }

  // Returns the loss (as PyTorch's loss.item()).
  double run() {
    run_segments(fc_, leaves_, setup_, ws_, tiling_, flow_.segments - 1);
    const std::size_t first_of_last = flow_.first(flow_.segments - 1);
    if (starts_with_batch_stats(first_of_last)) prepare_batch_stats(first_of_last, fc_, leaves_, setup_, ws_);
    for (std::size_t s = flow_.segments; s-- > 0;) {
      backward_segment(s);
      if (starts_with_batch_stats(flow_.first(s))) backward_batch_stats(flow_.first(s));
    }
    add_worker_gradients();
    double loss = 0;
    for (const double l : losses_) loss += l;
    return loss;
  }

 private:
  // A step is a layer that needs the statistics of its whole input (so it starts a segment).
  bool starts_with_batch_stats(std::size_t k) const {
    const Step& step = T::analysis.steps[k];
    return step.op == Step::Op::layer && setup_.batch_stats[step.leaf];
  }
  bool passes(std::size_t k) const {
    const Step& step = T::analysis.steps[k];
    return step.op == Step::Op::layer && setup_.passes[step.leaf];
  }
  // Whether step k's backward runs in the tiles (not for a batch-statistics BatchNorm: after them).
  bool runs_backward(std::size_t k) const {
    return !passes(k) && needs_[static_cast<std::size_t>(value_of_step(k))] && !starts_with_batch_stats(k);
  }
  int root(int v) const { return flow_.root[static_cast<std::size_t>(v)]; }
  // A root computed in segment s whose activation and gradient live in the tile's scratch.
  bool local(int r, std::size_t s) const {
    return r >= first_step_value && !flow_.stored[static_cast<std::size_t>(r)] &&
           flow_.segment_of[static_cast<std::size_t>(flow_.defined_at[static_cast<std::size_t>(r)])] == s;
  }

  // Per worker, where it adds its tiles' parameter gradients (each worker owns a fixed set of tiles); and the
  // model's. Worker 0 adds to the model's gradients directly, as the kernels add to whatever buffer they are given;
  // each other worker to a buffer of its own, zero at the start of the pass and added to the model's (and zeroed)
  // after it. (A buffer for worker 0 too was a 0.8 MB memset and 2.4 MB of adds per step for the Fashion-MNIST
  // network at batch 64.)
  void bind_gradients() {
    for (Parameter& p : call_.state)
      if (p.grad.defined()) grad_of(model_grads_[p.entry.leaf], p.role()) = p.grad.data();
    const auto workers = static_cast<std::size_t>(tiling_.slots());
    worker_grads_.assign(workers, model_grads_);
    index_t total = 0;
    for (const Parameter& p : call_.state)
      if (p.grad.defined()) total += p.grad.numel();  // a buffer has no gradient (an undefined Tensor counts 1)
    tw_.partials.resize(workers > 1 ? workers - 1 : 0);  // worker w's is partials[w - 1]
    for (std::size_t w = 1; w < workers; ++w) {
      float_buffer& partial = tw_.partials[w - 1];
      partial.resize(static_cast<std::size_t>(total));  // new elements are zero
      index_t offset = 0;
      for (const Parameter& p : call_.state)
        if (p.grad.defined()) {
          grad_of(worker_grads_[w][p.entry.leaf], p.role()) = partial.data() + offset;
          offset += p.grad.numel();
        }
    }
  }

  // Where segment s's tiles keep things: per local root its activation (arena offset, in floats) and its
  // gradient's scratch slot, allocated walking back so that a slot is reused once its gradient is consumed.
  struct SegmentLayout {
    std::array<std::size_t, V> activation{};
    std::array<int, V> grad_slot{};
    std::size_t activation_floats = 0;
    int grad_slots = 0;
  };
  SegmentLayout layout(std::size_t s) const {
    SegmentLayout l;
    l.grad_slot.fill(-1);
    for (std::size_t k = flow_.first(s); k < flow_.last(s); ++k) {
      const int v = value_of_step(k);
      if (passes(k) || !local(v, s)) continue;
      l.activation[static_cast<std::size_t>(v)] = l.activation_floats;
      l.activation_floats += static_cast<std::size_t>(tiling_.max_rows() * P::width(v));
    }
    std::array<bool, V> taken{};  // per slot
    auto allocate = [&](int r) {
      if (!local(r, s) || full_grad_[static_cast<std::size_t>(r)] || l.grad_slot[static_cast<std::size_t>(r)] >= 0) return;
      int slot = 0;
      while (taken[static_cast<std::size_t>(slot)]) ++slot;
      taken[static_cast<std::size_t>(slot)] = true;
      l.grad_slot[static_cast<std::size_t>(r)] = slot;
      l.grad_slots = std::max(l.grad_slots, slot + 1);
    };
    if (s + 1 == flow_.segments) allocate(flow_.output_root);
    for (std::size_t k = flow_.last(s); k-- > flow_.first(s);) {
      if (!runs_backward(k)) continue;
      const Step& step = T::analysis.steps[k];
      for (int j = 0; j < step.input_count; ++j)
        if (needs_[static_cast<std::size_t>(step.inputs[j])]) allocate(root(step.inputs[j]));
      const int out = value_of_step(k);
      if (l.grad_slot[static_cast<std::size_t>(out)] >= 0) taken[static_cast<std::size_t>(l.grad_slot[static_cast<std::size_t>(out)])] = false;
    }
    return l;
  }

  // What one tile holds while it walks a segment forward and back.
  struct Tile {
    index_t worker, r0, rows;
    TileContext ctx;
    float* arena;       // activations
    float* grad_slots;  // gradients, then one slot for a gradient before it is added to another
    std::array<bool, V> written;  // per root: its gradient holds a contribution (later ones are added)
  };
  std::size_t slot_floats() const { return static_cast<std::size_t>(tiling_.max_rows() * P::max_width()); }

  const float* activation(const Tile& tile, const SegmentLayout& l, int v) const {
    if (const float* full = full_batch_value(fc_, setup_, ws_, v)) return full + tile.r0 * P::width(v);
    return tile.arena + l.activation[static_cast<std::size_t>(root(v))];
  }
  // Where dL/d(value v) goes on the tile's rows: the caller's dx for a network input (null when not asked for),
  // a full-batch buffer, or a scratch slot.
  float* gradient(const Tile& tile, const SegmentLayout& l, int v) const {
    const int r = root(v);
    if (r == 0) return call_.dx ? call_.dx + tile.r0 * P::width(0) : nullptr;
    if (r == 1) return call_.dx2 ? call_.dx2 + tile.r0 * P::width(1) : nullptr;
    if (full_grad_[static_cast<std::size_t>(r)]) return tw_.grads[static_cast<std::size_t>(r)].data() + tile.r0 * P::width(r);
    return tile.grad_slots + static_cast<std::size_t>(l.grad_slot[static_cast<std::size_t>(r)]) * slot_floats();
  }
  float* temporary(const Tile& tile, const SegmentLayout& l) const {
    return tile.grad_slots + static_cast<std::size_t>(l.grad_slots) * slot_floats();
  }

  // Segment s's forward and backward, tile by tile.
  void backward_segment(std::size_t s) {
    const SegmentLayout l = layout(s);
    const std::size_t scratch_floats = l.activation_floats + static_cast<std::size_t>(l.grad_slots + 1) * slot_floats();
    std::array<bool, V> written_after{};
    tiling_.run_tiles([&](index_t w, index_t t) {
      // Unless the last pass left them zero, worker w's buffer is zeroed by the thread that runs its first tile
      // of the first segment walked back (the caller zeroing every worker's before the pass was a serial
      // 2 MB memset per step on two threads, the Fashion-MNIST network at batch 64).
      if (s + 1 == flow_.segments && t == tiling_.first_tile(w) && w > 0 && zero_partials_) {
        float_buffer& partial = tw_.partials[static_cast<std::size_t>(w - 1)];
        std::fill(partial.begin(), partial.end(), 0.0f);
      }
      thread_local float_buffer scratch;
      if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
      const TileContext ctx{fc_.training, fc_.shard.first_sample + tiling_.begin(t), fc_.seed, fc_.step, 0};
      Tile tile{w, tiling_.begin(t), tiling_.rows(t), ctx, scratch.data(), scratch.data() + l.activation_floats, written_};
      forward_tile(s, l, tile);
      if (s + 1 == flow_.segments) loss_gradient(tile, l);
      backward_tile(s, l, tile);
      if (t == 0) written_after = tile.written;  // every tile writes the same gradients
    });
    written_ = written_after;
  }

  // Forward through segment s on the tile's rows, every activation kept (a stored value is already there).
  void forward_tile(std::size_t s, const SegmentLayout& l, Tile& tile) {
    for_steps_in<S>(flow_.first(s), flow_.last(s), [&](auto k) {
      constexpr int v = value_of_step(k);
      if (passes(k) || !local(v, s)) return;
      constexpr Step step = T::analysis.steps[k];
      run_step<Net, k>(leaves_, setup_, [&](int j) { return activation(tile, l, step.inputs[static_cast<std::size_t>(j)]); },
                       const_cast<float*>(activation(tile, l, v)), tile.rows, tile.ctx);
    });
  }

  // The network's output y on the tile's rows: kept when asked for, the tile's loss added up, and dL/dy.
  void loss_gradient(Tile& tile, const SegmentLayout& l) {
    const index_t width = T::output_dims.numel(), n = tile.rows * width;
    const float* y = activation(tile, l, T::analysis.output_value);
    float* g = gradient(tile, l, T::analysis.output_value);
    if (!g) g = temporary(tile, l);  // a network of views, without dx: the gradient goes nowhere
    else tile.written[static_cast<std::size_t>(flow_.output_root)] = true;
    const LossTerm& loss = call_.loss;
    double& total = losses_[static_cast<std::size_t>(tile.worker)];
    if (fc_.y) std::memcpy(fc_.y + tile.r0 * width, y, sizeof(float) * static_cast<std::size_t>(n));
    switch (loss.kind) {
      case LossTerm::Kind::cross_entropy:
        total += cross_entropy_tile(y, loss.classes + tile.r0, tile.rows, width, loss.label_smoothing, loss.scale, g);
        break;
      case LossTerm::Kind::mse: total += mse_tile(y, loss.targets + tile.r0 * width, n, loss.scale, g); break;
      case LossTerm::Kind::upstream:  // dL/dy given: the "loss" is sum(y * dL/dy)
        std::memcpy(g, loss.targets + tile.r0 * width, sizeof(float) * static_cast<std::size_t>(n));
        for (index_t k = 0; k < n; ++k) total += y[k] * g[k];
        break;
    }
  }

  // Backward through segment s's steps on the tile, last first; each adds dL/d(its inputs) to theirs.
  void backward_tile(std::size_t s, const SegmentLayout& l, Tile& tile) {
    LayerGrads* grads = worker_grads_[static_cast<std::size_t>(tile.worker)].data();
    for_steps_in_reverse<S>(flow_.first(s), flow_.last(s), [&](auto k) {
      if (!runs_backward(k)) return;
      constexpr Step step = T::analysis.steps[k];
      constexpr int v = value_of_step(k);
      const float* dy = gradient(tile, l, v);
      // Where dL/d(input j) goes: straight to its gradient if it is the first contribution, else to the
      // temporary, added afterwards by `settle`. Null where no backward needs it.
      auto target = [&](int j) -> float* {
        const int u = step.inputs[static_cast<std::size_t>(j)];
        if (!needs_[static_cast<std::size_t>(u)]) return nullptr;
        float* g = gradient(tile, l, u);
        return g && tile.written[static_cast<std::size_t>(root(u))] ? temporary(tile, l) : g;
      };
      auto settle = [&](int j, const float* dx) {
        const int u = step.inputs[static_cast<std::size_t>(j)];
        float* g = needs_[static_cast<std::size_t>(u)] ? gradient(tile, l, u) : nullptr;
        if (!g) return;
        if (dx != g) join::pass_gradient(dx, g, true, tile.rows * P::width(u));
        tile.written[static_cast<std::size_t>(root(u))] = true;
      };
      if constexpr (step.op == Step::Op::layer) {
        using Layer = typename T::template leaf<step.leaf>;
        const auto& layer = std::get<step.leaf>(leaves_);
        tile.ctx.dropout_stream = P::template dropout_stream<step.leaf>();
        float* dx = target(0);
        if constexpr (TwoInputEvaluator<Layer>) {
          float* dx2 = target(1);
          Eval<Layer>::backward_two_inputs(layer, T::analysis.in[step.leaf], *setup_.params[step.leaf],
                                           grads[step.leaf], activation(tile, l, 0), activation(tile, l, 1), dy, dx,
                                           dx2, tile.rows, tile.ctx);
          settle(1, dx2);
        } else {
          Eval<Layer>::backward(layer, T::analysis.in[step.leaf], *setup_.params[step.leaf], grads[step.leaf],
                                activation(tile, l, step.inputs[0]), activation(tile, l, v), dy, dx, tile.rows, tile.ctx);
        }
        settle(0, dx);
      } else {
        const join::ConcatLayout layout = step.op == Step::Op::concat ? join::ConcatLayout(T::analysis, step)
                                                                      : join::ConcatLayout{};
        for (int j = 0; j < step.input_count; ++j) {
          const int u = step.inputs[static_cast<std::size_t>(j)];
          float* g = needs_[static_cast<std::size_t>(u)] ? gradient(tile, l, u) : nullptr;
          if (!g) continue;
          const bool accumulate = tile.written[static_cast<std::size_t>(root(u))];
          if (step.op == Step::Op::add) join::pass_gradient(dy, g, accumulate, tile.rows * P::width(u));
          else join::concat_backward(layout, j, dy, g, accumulate, tile.rows);
          tile.written[static_cast<std::size_t>(root(u))] = true;
        }
      }
    });
  }

  // The batch-statistics BatchNorm at step k (which starts its segment): its backward over the whole batch, from
  // dL/d(its output), which the segment's tiles have summed; dL/d(its input) added to the input's gradient.
  void backward_batch_stats(std::size_t k) {
    for_steps_in<S>(k, k + 1, [&](auto c) {
      constexpr Step step = T::analysis.steps[c];
      if constexpr (step.op == Step::Op::layer) {
        using Layer = typename T::template leaf<step.leaf>;
        if constexpr (BatchStatsEvaluator<Layer>) {
          if (!needs_[static_cast<std::size_t>(value_of_step(c))]) return;
          const int u = step.inputs[0], r = root(u);
          const auto n = static_cast<std::size_t>(fc_.batch * P::width(u));
          float* g = !needs_[static_cast<std::size_t>(u)] ? nullptr
                     : r == 0                             ? call_.dx
                     : r == 1                             ? call_.dx2
                                                          : tw_.grads[static_cast<std::size_t>(r)].data();
          const bool accumulate = g && written_[static_cast<std::size_t>(r)];
          if (accumulate) tw_.grad_sum.resize(n);
          float* dx = accumulate ? tw_.grad_sum.data() : g;
          Eval<Layer>::backward_batch(std::get<step.leaf>(leaves_), T::analysis.in[step.leaf],
                                      *setup_.params[step.leaf], model_grads_[step.leaf],
                                      full_batch_value(fc_, setup_, ws_, u),
                                      tw_.grads[static_cast<std::size_t>(value_of_step(c))].data(), dx, fc_.batch,
                                      fc_.shard.batch_stats_sum);
          if (accumulate) join::pass_gradient(dx, g, true, static_cast<index_t>(n));
          if (g) written_[static_cast<std::size_t>(r)] = true;
        }
      }
    });
  }

  // The other workers' gradients into the model's, which hold worker 0's: worker 1's, then worker 2's, ... for
  // every element, so the sum does not depend on timing; in chunks spread over the threads (parallel_for_chunks).
  // Each partial is zeroed as it is read, for the next pass: its worker's memset had been on its own path alone.
  void add_worker_gradients() {
    if (tw_.partials.empty()) return;
    std::vector<float*> targets;
    std::vector<index_t> sizes, offsets;  // offsets: where each parameter starts in the workers' buffers
    index_t offset = 0;
    for (Parameter& p : call_.state)
      if (p.grad.defined()) {
        targets.push_back(p.grad.data());
        sizes.push_back(p.grad.numel());  // once: numel() multiplies out the shape on every call
        offsets.push_back(offset);
        offset += sizes.back();
      }
    parallel_for_chunks(sizes, [&](std::size_t k, index_t begin, index_t end) {
      float* target = targets[k];
      for (float_buffer& partial_buffer : tw_.partials) {
        float* partial = partial_buffer.data() + offsets[k];
        for (index_t i = begin; i < end; ++i) {
          target[i] += partial[i];
          partial[i] = 0.0f;
        }
      }
    });
    tw_.partials_zero = true;
  }

  const TrainCall<Net>& call_;
  const ForwardCall<Net>& fc_;
  Workspace<Net>& ws_;
  TrainWorkspace<Net>& tw_;
  const Leaves leaves_;
  CallSetup<Net> setup_;
  const Flow<S>& flow_;
  const Tiling tiling_;
  const std::array<bool, V> needs_;
  std::array<bool, V> full_grad_{};  // per root: its gradient is a full-batch buffer (tw_.grads)
  std::array<bool, V> written_{};    // per root: its gradient holds a contribution from the segments walked back
  std::vector<std::array<LayerGrads, L>> worker_grads_;
  std::array<LayerGrads, L> model_grads_{};
  std::vector<double> losses_;  // per worker
  bool zero_partials_ = true;   // the workers zero their partials before their first tile
};
}  // namespace detail

// Forward, loss and backward of one batch. Returns the loss (as PyTorch's loss.item()).
template <Network Net>
double train_fused(const TrainCall<Net>& call, Workspace<Net>& ws, TrainWorkspace<Net>& tw) {
  static_assert(network_traits<Net>::leaf_count > 0, "a network without layers has nothing to train");
  return detail::TrainPass<Net>(call, ws, tw).run();
}

}  // namespace kiln::et
