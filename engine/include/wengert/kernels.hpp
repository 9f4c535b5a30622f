// wengert: tensor math without a tape. Ops call these for forward and backward; optimizers
// and users call them directly. Every result is a new contiguous tensor unless the name ends
// in an underscore (in place, bumps the version).
#pragma once

#include <span>
#include <string>
#include <string_view>
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
// "generic", or BLIS's own pick such as "zen3" (Note [BLIS kernels] in src/kernels/gemm.hpp).
// The first product chooses them from WENGERT_GEMM_KERNELS (auto, blis, skx, haswell, generic;
// default auto) and throws wengert::Error when that names a set this CPU or build cannot run.
const char* gemm_kernels();
// The sub-configuration BLIS's own detection picks for this CPU (what "blis" runs).
const char* blis_kernels();
// BLIS's version, e.g. "0.9.0".
const char* blis_version();
// The widest vector instructions this CPU has that the kernel choice looks at:
// "AVX-512 (F, DQ, CD, BW, VL)", "AVX2 + FMA" or "neither AVX-512 nor AVX2 + FMA".
const char* cpu_vector_isa();
// The kernel sets this CPU and this build can run, of "blis" (BLIS's own choice), "skx",
// "haswell" and "generic".
std::vector<std::string> gemm_kernel_sets();
// Runs every later product on kernel set `name` (as WENGERT_GEMM_KERNELS names them, "auto"
// included); throws wengert::Error when this CPU or build cannot run it. For tests and
// benchmarks: call it while no product is running.
void set_gemm_kernels(std::string_view name);

// Normalises a list of axes against ndim: sorted, unique, non-negative. Empty means all.
std::vector<int> normalize_axes(std::span<const std::int64_t> axes, int ndim, const char* op);
// The shape after reducing `axes` (sorted) with or without keepdims.
Shape reduced_shape(const Shape& shape, std::span<const int> axes, bool keepdims);

}  // namespace wengert::kern
