// kiln::Parameter: one parameter or buffer of a model, with its storage. The same type serves the model, the
// optimizers, the training kernel and the compiled backends' buffer lists.
#pragma once

#include <kiln/dsl/schema.hpp>
#include <kiln/runtime/tensor.hpp>

#include <string_view>

namespace kiln {

// Its schema entry (state_dict name, role, shape, init, owning layer), its value and, for a parameter (not a
// buffer), its accumulated gradient. Copies are views: they share the tensors' storage.
struct Parameter {
  SchemaEntry entry;
  Tensor value;
  Tensor grad;  // undefined for a buffer

  std::string_view name() const { return entry.name.view(); }
  Role role() const { return entry.spec.role; }
  bool buffer() const { return entry.spec.buffer(); }
};

}  // namespace kiln
