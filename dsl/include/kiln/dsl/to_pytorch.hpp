// kiln::to_pytorch(net): Python source that builds the same network from torch.nn layers and the reference
// modules of python/kiln_nn.py (Residual, Sum, Concat, and the layers torch 1.13 lacks). Its state_dict() keys are
// Kiln's, so the weights a kiln::Model saves load with model.load_state_dict(safetensors.torch.load_file(path)).
//
// A layer is written as torch prints it (its repr(), which is a constructor call) after "nn.", or after the module
// named by its `torch_module` when torch.nn lacks it in some version (kiln_nn.RMSNorm).
#pragma once

#include <kiln/dsl/sequential.hpp>

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <tuple>

namespace kiln {
namespace detail {

template <class Layer>
constexpr std::string_view torch_module_of(const Layer& layer) {
  if constexpr (requires { layer.torch_module(); }) return layer.torch_module();
  else return "nn";
}

// A layer; the overloads below, more specialised, take the Sequentials and the composites.
template <class Layer>
void write_torch(std::string& out, const Layer& layer, int) {
  fmt::format_to(std::back_inserter(out), "{}.{}", torch_module_of(layer), layer.repr());
}
template <class... Items>
void write_torch(std::string& out, const nn::Sequential<Items...>& seq, int depth);
template <class... Layers>
void write_torch(std::string& out, const nn::Residual<Layers...>& residual, int depth);
template <class... Branches>
void write_torch(std::string& out, const nn::Sum<Branches...>& sum, int depth);
template <int Dim, class... Branches>
void write_torch(std::string& out, const nn::Concat<Dim, Branches...>& concat, int depth);

// One line per child, indented, each ending in a comma; the input markers of a network are not children.
template <class... Children>
void write_torch_children(std::string& out, const std::tuple<Children...>& children, int depth) {
  std::apply([&](const auto&... child) {
    auto one = [&](const auto& c) {
      if constexpr (!is_input<std::remove_cvref_t<decltype(c)>>::value) {
        out.append(4 * static_cast<std::size_t>(depth), ' ');
        write_torch(out, c, depth);
        out += ",\n";
      }
    };
    (one(child), ...);
  }, children);
}

template <class T>
void write_torch_call(std::string& out, std::string_view callee, const T& children, int depth,
                      std::string_view keywords = {}) {
  out += callee;
  out += "(\n";
  write_torch_children(out, children, depth + 1);
  if (!keywords.empty()) fmt::format_to(std::back_inserter(out), "{:{}}{},\n", "", 4 * (depth + 1), keywords);
  fmt::format_to(std::back_inserter(out), "{:{}})", "", 4 * depth);
}

template <class... Items>
void write_torch(std::string& out, const nn::Sequential<Items...>& seq, int depth) {
  write_torch_call(out, "nn.Sequential", seq.items, depth);
}
template <class... Layers>
void write_torch(std::string& out, const nn::Residual<Layers...>& residual, int depth) {
  write_torch_call(out, "kiln_nn.Residual", residual.body, depth);
}
template <class... Branches>
void write_torch(std::string& out, const nn::Sum<Branches...>& sum, int depth) {
  write_torch_call(out, "kiln_nn.Sum", sum.branches, depth);
}
template <int Dim, class... Branches>
void write_torch(std::string& out, const nn::Concat<Dim, Branches...>& concat, int depth) {
  write_torch_call(out, "kiln_nn.Concat", concat.branches, depth, fmt::format("dim={}", Dim));
}

}  // namespace detail

// The Python source of a function `function_name()` that returns the network as a torch.nn.Module. With two
// inputs (a leading Bilinear) the outer module is kiln_nn.Sequential, whose first layer takes both.
template <Network Net>
std::string to_pytorch(const Net& net, std::string_view function_name = "make_network") {
  std::string out =
      "# Written by kiln::to_pytorch: a Kiln network as a PyTorch module. Its state_dict() keys are Kiln's, so\n"
      "#   model.load_state_dict(safetensors.torch.load_file(\"weights.safetensors\"))\n"
      "# takes what kiln::Model::save_safetensors wrote. kiln_nn is python/kiln_nn.py in Kiln's repository.\n"
      "from torch import nn\n\nimport kiln_nn\n\n\n";
  fmt::format_to(std::back_inserter(out), "def {}():\n    return ", function_name);
  const std::string_view outer = network_traits<Net>::input_count == 2 ? "kiln_nn.Sequential" : "nn.Sequential";
  detail::write_torch_call(out, outer, net.items, 1);
  out += "\n";
  return out;
}

}  // namespace kiln
