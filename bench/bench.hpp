// Shared by the benchmarks: wall-clock timing and medians. Figures are printed, never asserted;
// the machine is shared and noisy, so only ratios measured in one run mean much.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace bench {

// Seconds taken by one call of f().
template <class F> double seconds(F&& f) {
    auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    std::size_t n = values.size();
    return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// Repetitions whose median every figure reports.
constexpr int kRepetitions = 9;

}  // namespace bench
