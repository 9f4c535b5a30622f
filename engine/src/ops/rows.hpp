// Internal: the loop of ops that work row by row over the last axis (cross-entropy, layer norm).
#pragma once

#include <algorithm>

#include "../dispatch.hpp"

namespace wengert::detail {

// Calls f(lo, hi) over ranges of n_rows rows of row_len elements each, in parallel when the
// input is large. A row is always handled whole by one call, so results do not depend on the
// thread count.
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
