// Scalar: the value type an activation's math (dsl/layers/activations.hpp) is instantiated with in the MLIR
// backend. Each operation on it emits arith / math ops into the body being built; a float stays a plain number
// until it meets a value, so constant subexpressions fold here.
#pragma once

#include <mlir/Dialect/Arith/IR/Arith.h>
#include <mlir/Dialect/Math/IR/Math.h>
#include <mlir/IR/Builders.h>

#include <cmath>

namespace kiln::mlir_backend {

// Where the ops go.
struct Body {
  ::mlir::OpBuilder& b;
  ::mlir::Location loc;
};

struct Scalar {
  const Body* body = nullptr;  // null: the constant c
  ::mlir::Value v;
  float c = 0;

  Scalar(float x) : c(x) {}  // NOLINT: implicit, so that the math reads as math
  Scalar(const Body& at, ::mlir::Value value) : body(&at), v(value) {}
  ::mlir::Value value(const Body& at) const {
    return v ? v : at.b.create<::mlir::arith::ConstantOp>(at.loc, at.b.getF32FloatAttr(c)).getResult();
  }
};
struct ScalarMask {
  const Body* body;
  ::mlir::Value v;  // i1
};

namespace scalar_detail {
inline const Body& body_of(const Scalar& a, const Scalar& b) { return a.body ? *a.body : *b.body; }
template <class Op>
Scalar binary(const Scalar& a, const Scalar& b) {
  const Body& at = body_of(a, b);
  return {at, at.b.create<Op>(at.loc, a.value(at), b.value(at)).getResult()};
}
template <class Op>
Scalar unary(const Scalar& a) {
  return {*a.body, a.body->b.create<Op>(a.body->loc, a.value(*a.body)).getResult()};
}
inline ScalarMask compare(::mlir::arith::CmpFPredicate p, const Scalar& a, const Scalar& b) {
  const Body& at = body_of(a, b);
  return {&at, at.b.create<::mlir::arith::CmpFOp>(at.loc, p, a.value(at), b.value(at)).getResult()};
}
}  // namespace scalar_detail

inline Scalar operator+(const Scalar& a, const Scalar& b) {
  if (!a.body && !b.body) return a.c + b.c;
  return scalar_detail::binary<::mlir::arith::AddFOp>(a, b);
}
inline Scalar operator-(const Scalar& a, const Scalar& b) {
  if (!a.body && !b.body) return a.c - b.c;
  return scalar_detail::binary<::mlir::arith::SubFOp>(a, b);
}
inline Scalar operator*(const Scalar& a, const Scalar& b) {
  if (!a.body && !b.body) return a.c * b.c;
  return scalar_detail::binary<::mlir::arith::MulFOp>(a, b);
}
inline Scalar operator/(const Scalar& a, const Scalar& b) {
  if (!a.body && !b.body) return a.c / b.c;
  return scalar_detail::binary<::mlir::arith::DivFOp>(a, b);
}
inline Scalar operator-(const Scalar& a) {
  if (!a.body) return -a.c;
  return scalar_detail::unary<::mlir::arith::NegFOp>(a);
}
// Ordered comparisons (false where either side is NaN), as the SIMD vector's.
inline ScalarMask operator<(const Scalar& a, const Scalar& b) {
  return scalar_detail::compare(::mlir::arith::CmpFPredicate::OLT, a, b);
}
inline ScalarMask operator>(const Scalar& a, const Scalar& b) {
  return scalar_detail::compare(::mlir::arith::CmpFPredicate::OGT, a, b);
}
inline ScalarMask operator<=(const Scalar& a, const Scalar& b) {
  return scalar_detail::compare(::mlir::arith::CmpFPredicate::OLE, a, b);
}
inline ScalarMask operator>=(const Scalar& a, const Scalar& b) {
  return scalar_detail::compare(::mlir::arith::CmpFPredicate::OGE, a, b);
}
inline Scalar select(const ScalarMask& m, const Scalar& a, const Scalar& b) {
  const Body& at = *m.body;
  return {at, at.b.create<::mlir::arith::SelectOp>(at.loc, m.v, a.value(at), b.value(at)).getResult()};
}
inline Scalar min(const Scalar& a, const Scalar& b) { return select(a < b, a, b); }
inline Scalar max(const Scalar& a, const Scalar& b) { return select(a > b, a, b); }
inline Scalar exp(const Scalar& a) { return scalar_detail::unary<::mlir::math::ExpOp>(a); }
inline Scalar expm1(const Scalar& a) { return scalar_detail::unary<::mlir::math::ExpM1Op>(a); }
inline Scalar log1p(const Scalar& a) { return scalar_detail::unary<::mlir::math::Log1pOp>(a); }
inline Scalar erf(const Scalar& a) { return scalar_detail::unary<::mlir::math::ErfOp>(a); }
inline Scalar tanh(const Scalar& a) { return scalar_detail::unary<::mlir::math::TanhOp>(a); }
inline Scalar sigmoid(const Scalar& a) { return 1.0f / (1.0f + exp(-a)); }

}  // namespace kiln::mlir_backend
