// Branch-free logarithm and exponential in double, for f32 kernels that vectorise.
//
// Note [Vector math]
// A loop that calls std::log or std::exp does not vectorise: each element is a libm call. The
// f32 kernels that spend their time there (bce's logarithms, sigmoid, fused attention's
// softmax) take them instead from the functions below: double arithmetic without branches or
// calls, so that GCC vectorises a loop of them in each target clone, rounded to float by the
// caller. Each is within about 1e-15 relative of the true value, so the float is the correctly
// rounded one but for values within 1e-15 of a halfway point (glibc's logf and expf are within
// 1 ulp). The same IEEE operations run
// in every vector lane, in every clone and in the scalar loop (the engine builds with
// -ffp-contract=off), so neither the CPU's vector width nor a split over threads changes a bit.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

namespace wengert::detail {

// c ? a : b by bit masks: no branch for GCC to keep (it does not if-convert a floating-point
// select or operation that might trap, so a ?: would keep the loop from vectorising)
[[gnu::always_inline]] inline double choose(bool c, double a, double b) {
    const std::uint64_t mask = std::uint64_t{0} - static_cast<std::uint64_t>(c);
    return std::bit_cast<double>((std::bit_cast<std::uint64_t>(a) & mask) | (std::bit_cast<std::uint64_t>(b) & ~mask));
}

// log x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) for s = (m - 1) / (m + 1),
// |s| <= 0.172, by its series to s^17 (the next term is below 1e-15 of the sum). For positive
// normal doubles (every float is one, and every 1 - p of a float p); 0 and -0 give -709.1 rather
// than -inf (the sign bit is ignored: -0 is 0, as std::log has it); NaN is NaN.
[[gnu::always_inline]] inline double log_normal(double x) {
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(x) & 0x7fffffffffffffffull;
    // the exponent as a double without an integer conversion: 2^52 + e + 1023, less 2^52 + 1023
    double e = std::bit_cast<double>((bits >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0);
    double m = std::bit_cast<double>((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);   // [1, 2)
    const bool high = m > 1.4142135623730951;
    m *= choose(high, 0.5, 1.0);
    e += choose(high, 1.0, 0.0);
    const double s = (m - 1.0) / (m + 1.0), w = s * s;
    // Estrin's scheme, as exp_clamped's series: a chain of 4 multiply-adds, not 8
    const double w2 = w * w, w4 = w2 * w2, w8 = w4 * w4;
    const double p0 = 1.0 + w * (1.0 / 3), p1 = 1.0 / 5 + w * (1.0 / 7), p2 = 1.0 / 9 + w * (1.0 / 11),
                 p3 = 1.0 / 13 + w * (1.0 / 15);
    const double series = ((p0 + w2 * p1) + w4 * (p2 + w2 * p3)) + w8 * (1.0 / 17);
    const double r = e * 0.6931471805599453 + 2.0 * s * series;
    return choose(x == x, r, x);
}

// e^x for x clamped to [-700, 700] (so e^x stays a normal double: 1e-304 to 1e304, far past
// every float): x = k log 2 + r, |r| <= log(2) / 2, k = round(x / log 2) by the 1.5 2^52 trick,
// log 2 in two parts (fdlibm's) so that r is exact to double rounding, e^r by its Taylor series
// to r^13 (the next term is below 2e-17), times 2^k built in the exponent bits. NaN is NaN.
// The series is summed by Estrin's scheme (pairs c_2i + c_2i+1 r, then pairs of those in r^2,
// r^4, r^8) rather than Horner's: a chain of 4 multiply-adds instead of 13, which left a vector
// loop of it waiting on latency (3.3 ns an element on AMD Zen 3, slower than glibc's expf).
[[gnu::always_inline]] inline double exp_clamped(double x) {
    const double c = choose(x > 700.0, 700.0, choose(x < -700.0, -700.0, x));
    const double shifted = c * 1.4426950408889634 + 0x1.8p52;
    const double k = shifted - 0x1.8p52;
    const double r = (c - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double q0 = 1.0 + r, q1 = 1.0 / 2 + r * (1.0 / 6), q2 = 1.0 / 24 + r * (1.0 / 120),
                 q3 = 1.0 / 720 + r * (1.0 / 5040), q4 = 1.0 / 40320 + r * (1.0 / 362880),
                 q5 = 1.0 / 3628800 + r * (1.0 / 39916800), q6 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    const double u0 = q0 + r2 * q1, u1 = q2 + r2 * q3, u2 = q4 + r2 * q5;
    const double v0 = u0 + r4 * u1, v1 = u2 + r4 * q6;
    const double poly = v0 + r8 * v1;
    // k + 1023 in the exponent field: the low bits of `shifted` hold k in two's complement
    const double scale = std::bit_cast<double>((std::bit_cast<std::uint64_t>(shifted) + 1023) << 52);
    return choose(x == x, poly * scale, x);
}

// The sum of f(c) over c < n in double, by 8 interleaved partial sums (element c into part
// c % 8) combined in order, then the tail: no chain of dependent adds, so a loop of it
// vectorises, and the order is the source's, the same in every clone and vector width.
template <class F> [[gnu::always_inline]] inline double lane_sum(std::int64_t n, F f) {
    constexpr int kParts = 8;
    double part[kParts] = {};
    std::int64_t c = 0;
    for (; c + kParts <= n; c += kParts) {
#pragma GCC unroll 8
        for (int l = 0; l < kParts; ++l) part[l] += f(c + l);
    }
    double total = 0;
    for (int l = 0; l < kParts; ++l) total += part[l];
    for (; c < n; ++c) total += f(c);
    return total;
}

// The max of x[0 .. n) as max_keeping_nan folds it from -inf (NaN when any element is NaN), by
// an integer reduction that vectorises: the keys order floats as their values (a negative
// float's bits other than the sign flipped), their max mapped back to its float.
[[gnu::always_inline]] inline float max_keeping_nan_f32(const float* x, std::int64_t n) {
    auto key = [](std::uint32_t bits) {
        return bits ^ (static_cast<std::uint32_t>(static_cast<std::int32_t>(bits) >> 31) & 0x7fffffffu);
    };
    std::int32_t best = static_cast<std::int32_t>(key(std::bit_cast<std::uint32_t>(-std::numeric_limits<float>::infinity())));
    std::uint32_t nan = 0;
    for (std::int64_t j = 0; j < n; ++j) {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(x[j]);
        nan |= static_cast<std::uint32_t>((bits & 0x7fffffffu) > 0x7f800000u);
        best = std::max(best, static_cast<std::int32_t>(key(bits)));
    }
    // the key map is its own inverse
    return nan ? std::numeric_limits<float>::quiet_NaN() : std::bit_cast<float>(key(static_cast<std::uint32_t>(best)));
}

}  // namespace wengert::detail
