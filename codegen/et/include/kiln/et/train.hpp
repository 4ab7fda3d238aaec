// The fused training pass: forward, loss and backward of a whole network, tile by tile.
//
// The network is cut into the same segments as the forward pass (fused.hpp): a segment ends where a BatchNorm1d
// needs the statistics of its whole input. The forward pass runs every segment but the last as the forward
// kernel does, keeping each segment's full-batch input. The last segment then runs forward, loss and backward
// in one pass per tile: its activations stay in the tile's scratch, the loss gradient of the tile's rows is
// computed there, and the backward pass walks back through the layers while everything is in cache.
// Where a BatchNorm starts a segment, its backward needs sums over the whole batch: the tiles write dL/d(its
// output) to a full-batch buffer, the BatchNorm's backward runs over the batch, and the previous segment is
// walked back tile by tile, recomputing its forward from its stored input (cheaper than storing every
// activation of the batch). Dropout masks are drawn again from the same Philox counters.
//
// Parameter gradients accumulate in one buffer per worker thread, each worker taking a fixed set of tiles,
// and are added to the model's gradients in worker order: the result does not depend on timing.
#pragma once

#include <kiln/et/fused.hpp>
#include <kiln/et/loss.hpp>
#include <kiln/runtime/parameter.hpp>

#include <vector>

namespace kiln::et {

// needed[i]: whether a backward uses dL/d(input of layer i): a layer before it has parameters (their gradients
// need it), or the caller asks for the network input's gradient. Where not (a Linear after Flatten at the start
// of a network), train_fused skips that dx, for a Linear a GEMM as large as its forward one, and the backward
// of the layers below; and Model packs the transposed weights only where it is needed.
template <Network Net>
std::array<bool, network_traits<Net>::leaf_count> input_grad_needed(const Net& net, bool input_grad) {
  std::array<bool, network_traits<Net>::leaf_count> needed{};
  bool before = input_grad;
  for_each_leaf(net, [&](auto i, const auto& layer) {
    needed[i] = before;
    before = before || layer.params(network_traits<Net>::analysis.in[i]).count > 0;
  });
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
  std::vector<std::vector<float>> segment_inputs;  // the full-batch input of every segment after the first
  std::vector<std::vector<float>> grads;            // full-batch gradients at segment boundaries, two per segment
  std::vector<std::vector<float>> partials;         // per worker: every parameter's gradient
};

namespace detail {
// Layers whose backward reads only their input(s) and dL/d(output), never their output.
template <class Layer>
inline constexpr bool backward_ignores_output = nn::is_linear<Layer> || TwoInputEvaluator<Layer>;

// Calls f(index_constant) for each leaf index in [first, last), last first.
template <std::size_t L, class F>
void for_leaves_in_reverse(std::size_t first, std::size_t last, F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((L - 1 - I >= first && L - 1 - I < last ? f(std::integral_constant<std::size_t, L - 1 - I>{}) : void()), ...);
  }(std::make_index_sequence<L>{});
}

// One training call, as the steps above: the forward of the segments before the last (forward_fused's driver),
// then each segment's backward from the last to the first, tile by tile, and the worker gradients summed.
template <Network Net>
class TrainPass {
  using T = network_traits<Net>;
  using P = Plan<Net>;
  static constexpr std::size_t L = T::leaf_count;
  using Leaves = decltype(leaf_values(std::declval<const Net&>()));

 public:
  TrainPass(const TrainCall<Net>& call, Workspace<Net>& ws, TrainWorkspace<Net>& tw)
      : call_(call), fc_(call.forward), ws_(ws), tw_(tw), leaves_(leaf_values(fc_.net)),
        setup_(setup_call(fc_, leaves_, ws)), segments_(setup_.batch_stats), tiling_(P::tiling(fc_.net, fc_.batch)),
        needs_dx_(input_grad_needed(fc_.net, call.dx != nullptr || call.dx2 != nullptr)) {
    bind_gradients();
  }

  // Returns the loss (as PyTorch's loss.item()).
  double run() {
    forward_all_but_last();
    const float* upstream = nullptr;  // dL/d(output of the segment being walked back), full batch
    for (std::size_t s = segments_.count; s-- > 0;) {
      float* down = backward_segment(s, upstream);
      upstream = setup_.batch_stats[segments_.first(s)] ? backward_batch_stats(s, down) : down;
    }
    add_worker_gradients();
    double loss = 0;
    for (const double l : losses_) loss += l;
    return loss;
  }

 private:
  // What one tile holds while it walks a segment forward and back.
  struct Tile {
    index_t worker, r0, rows;
    TileContext ctx;
    std::array<const float*, L> in{}, out{};  // each layer's input and output rows
    float* gradients[3];                      // scratch for dL/d(activation) walking back
  };

  // Per worker, a buffer for every parameter's gradient (each worker owns a fixed set of tiles); and the model's.
  void bind_gradients() {
    index_t total = 0;
    for (const Parameter& p : call_.state)
      if (p.grad.defined()) total += p.grad.numel();  // a buffer has no gradient (an undefined Tensor counts 1)
    const auto workers = static_cast<std::size_t>(tiling_.slots());
    tw_.partials.resize(workers);
    worker_grads_.assign(workers, {});
    for (std::size_t w = 0; w < workers; ++w) {
      tw_.partials[w].assign(static_cast<std::size_t>(total), 0.0f);
      index_t offset = 0;
      for (const Parameter& p : call_.state)
        if (p.grad.defined()) {
          grad_of(worker_grads_[w][p.entry.leaf], p.role()) = tw_.partials[w].data() + offset;
          offset += p.grad.numel();
        }
    }
    for (Parameter& p : call_.state)
      if (p.grad.defined()) grad_of(model_grads_[p.entry.leaf], p.role()) = p.grad.data();
    losses_.assign(workers, 0.0);
  }

  const float* segment_input(std::size_t s) const { return s == 0 ? fc_.x : tw_.segment_inputs[s].data(); }

  // Every segment but the last runs as the forward kernel does, keeping its full-batch input.
  void forward_all_but_last() {
    tw_.segment_inputs.resize(segments_.count);
    run_segments(fc_, leaves_, setup_, ws_, tiling_, segments_, segments_.count - 1, [&](std::size_t s) {
      auto& next = tw_.segment_inputs[s + 1];
      next.resize(static_cast<std::size_t>(fc_.batch * T::analysis.in[segments_.first(s + 1)].numel()));
      return next.data();
    });
    const std::size_t last = segments_.first(segments_.count - 1);
    if (setup_.batch_stats[last]) prepare_batch_stats(last, fc_, leaves_, setup_, ws_, segment_input(segments_.count - 1));
  }

  // Segment s's backward, tile by tile, from dL/d(its output) (`upstream`; null for the last segment, whose
  // tiles compute it from the loss). Returns where dL/d(its first layer's input, or output for a
  // batch-statistics BatchNorm) went: a full-batch buffer, or the caller's dL/d(input), or null.
  float* backward_segment(std::size_t s, const float* upstream) {
    const std::size_t first = segments_.first(s), last = segments_.last(s);
    const bool bn_first = setup_.batch_stats[first];
    tw_.grads.resize(2 * segments_.count);
    float* down = call_.dx;  // segment 0 without a BatchNorm first: the network's input, when asked for
    index_t down_width = T::input_dims.numel();
    if (bn_first || s > 0) {
      down_width = bn_first ? T::analysis.out[first].numel() : T::analysis.in[first].numel();
      tw_.grads[2 * s].resize(static_cast<std::size_t>(fc_.batch * down_width));
      down = tw_.grads[2 * s].data();
    }
    // Tile scratch: every layer's output, and three buffers for the gradient walking back.
    index_t act_floats = 0;
    for (std::size_t i = first; i < last; ++i) act_floats += T::analysis.out[i].numel();
    const auto scratch_floats = static_cast<std::size_t>(P::scratch_rows * (act_floats + 3 * P::max_width()));
    tiling_.run_tiles([&](index_t w, index_t t) {
      thread_local std::vector<float> scratch;
      if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
      Tile tile{w, tiling_.begin(t), tiling_.rows(t), TileContext{fc_.training, tiling_.begin(t), fc_.seed, fc_.step, 0}, {}, {}, {}};
      float* arena = forward_tile(s, tile, scratch.data());
      for (int k = 0; k < 3; ++k) tile.gradients[k] = arena + k * P::scratch_rows * P::max_width();
      const float* dy = s + 1 == segments_.count ? loss_gradient(tile, tile.out[last - 1])
                                                  : upstream + tile.r0 * T::analysis.out[last - 1].numel();
      const std::size_t stop = bn_first ? first + 1 : first;  // the tile walks back down to this layer
      dy = backward_tile(s, stop, tile, dy, down ? down + tile.r0 * down_width : nullptr, down_width);
      // A segment that is only a batch-statistics BatchNorm: its output's gradient is the tile's dy.
      if (stop == last && down)
        std::memcpy(down + tile.r0 * down_width, dy, sizeof(float) * static_cast<std::size_t>(tile.rows * down_width));
    });
    return down;
  }

  // Forward through segment s on the tile's rows, every activation kept in the arena; returns the arena's rest.
  float* forward_tile(std::size_t s, Tile& tile, float* arena) {
    const std::size_t first = segments_.first(s), last = segments_.last(s);
    const float* cur = segment_input(s) + tile.r0 * T::analysis.in[first].numel();
    for_leaves_in<L>(first, last, [&](auto i) {
      using Layer = typename T::template leaf<i>;
      tile.in[i] = tile.out[i] = cur;
      if (setup_.passes[i]) return;
      // The last layer of a segment that is not the network's last: its output feeds only the next segment,
      // whose gradient is already known. A Linear's backward does not read it: skip the GEMM.
      if (i + 1 == last && s + 1 < segments_.count && backward_ignores_output<Layer>) return;
      float* out = arena;
      arena += P::scratch_rows * T::analysis.out[i].numel();
      tile.ctx.dropout_stream = P::template dropout_stream<i>();
      if constexpr (TwoInputEvaluator<Layer>)
        Eval<Layer>::forward_two_inputs(std::get<i>(leaves_), T::analysis.in[i], setup_.params[i], cur,
                                        fc_.x2 + tile.r0 * T::input2_dims.numel(), out, tile.rows, tile.ctx);
      else
        Eval<Layer>::forward(std::get<i>(leaves_), T::analysis.in[i], setup_.params[i], cur, out, tile.rows, tile.ctx);
      tile.out[i] = cur = out;
    });
    return arena;
  }

  // The network's output y on the tile's rows: kept when asked for, the tile's loss added up, and dL/dy.
  const float* loss_gradient(Tile& tile, const float* y) {
    const index_t width = T::output_dims.numel(), n = tile.rows * width;
    const LossTerm& loss = call_.loss;
    double& total = losses_[static_cast<std::size_t>(tile.worker)];
    float* g = tile.gradients[2];
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
    return g;
  }

  // Backward through layers [stop, last) of segment s on the tile, last first, from dy = dL/d(segment output).
  // dL/d(input of `stop`) goes to `down` (when not null). Returns the last gradient computed.
  const float* backward_tile(std::size_t s, std::size_t stop, Tile& tile, const float* dy, float* down,
                             index_t down_width) {
    int next_buffer = 0;
    bool below_unneeded = false;  // a layer above did not pass its input's gradient down: nothing below needs it
    LayerGrads* grads = worker_grads_[static_cast<std::size_t>(tile.worker)].data();
    for_leaves_in_reverse<L>(stop, segments_.last(s), [&](auto i) {
      if (below_unneeded) return;
      using Layer = typename T::template leaf<i>;
      const auto& layer = std::get<i>(leaves_);
      if constexpr (nn::is_linear<Layer>) {
        if (!needs_dx_[i]) {
          Eval<Layer>::backward(layer, T::analysis.in[i], setup_.params[i], grads[i], tile.in[i], tile.out[i], dy,
                                nullptr, tile.rows, tile.ctx);
          below_unneeded = true;
          return;
        }
      }
      float* dx = down;
      if (i != stop) {
        dx = tile.gradients[next_buffer];
        if (dx == dy) dx = tile.gradients[next_buffer ^= 1];
        next_buffer ^= 1;
      }
      if (setup_.passes[i]) {
        if (i == stop && dx) std::memcpy(dx, dy, sizeof(float) * static_cast<std::size_t>(tile.rows * down_width));
        if (i != stop) dx = const_cast<float*>(dy);  // a view: the gradient passes on unchanged
      } else {
        tile.ctx.dropout_stream = P::template dropout_stream<i>();
        if constexpr (TwoInputEvaluator<Layer>)
          Eval<Layer>::backward_two_inputs(layer, T::analysis.in[i], setup_.params[i], grads[i], tile.in[i],
                                           fc_.x2 + tile.r0 * T::input2_dims.numel(), dy, dx,
                                           call_.dx2 ? call_.dx2 + tile.r0 * T::input2_dims.numel() : nullptr,
                                           tile.rows, tile.ctx);
        else
          Eval<Layer>::backward(layer, T::analysis.in[i], setup_.params[i], grads[i], tile.in[i], tile.out[i], dy,
                                dx, tile.rows, tile.ctx);
      }
      dy = dx;
    });
    return dy;
  }

  // The batch-statistics BatchNorm that starts segment s: its backward over the whole batch, from dL/d(its
  // output) in `down`. Returns dL/d(its input): the previous segment's upstream (or the caller's dL/dx).
  const float* backward_batch_stats(std::size_t s, const float* down) {
    const std::size_t first = segments_.first(s);
    float* dx = call_.dx;
    if (s > 0) {
      tw_.grads[2 * s + 1].resize(static_cast<std::size_t>(fc_.batch * T::analysis.in[first].numel()));
      dx = tw_.grads[2 * s + 1].data();
    }
    for_leaves_in<L>(first, first + 1, [&](auto i) {
      using Layer = typename T::template leaf<i>;
      if constexpr (BatchStatsEvaluator<Layer>)
        Eval<Layer>::backward_batch(std::get<i>(leaves_), T::analysis.in[i], setup_.params[i], model_grads_[i],
                                    segment_input(s), down, dx, fc_.batch);
    });
    return dx;
  }

  // Worker gradients into the model's, in worker order: the sum does not depend on timing.
  void add_worker_gradients() {
    for (const std::vector<float>& partial_buffer : tw_.partials) {
      const float* partial = partial_buffer.data();
      for (Parameter& p : call_.state) {
        if (!p.grad.defined()) continue;
        float* target = p.grad.data();
        const index_t n = p.grad.numel();  // hoisted: numel() multiplies out the shape on every call
        for (index_t k = 0; k < n; ++k) target[k] += partial[k];
        partial += n;
      }
    }
  }

  const TrainCall<Net>& call_;
  const ForwardCall<Net>& fc_;
  Workspace<Net>& ws_;
  TrainWorkspace<Net>& tw_;
  const Leaves leaves_;
  CallSetup<Net> setup_;
  const Segments<L> segments_;
  const Tiling tiling_;
  const std::array<bool, L> needs_dx_;
  std::vector<std::array<LayerGrads, L>> worker_grads_;
  std::array<LayerGrads, L> model_grads_{};
  std::vector<double> losses_;  // per worker
};
}  // namespace detail

// Forward, loss and backward of one batch. Returns the loss (as PyTorch's loss.item()).
template <Network Net>
double train_fused(const TrainCall<Net>& call, Workspace<Net>& ws, TrainWorkspace<Net>& tw) {
  static_assert(network_traits<Net>::leaf_count > 0, "a network without layers has nothing to train");
  return detail::TrainPass<Net>(call, ws, tw).run();
}

}  // namespace kiln::et
