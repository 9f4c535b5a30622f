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

// The backward of act(... + b) over n_rows contiguous rows of d: masked = g [y > 0] when y is
// given (relu; else masked is not written), and db = the sum over rows of the masked (or given)
// g when db is given. Column blocks, each over every row in order, so db's sums do not depend
// on the thread count.
template <class T>
void bias_activation_backward(const T* g, const T* y, T* masked, T* db, std::int64_t n_rows, std::int64_t d) {
    for_rows(d, n_rows, [&](std::int64_t lo, std::int64_t hi) {
        std::vector<double> sums(static_cast<std::size_t>(hi - lo), 0.0);
        for (std::int64_t r = 0; r < n_rows; ++r) {
            std::int64_t at = r * d + lo;
            if (y) mask_row(g + at, y + at, masked + at, hi - lo);
            if (db) add_row(y ? masked + at : g + at, sums.data(), hi - lo);
        }
        if (db) {
            for (std::int64_t c = lo; c < hi; ++c) db[c] = static_cast<T>(sums[static_cast<std::size_t>(c - lo)]);
        }
    });
}

}  // namespace wengert::detail
