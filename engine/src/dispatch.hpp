// Internal: dtype dispatch and the strided N-d loop every kernel is built on.
#pragma once

#include <array>
#include <cstdint>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

#include "wengert/tensor.hpp"
#include "wengert/threading.hpp"

namespace wengert::detail {

// Note [NaN propagates]
// As in IEEE arithmetic, NumPy and PyTorch (SPEC.md section 8): relu, maximum, minimum, clamp,
// abs, max_pool2d, the max and min reductions and every row max (softmax, log_softmax, logsumexp,
// cross_entropy, attention) give NaN where an operand is NaN, and argmax (with
// straight_through's one-hot) takes a NaN for the largest value, the first NaN of its row.
// std::max(a, b) is `a < b ? b : a`, which drops a NaN b, and `x > 0 ? x : 0` drops a NaN x,
// so these kernels compare in the form that keeps it: relu is `!(x <= 0) ? x : 0`, a running
// max `b > a || b != b ? b : a`. Both stay branch-free selects that vectorise.
template <class T> constexpr T max_keeping_nan(T a, T b) { return b > a || b != b ? b : a; }
template <class T> constexpr T min_keeping_nan(T a, T b) { return b < a || b != b ? b : a; }

// Calls f(T{}) with T the C++ type of `dtype`.
template <class F> decltype(auto) dispatch_all(DType dtype, F&& f) {
    switch (dtype) {
        case DType::f32: return f(float{});
        case DType::f64: return f(double{});
        case DType::i64: return f(std::int64_t{});
        case DType::u8: return f(std::uint8_t{});
    }
    return f(float{});
}

// Calls f(T{}) for f32/f64; other dtypes are an error naming `op`.
template <class F> decltype(auto) dispatch_float(DType dtype, const char* op, F&& f) {
    if (dtype == DType::f64) return f(double{});
    if (dtype != DType::f32) {
        throw ShapeError(op, std::string("expected a floating tensor (f32 or f64), got ") +
                                 dtype_name(dtype));
    }
    return f(float{});
}

// Note [Strided runs]
// Every elementwise kernel walks the output shape once, with up to N operands that each have
// their own strides (0 where broadcast). Adjacent axes that are contiguous for every operand
// are merged first, so a dense tensor is one long run. The callback receives runs:
// f(count, offsets, inner_strides), offsets in elements relative to each operand's base.
template <int N> struct RunPlan {
    int ndim = 0;
    std::int64_t shape[Shape::kMaxDims] = {};
    std::int64_t strides[N][Shape::kMaxDims] = {};
    std::int64_t inner = 1;         // length of the innermost run
    std::int64_t outer = 1;         // number of runs
};

template <int N> RunPlan<N> plan_runs(const Shape& shape, const std::array<const Shape*, N>& strides) {
    RunPlan<N> p;
    // drop size-1 axes, then merge contiguous neighbours
    for (int i = 0; i < shape.size(); ++i) {
        if (shape[i] == 1) continue;
        if (p.ndim > 0) {
            bool mergeable = true;
            for (int k = 0; k < N; ++k) {
                if ((*strides[k])[i] * shape[i] != p.strides[k][p.ndim - 1]) mergeable = false;
            }
            if (mergeable) {
                p.shape[p.ndim - 1] *= shape[i];
                for (int k = 0; k < N; ++k) p.strides[k][p.ndim - 1] = (*strides[k])[i];
                continue;
            }
        }
        p.shape[p.ndim] = shape[i];
        for (int k = 0; k < N; ++k) p.strides[k][p.ndim] = (*strides[k])[i];
        ++p.ndim;
    }
    if (p.ndim == 0) {
        p.ndim = 1;
        p.shape[0] = shape.numel() == 0 ? 0 : 1;
        for (int k = 0; k < N; ++k) p.strides[k][0] = 1;
    }
    p.inner = p.shape[p.ndim - 1];
    p.outer = 1;
    for (int i = 0; i + 1 < p.ndim; ++i) p.outer *= p.shape[i];
    if (p.inner == 0) p.outer = 0;
    return p;
}

// Runs [run_begin, run_end) of a plan.
template <int N, class F> void exec_runs(const RunPlan<N>& p, std::int64_t run_begin, std::int64_t run_end, F&& f) {
    std::array<std::int64_t, N> inner_stride;
    for (int k = 0; k < N; ++k) inner_stride[k] = p.strides[k][p.ndim - 1];
    for (std::int64_t r = run_begin; r < run_end; ++r) {
        std::array<std::int64_t, N> off{};
        std::int64_t rem = r;
        for (int i = p.ndim - 2; i >= 0; --i) {
            std::int64_t idx = rem % p.shape[i];
            rem /= p.shape[i];
            for (int k = 0; k < N; ++k) off[k] += idx * p.strides[k][i];
        }
        f(p.inner, off, inner_stride);
    }
}

// Elements below this count run on the calling thread (Note [Threading] in threading.hpp).
constexpr std::int64_t kParallelGrain = 1 << 15;

// f(lo, hi) over [0, n): on the calling thread for small n, else in parallel chunks of at least
// kParallelGrain elements.
template <class F> void for_elements(std::int64_t n, F&& f) {
    if (n < kParallelGrain || max_threads() == 1) {
        f(std::int64_t{0}, n);
        return;
    }
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, kParallelGrain),
                      [&](const tbb::blocked_range<std::int64_t>& r) { f(r.begin(), r.end()); });
}

// Runs f over every run of the plan, in parallel over runs (or over the single run split into
// chunks) when the tensor is large.
template <int N, class F> void for_each_run(const Shape& shape, const std::array<const Shape*, N>& strides, F&& f) {
    RunPlan<N> p = plan_runs<N>(shape, strides);
    std::int64_t total = p.inner * p.outer;
    if (total < kParallelGrain || max_threads() == 1) {
        exec_runs<N>(p, 0, p.outer, f);
        return;
    }
    if (p.outer == 1) {
        std::array<std::int64_t, N> inner_stride;
        for (int k = 0; k < N; ++k) inner_stride[k] = p.strides[k][0];
        std::int64_t chunk = kParallelGrain;
        std::int64_t n_chunks = (p.inner + chunk - 1) / chunk;
        tbb::parallel_for(std::int64_t{0}, n_chunks, [&](std::int64_t c) {
            std::int64_t start = c * chunk;
            std::int64_t count = std::min(chunk, p.inner - start);
            std::array<std::int64_t, N> off;
            for (int k = 0; k < N; ++k) off[k] = start * inner_stride[k];
            f(count, off, inner_stride);
        });
        return;
    }
    std::int64_t runs_per_chunk = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(p.inner, 1));
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, p.outer, runs_per_chunk),
                      [&](const tbb::blocked_range<std::int64_t>& r) { exec_runs<N>(p, r.begin(), r.end(), f); });
}

}  // namespace wengert::detail
