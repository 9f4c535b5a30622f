// Internal: the bias, the activation and their backward over contiguous rows, shared by the ops
// that fuse them into a product (linear, conv2d; Note [Fused linear]).
#pragma once

#include <cstdint>
#include <vector>

#include "rows.hpp"
#include "wengert/ops.hpp"

namespace wengert::detail {

// The row loops, with pointers that do not alias, so that they vectorise.
// y = act(y + b) over one row of n (b null: no bias)
template <class T> void bias_activation(T* __restrict y, const T* __restrict b, std::int64_t n, Activation activation) {
    if (b) {
        for (std::int64_t c = 0; c < n; ++c) y[c] += b[c];
    }
    if (activation == Activation::relu) {
        for (std::int64_t c = 0; c < n; ++c) y[c] = !(y[c] <= T(0)) ? y[c] : T(0);   // Note [NaN propagates]
    }
}

// masked = g where not y <= 0 (y > 0 or NaN, as relu's own backward), else 0
template <class T> void mask_row(const T* __restrict g, const T* __restrict y, T* __restrict masked, std::int64_t n) {
    for (std::int64_t c = 0; c < n; ++c) {
        T gc = g[c];
        masked[c] = !(y[c] <= T(0)) ? gc : T(0);
    }
}

// sums += g, in double
template <class T> void add_row(const T* __restrict g, double* __restrict sums, std::int64_t n) {
    for (std::int64_t c = 0; c < n; ++c) sums[c] += static_cast<double>(g[c]);
}

// Rows of one partial sum in bias_activation_backward's db, whatever the thread count.
constexpr std::int64_t kSumChunkRows = 1024;

// The backward of act(... + b) over n_rows contiguous rows of d: masked = g [y > 0] when y is
// given (relu; else masked is not written), and db = the sum over rows of the masked (or given)
// g when db is given. db adds the rows in order in double, in chunks of kSumChunkRows rows
// whose sums are then added in order: one chunk (the rows of a dense layer's batch) is the
// plain sum in row order, and no split depends on the thread count.
template <class T>
void bias_activation_backward(const T* g, const T* y, T* masked, T* db, std::int64_t n_rows, std::int64_t d) {
    if (y) {
        for_rows(n_rows, d, [&](std::int64_t lo, std::int64_t hi) { mask_row(g + lo * d, y + lo * d, masked + lo * d, (hi - lo) * d); });
    }
    if (!db) return;
    const T* summed = y ? masked : g;
    const std::int64_t chunks = std::max<std::int64_t>(1, (n_rows + kSumChunkRows - 1) / kSumChunkRows);
    std::vector<double> sums(static_cast<std::size_t>(chunks * d), 0.0);
    auto sum_chunk = [&](std::int64_t chunk) {
        double* s = sums.data() + chunk * d;
        for (std::int64_t r = chunk * kSumChunkRows; r < std::min(n_rows, (chunk + 1) * kSumChunkRows); ++r) add_row(summed + r * d, s, d);
    };
    if (chunks == 1 || n_rows * d < kParallelGrain || max_threads() == 1) {
        for (std::int64_t chunk = 0; chunk < chunks; ++chunk) sum_chunk(chunk);
    } else {
        tbb::parallel_for(std::int64_t{0}, chunks, sum_chunk);
    }
    for (std::int64_t c = 0; c < d; ++c) {
        double total = sums[static_cast<std::size_t>(c)];
        for (std::int64_t chunk = 1; chunk < chunks; ++chunk) total += sums[static_cast<std::size_t>(chunk * d + c)];
        db[c] = static_cast<T>(total);
    }
}

}  // namespace wengert::detail
