// Internal: loops over the rows of a tensor along one axis.
//
// Note [Rows along an axis]
// softmax, log_softmax, argmax and gather each work on whole rows along one axis. The other
// axes are walked as one flat row number; every operand has its own strides (views need no
// copy, stride 0 is fine) and its own step along the axis. The callback receives
// f(offsets, steps, n): each operand's offset of the row's first element, its step along the
// axis, and the row length. Rows run in parallel when the tensor is large; each row is
// processed by one call, in order, so results do not depend on the thread count.
#pragma once

#include <algorithm>

#include "../dispatch.hpp"

namespace wengert::detail {

template <int N, class F>
void for_each_row(const Shape& shape, int axis, const std::array<const Shape*, N>& strides, F&& f) {
    Shape outer;
    std::array<Shape, N> outer_strides;
    std::array<std::int64_t, N> steps{};
    for (int i = 0; i < shape.size(); ++i) {
        if (i == axis) {
            for (int k = 0; k < N; ++k) steps[k] = (*strides[k])[i];
            continue;
        }
        outer.push_back(shape[i]);
        for (int k = 0; k < N; ++k) outer_strides[k].push_back((*strides[k])[i]);
    }
    std::int64_t n = shape[axis];
    std::int64_t rows = outer.numel();
    auto body = [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t r = lo; r < hi; ++r) {
            std::array<std::int64_t, N> offsets{};
            std::int64_t rem = r;
            for (int i = outer.size() - 1; i >= 0; --i) {
                std::int64_t idx = rem % outer[i];
                rem /= outer[i];
                for (int k = 0; k < N; ++k) offsets[k] += idx * outer_strides[k][i];
            }
            f(offsets, steps, n);
        }
    };
    if (rows * n < kParallelGrain || rows == 1 || max_threads() == 1) {
        body(0, rows);
        return;
    }
    std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(n, 1));
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, rows, grain),
                      [&](const tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
}

// Calls f(lo, hi) over ranges of n_rows contiguous rows of row_len elements each (cross-entropy,
// layer norm), in parallel when the input is large. A row is always handled whole by one call,
// so results do not depend on the thread count.
template <class F> void for_rows(std::int64_t n_rows, std::int64_t row_len, F&& f) {
    if (n_rows * row_len < kParallelGrain || n_rows == 1 || max_threads() == 1) {
        f(std::int64_t{0}, n_rows);
        return;
    }
    std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(row_len, 1));
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n_rows, grain),
                      [&](const tbb::blocked_range<std::int64_t>& r) { f(r.begin(), r.end()); });
}

}  // namespace wengert::detail
