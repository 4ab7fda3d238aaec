// Composition beyond a straight line: skip connections, parallel branches summed or concatenated.
//
//   nn::Residual{layers...}            y = x + body(x)                    keys "<i>.body.<j>.weight"
//   nn::Sum{branches...}               y = branch_0(x) + branch_1(x) ...  keys "<i>.branches.<k>.weight"
//   nn::Concat{branches...}            y = cat([branch_k(x)...], dim=-1)  (or "<i>.branches.<k>.<j>.weight"
//   nn::Concat{nn::dim<1>, branches...}   ... along dim 1                  for a Sequential branch)
//
// A branch is a layer, an nn::Sequential (without inputs) or another composite; they nest to any depth. Every
// branch sees the composite's input. The dim of a Concat counts the batch dim, as Softmax<Dim> does; it is a
// leading argument because C++20 cannot deduce the branches' types once a template argument is written out.
// PyTorch has no such modules: python/kiln_nn.py holds the reference ones (docs/SEMANTICS.md).
// The shapes are checked where the network is declared (sequential.hpp), as for any layer.
#pragma once

#include <kiln/dsl/text.hpp>

#include <tuple>

namespace kiln::nn {

// The most branches a Concat or Sum takes (a Residual's body is one Sequential, of any length).
inline constexpr int max_branches = 8;

template <class... Layers>
struct Residual {
  static_assert(sizeof...(Layers) > 0, "nn::Residual needs a body: nn::Residual{layers...}");
  std::tuple<Layers...> body;
  constexpr Residual(Layers... xs) : body{xs...} {}  // NOLINT: Residual{a, b, c}
  static constexpr Text name() { return "Residual"; }
};
template <class... Layers>
Residual(Layers...) -> Residual<Layers...>;

template <class... Branches>
struct Sum {
  static_assert(sizeof...(Branches) > 0 && sizeof...(Branches) <= max_branches, "nn::Sum takes 1 to 8 branches");
  std::tuple<Branches...> branches;
  constexpr Sum(Branches... xs) : branches{xs...} {}  // NOLINT: Sum{a, b}
  static constexpr Text name() { return "Sum"; }
};
template <class... Branches>
Sum(Branches...) -> Sum<Branches...>;

// The dim a Concat joins along: nn::Concat{nn::dim<1>, ...}.
template <int D>
struct DimTag {};
template <int D>
inline constexpr DimTag<D> dim{};

template <int Dim, class... Branches>
struct Concat {
  static_assert(sizeof...(Branches) > 0 && sizeof...(Branches) <= max_branches, "nn::Concat takes 1 to 8 branches");
  static constexpr int dim = Dim;
  std::tuple<Branches...> branches;
  constexpr Concat(Branches... xs) : branches{xs...} {}                 // NOLINT: Concat{a, b}
  constexpr Concat(DimTag<Dim>, Branches... xs) : branches{xs...} {}    // Concat{nn::dim<1>, a, b}
  static constexpr Text name() { return "Concat"; }
};
template <class... Branches>
Concat(Branches...) -> Concat<-1, Branches...>;
template <int D, class... Branches>
Concat(DimTag<D>, Branches...) -> Concat<D, Branches...>;

}  // namespace kiln::nn
