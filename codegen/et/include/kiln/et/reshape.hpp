// Flatten, Unflatten and Identity move no data: the driver passes the tile on unchanged.
#pragma once

#include <kiln/dsl/layers/reshape.hpp>
#include <kiln/et/eval.hpp>

namespace kiln::et {

template <class Layer>
struct ViewEval {
  static bool passes_through(const Layer&, bool) { return true; }
  static void forward(const Layer&, Dims, const LayerParams&, const float*, float*, index_t, const TileContext&) {}
  static void backward(const Layer&, Dims, const LayerParams&, const LayerGrads&, const float*, const float*,
                       const float*, float*, index_t, const TileContext&) {}
};

template <int Start, int End>
struct Eval<nn::Flatten<Start, End>> : ViewEval<nn::Flatten<Start, End>> {};
template <int Dim, index_t... Sizes>
struct Eval<nn::Unflatten<Dim, Sizes...>> : ViewEval<nn::Unflatten<Dim, Sizes...>> {};
template <>
struct Eval<nn::Identity> : ViewEval<nn::Identity> {};

}  // namespace kiln::et
