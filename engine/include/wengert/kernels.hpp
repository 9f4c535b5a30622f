// wengert: tensor math without a tape. Ops call these for forward and backward; optimizers
// and users call them directly. Every result is a new contiguous tensor unless the name ends
// in an underscore (in place, bumps the version).
#pragma once

#include <span>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert::kern {

// Elementwise with NumPy broadcasting; both operands must have the same dtype.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);              // x * s
Tensor add_scalar(const Tensor& x, double s);         // x + s
Tensor neg(const Tensor& x);

// dst += alpha * src, src broadcast to dst's shape.
void add_(Tensor& dst, const Tensor& src, double alpha = 1.0);
// dst *= s
void scale_(Tensor& dst, double s);

// Reductions over `axes` (empty = all axes). keepdims leaves reduced axes as 1.
// Sums accumulate in f64; the result has x's dtype.
Tensor sum(const Tensor& x, std::span<const int> axes, bool keepdims);
Tensor max(const Tensor& x, std::span<const int> axes, bool keepdims);
Tensor min(const Tensor& x, std::span<const int> axes, bool keepdims);
double sum_all(const Tensor& x);
double dot_all(const Tensor& a, const Tensor& b);     // sum(a * b), f64 accumulation

// Sums a gradient broadcast up to g.shape() back down to `shape` (leading axes dropped,
// axes of extent 1 summed with keepdims).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

// The BLIS sub-configuration whose kernels matrix products run, e.g. "skx", "haswell",
// "generic" (Note [BLIS kernels] in src/kernels/gemm.hpp).
const char* gemm_kernels();

// Normalises a list of axes against ndim: sorted, unique, non-negative. Empty means all.
std::vector<int> normalize_axes(std::span<const std::int64_t> axes, int ndim, const char* op);
// The shape after reducing `axes` (sorted) with or without keepdims.
Shape reduced_shape(const Shape& shape, std::span<const int> axes, bool keepdims);

}  // namespace wengert::kern
