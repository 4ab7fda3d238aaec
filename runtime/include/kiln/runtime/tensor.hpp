// kiln::Tensor: a contiguous, 64-byte aligned block of float32 (or int64, for buffers such as
// num_batches_tracked) with a dynamic shape. Copies share storage, as torch.Tensor does; clone() copies data.
// view() reinterprets the shape without moving data (Flatten / Unflatten).
#pragma once

#include <kiln/dsl/layer.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

namespace kiln {

using Shape = std::vector<index_t>;

inline std::string shape_text(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// The element count of a shape. A shape may come from a file or an argument, so the product is checked:
// [2^40, 2^24] must be an error, not a count that wrapped around. The product of the non-zero dims must fit even
// when a zero dim makes the count 0 ([2^40, 2^24, 0] too): strides and offsets are such products.
inline index_t numel_of(const Shape& s) {
  index_t n = 1;
  bool empty = false;
  for (index_t d : s) {
    if (d == 0) empty = true;
    else if (__builtin_mul_overflow(n, d, &n))
      throw Error(fmt::format("shape {} has more elements than an index_t can count", shape_text(s)));
  }
  return empty ? 0 : n;
}

constexpr std::size_t dtype_size(DType d) { return d == DType::float32 ? 4 : 8; }

class Tensor {
 public:
  static constexpr std::size_t alignment = 64;

  Tensor() = default;
  // A zero-filled tensor.
  explicit Tensor(Shape shape, DType dtype = DType::float32) : shape_(std::move(shape)), dtype_(dtype) {
    for (index_t d : shape_)
      if (d < 0) throw Error(fmt::format("Tensor: negative size in shape {}", shape_text(shape_)));
    const auto max_elements = static_cast<index_t>((PTRDIFF_MAX - alignment) / dtype_size(dtype_));
    if (numel() > max_elements)
      throw Error(fmt::format("Tensor: shape {} of {} needs more bytes than memory can address", shape_text(shape_),
                              dtype_name(dtype_)));
    const std::size_t bytes = static_cast<std::size_t>(numel()) * dtype_size(dtype_);
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    storage_ = std::shared_ptr<std::byte>(
        static_cast<std::byte*>(::operator new(rounded == 0 ? alignment : rounded, std::align_val_t{alignment})),
        [](std::byte* p) { ::operator delete(p, std::align_val_t{alignment}); });
    std::memset(storage_.get(), 0, rounded == 0 ? alignment : rounded);
    data_ = storage_.get();
  }
  Tensor(Shape shape, std::span<const float> values) : Tensor(std::move(shape)) {
    if (static_cast<index_t>(values.size()) != numel())
      throw Error(fmt::format("Tensor: {} values given for shape {} ({} elements)", values.size(), shape_text(shape_),
                              numel()));
    std::memcpy(data_, values.data(), values.size() * sizeof(float));
  }
  Tensor(Shape shape, std::initializer_list<float> values)
      : Tensor(std::move(shape), std::span<const float>{values.begin(), values.size()}) {}

  const Shape& shape() const { return shape_; }
  int dim() const { return static_cast<int>(shape_.size()); }
  index_t size(int d) const { return shape_.at(static_cast<std::size_t>(d < 0 ? d + dim() : d)); }
  index_t numel() const { return numel_of(shape_); }
  DType dtype() const { return dtype_; }
  bool defined() const { return data_ != nullptr; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  float* data() { return typed<float>(DType::float32); }
  const float* data() const { return const_cast<Tensor*>(this)->typed<float>(DType::float32); }
  std::int64_t* data_i64() { return typed<std::int64_t>(DType::int64); }
  const std::int64_t* data_i64() const { return const_cast<Tensor*>(this)->typed<std::int64_t>(DType::int64); }
  std::byte* bytes() { return data_; }
  const std::byte* bytes() const { return data_; }

  std::span<float> values() { return {data(), static_cast<std::size_t>(numel())}; }
  std::span<const float> values() const { return {data(), static_cast<std::size_t>(numel())}; }
  float& operator[](index_t i) { return data()[i]; }
  float operator[](index_t i) const { return data()[i]; }

  // The same data under another shape with as many elements (a view: writes go to this tensor).
  Tensor view(Shape shape) const {
    if (numel_of(shape) != numel())
      throw Error(fmt::format("Tensor::view: shape {} has {} elements but the tensor {} has {}", shape_text(shape),
                              numel_of(shape), shape_text(shape_), numel()));
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
  }
  // Rows [begin, end) of the first dim, as a view.
  Tensor slice_rows(index_t begin, index_t end) const {
    if (dim() == 0 || begin < 0 || end > shape_[0] || begin > end)
      throw Error(fmt::format("Tensor::slice_rows: rows [{}, {}) of a tensor {}", begin, end, shape_text(shape_)));
    Tensor t = *this;
    t.shape_[0] = end - begin;
    t.data_ += static_cast<std::size_t>(begin * (numel() / std::max<index_t>(shape_[0], 1))) * dtype_size(dtype_);
    return t;
  }
  Tensor clone() const {
    Tensor t(shape_, dtype_);
    if (nbytes() != 0) std::memcpy(t.data_, data_, nbytes());
    return t;
  }
  // Copies the values of `other` (same shape and dtype) into this tensor's storage.
  void copy_from(const Tensor& other) {
    if (other.shape_ != shape_ || other.dtype_ != dtype_)
      throw Error(fmt::format("Tensor::copy_from: {} {} into {} {}", dtype_name(other.dtype_), shape_text(other.shape_),
                              dtype_name(dtype_), shape_text(shape_)));
    if (nbytes() != 0) std::memmove(data_, other.data_, nbytes());
  }
  void fill(float v) {
    for (float& x : values()) x = v;
  }
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  template <class T>
  T* typed(DType want) {
    if (dtype_ != want)
      throw Error(fmt::format("Tensor: asked for {} data of a {} tensor {}", dtype_name(want), dtype_name(dtype_),
                              shape_text(shape_)));
    return reinterpret_cast<T*>(data_);
  }

  std::shared_ptr<std::byte> storage_;
  std::byte* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::float32;
};

}  // namespace kiln
