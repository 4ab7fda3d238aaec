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
}  // namespace detail

// Forward, loss and backward of one batch. Returns the loss (as PyTorch's loss.item()).
template <Network Net>
double train_fused(const TrainCall<Net>& call, Workspace<Net>& ws, TrainWorkspace<Net>& tw) {
  using T = network_traits<Net>;
  using P = detail::Plan<Net>;
  constexpr std::size_t L = T::leaf_count;
  static_assert(L > 0, "a network without layers has nothing to train");
  const ForwardCall<Net>& fc = call.forward;
  const auto leaves = leaf_values(fc.net);
  const index_t batch = fc.batch;
  detail::CallSetup<Net> setup = detail::setup_call(fc, leaves, ws);
  const auto& params = setup.params;
  const auto& passes = setup.passes;
  const auto& batch_stats = setup.batch_stats;

  // Segments: [starts[s], starts[s + 1]).
  std::vector<std::size_t> starts{0};
  for (std::size_t i = 1; i < L; ++i)
    if (batch_stats[i]) starts.push_back(i);
  starts.push_back(L);
  const std::size_t segments = starts.size() - 1;

  // Worker gradient buffers: each worker owns a fixed set of tiles.
  const detail::Tiling tiling = P::tiling(fc.net, batch);
  const index_t workers = tiling.slots();
  index_t total_grad = 0;
  for (const Parameter& p : call.state) total_grad += p.grad.numel();
  tw.partials.resize(static_cast<std::size_t>(workers));
  std::vector<std::array<LayerGrads, L>> worker_grads(static_cast<std::size_t>(workers));
  for (index_t w = 0; w < workers; ++w) {
    auto& buffer = tw.partials[static_cast<std::size_t>(w)];
    buffer.assign(static_cast<std::size_t>(total_grad), 0.0f);
    index_t offset = 0;
    for (const Parameter& p : call.state)
      if (p.grad.defined()) {
        grad_of(worker_grads[static_cast<std::size_t>(w)][p.entry.leaf], p.role()) = buffer.data() + offset;
        offset += p.grad.numel();
      }
  }
  std::array<LayerGrads, L> model_grads{};
  for (Parameter& p : call.state)
    if (p.grad.defined()) grad_of(model_grads[p.entry.leaf], p.role()) = p.grad.data();

  // Forward through every segment but the last, keeping each segment's input.
  tw.segment_inputs.resize(segments);
  auto segment_input = [&](std::size_t s) -> const float* {
    return s == 0 ? fc.x : tw.segment_inputs[s].data();
  };
  for (std::size_t s = 0; s + 1 < segments; ++s) {
    if (batch_stats[starts[s]]) detail::prepare_batch_stats(starts[s], fc, leaves, setup, ws, segment_input(s));
    auto& next = tw.segment_inputs[s + 1];
    next.resize(static_cast<std::size_t>(batch * T::analysis.in[starts[s + 1]].numel()));
    detail::run_segment(starts[s], starts[s + 1], fc, leaves, setup, tiling, segment_input(s), next.data());
  }
  if (batch_stats[starts[segments - 1]])
    detail::prepare_batch_stats(starts[segments - 1], fc, leaves, setup, ws, segment_input(segments - 1));

  // Backward, from the last segment to the first. `upstream`: dL/d(the segment's output), full batch (null for
  // the last segment, whose tiles compute it from the loss). `down`: where dL/d(the segment's first layer's
  // input, or output for a batch-statistics BatchNorm) goes.
  std::vector<double> losses(static_cast<std::size_t>(workers), 0.0);
  const float* upstream = nullptr;
  const auto needs_dx = input_grad_needed(fc.net, call.dx != nullptr || call.dx2 != nullptr);
  for (std::size_t s = segments; s-- > 0;) {
    const std::size_t first = starts[s], last = starts[s + 1];
    const bool bn_first = batch_stats[first];
    const std::size_t stop = bn_first ? first + 1 : first;  // the tiles walk back down to this layer
    tw.grads.resize(2 * segments);
    std::vector<float>& down_buffer = tw.grads[2 * s];
    float* down = nullptr;
    index_t down_width = 0;
    if (bn_first) {
      down_width = T::analysis.out[first].numel();
      down_buffer.resize(static_cast<std::size_t>(batch * down_width));
      down = down_buffer.data();
    } else if (s > 0) {
      down_width = T::analysis.in[first].numel();
      down_buffer.resize(static_cast<std::size_t>(batch * down_width));
      down = down_buffer.data();
    } else {
      down = call.dx;  // the network's input: only when asked for
      down_width = T::input_dims.numel();
    }
    const index_t in_width = T::analysis.in[first].numel(), out_width = T::analysis.out[last - 1].numel();

    // Tile scratch: every layer's output, and two buffers for the gradient walking back.
    index_t act_floats = 0;
    for (std::size_t i = first; i < last; ++i) act_floats += T::analysis.out[i].numel();
    const std::size_t scratch_floats = static_cast<std::size_t>(P::scratch_rows * (act_floats + 3 * P::max_width()));

    tiling.run_tiles([&](index_t w, index_t t) {
      thread_local std::vector<float> scratch;
      if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
      const index_t r0 = tiling.begin(t), rows = tiling.rows(t);
      TileContext ctx{fc.training, r0, fc.seed, fc.step, 0};
      std::array<const float*, L> in_ptr{}, out_ptr{};
      float* arena = scratch.data();
      // Forward through the segment, keeping every activation of the tile.
      const float* cur = segment_input(s) + r0 * in_width;
      detail::for_leaves_in<L>(first, last, [&](auto i) {
        using Layer = typename T::template leaf<i>;
        in_ptr[i] = cur;
        if (passes[i]) {
          out_ptr[i] = cur;
          return;
        }
        // The last layer of a segment that is not the network's last: its output feeds only the next
        // segment, whose gradient is already known. A Linear's backward does not read it: skip the GEMM.
        if (i + 1 == last && s + 1 < segments && detail::backward_ignores_output<Layer>) return;
        float* out = arena;
        arena += P::scratch_rows * T::analysis.out[i].numel();
        ctx.dropout_stream = P::template dropout_stream<i>();
        if constexpr (TwoInputEvaluator<Layer>)
          Eval<Layer>::forward_two_inputs(std::get<i>(leaves), T::analysis.in[i], params[i], cur,
                                fc.x2 + r0 * T::input2_dims.numel(), out, rows, ctx);
        else
          Eval<Layer>::forward(std::get<i>(leaves), T::analysis.in[i], params[i], cur, out, rows, ctx);
        out_ptr[i] = cur = out;
      });
      float* grad_buffers[3] = {arena, arena + P::scratch_rows * P::max_width(), arena + 2 * P::scratch_rows * P::max_width()};
      // dL/d(segment output) for the tile.
      const float* dy;
      if (s + 1 == segments) {
        if (fc.y) std::memcpy(fc.y + r0 * out_width, cur, sizeof(float) * static_cast<std::size_t>(rows * out_width));
        float* g = grad_buffers[2];
        switch (call.loss.kind) {
          case LossTerm::Kind::cross_entropy:
            losses[static_cast<std::size_t>(w)] += cross_entropy_tile(cur, call.loss.classes + r0, rows, out_width,
                                                                      call.loss.label_smoothing, call.loss.scale, g);
            break;
          case LossTerm::Kind::mse:
            losses[static_cast<std::size_t>(w)] +=
                mse_tile(cur, call.loss.targets + r0 * out_width, rows * out_width, call.loss.scale, g);
            break;
          case LossTerm::Kind::upstream:
            std::memcpy(g, call.loss.targets + r0 * out_width, sizeof(float) * static_cast<std::size_t>(rows * out_width));
            for (index_t k = 0; k < rows * out_width; ++k) losses[static_cast<std::size_t>(w)] += cur[k] * g[k];
            break;
        }
        dy = g;
      } else {
        dy = upstream + r0 * out_width;
      }
      // Backward through layers [stop, last), last first.
      int next_buffer = 0;
      bool below_unneeded = false;  // a layer above did not pass its input's gradient down: nothing below needs it
      detail::for_leaves_in<L>(0, L, [&](auto rev) {
        constexpr std::size_t i = L - 1 - decltype(rev)::value;
        if (i < stop || i >= last || below_unneeded) return;
        using Layer = typename T::template leaf<i>;
        if constexpr (nn::is_linear<Layer>) {
          if (!needs_dx[i]) {
            Eval<Layer>::backward(std::get<i>(leaves), T::analysis.in[i], params[i],
                                  worker_grads[static_cast<std::size_t>(w)][i], in_ptr[i], out_ptr[i], dy, nullptr,
                                  rows, ctx);
            below_unneeded = true;
            return;
          }
        }
        float* dx;
        if (i == stop) {
          dx = down ? down + r0 * down_width : nullptr;
        } else {
          dx = grad_buffers[next_buffer];
          if (dx == dy) dx = grad_buffers[next_buffer ^= 1];
          next_buffer ^= 1;
        }
        if (passes[i]) {
          if (i == stop && dx) std::memcpy(dx, dy, sizeof(float) * static_cast<std::size_t>(rows * down_width));
          if (i != stop) dx = const_cast<float*>(dy);
        } else {
          ctx.dropout_stream = P::template dropout_stream<i>();
          const LayerGrads& g = worker_grads[static_cast<std::size_t>(w)][i];
          if constexpr (TwoInputEvaluator<Layer>)
            Eval<Layer>::backward_two_inputs(std::get<i>(leaves), T::analysis.in[i], params[i], g, in_ptr[i],
                                   fc.x2 + r0 * T::input2_dims.numel(), dy, dx,
                                   call.dx2 ? call.dx2 + r0 * T::input2_dims.numel() : nullptr, rows, ctx);
          else
            Eval<Layer>::backward(std::get<i>(leaves), T::analysis.in[i], params[i], g, in_ptr[i], out_ptr[i], dy,
                                  dx, rows, ctx);
        }
        dy = dx;
      });
      // A segment that is only a batch-statistics BatchNorm: its output's gradient is the tile's dy.
      if (stop == last && down) std::memcpy(down + r0 * down_width, dy, sizeof(float) * static_cast<std::size_t>(rows * down_width));
    });

    // A batch-statistics BatchNorm at the segment's start: its backward over the whole batch.
    if (bn_first) {
      std::vector<float>& bn_down = tw.grads[2 * s + 1];
      float* bn_dx = nullptr;
      if (s > 0) {
        bn_down.resize(static_cast<std::size_t>(batch * T::analysis.in[first].numel()));
        bn_dx = bn_down.data();
      } else {
        bn_dx = call.dx;
      }
      detail::for_leaves_in<L>(first, first + 1, [&](auto i) {
        using Layer = typename T::template leaf<i>;
        if constexpr (BatchStatsEvaluator<Layer>)
          Eval<Layer>::backward_batch(std::get<i>(leaves), T::analysis.in[i], params[i], model_grads[i],
                                      segment_input(s), down, bn_dx, batch);
      });
      upstream = bn_dx;
    } else {
      upstream = down;
    }
  }

  // Worker gradients into the model's, in worker order.
  for (index_t w = 0; w < workers; ++w) {
    const float* partial = tw.partials[static_cast<std::size_t>(w)].data();
    for (Parameter& p : call.state) {
      if (!p.grad.defined()) continue;
      float* target = p.grad.data();
      for (index_t k = 0; k < p.grad.numel(); ++k) target[k] += partial[k];
      partial += p.grad.numel();
    }
  }
  double loss = 0;
  for (const double l : losses) loss += l;
  return loss;
}

}  // namespace kiln::et
