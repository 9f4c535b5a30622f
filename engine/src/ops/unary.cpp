// Unary elementwise functions: exp, log, sqrt, abs, tanh, sigmoid, relu, gelu, softplus.
//
// Note [Unary ops]
// Each op is a pair of scalar functions: its value, and its local derivative written in terms
// of the one tensor backward keeps, either the input x or the output y (whichever makes the
// derivative cheaper). Backward is dx = grad_out * slope(kept).
#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <type_traits>

#include "../kernels/elementwise.hpp"
#include "../kernels/vmath.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::map1;
using detail::map2;

namespace {

enum class Keep { input, output };

// x (...) -> (...); f32_kernel, when given, computes the value of contiguous f32 (in, out, n),
// in chunks over threads
using F32Kernel = void (*)(const float*, float*, std::int64_t);
template <class Value, class Slope>
Var unary(const char* op, Var x, Keep keep, Value value, Slope slope, F32Kernel f32_kernel = nullptr) {
    Tensor out = dispatch_float(x.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, float>) {
            if (f32_kernel && x.value().is_contiguous()) {
                Tensor y = Tensor::empty(x.shape(), DType::f32);
                const float* in = x.value().data<float>();
                float* o = y.data<float>();
                detail::for_elements(y.numel(), [&](std::int64_t lo, std::int64_t hi) { f32_kernel(in + lo, o + lo, hi - lo); });
                return y;
            }
        }
        return map1<T, T>(x.value(), [&](T v) { return static_cast<T>(value(v)); });
    });
    Saved kept(keep == Keep::input ? x.value() : out);
    return x.tape()->record(op, std::move(out), {x}, [kept, slope, op](BackwardCtx& ctx) {
        dispatch_float(ctx.grad_out().dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            ctx.add(0, map2<T, T>(ctx.grad_out(), kept.get(op), op, [&](T g, T k) { return static_cast<T>(g * slope(k)); }));
        });
    });
}

// gelu's constants (Note [GELU])
constexpr double kInvSqrt2 = 1.0 / std::numbers::sqrt2;
constexpr double kInvSqrt2Pi = 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2;  // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;       // sqrt(2 / pi)
constexpr double kCubic = 0.044715;

// 1 / (1 + e^-v) without overflow for either sign of v.
template <class T> T stable_sigmoid(T v) {
    if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
    T e = std::exp(v);
    return e / (T(1) + e);
}

// Note [sigmoid in f32]
// sigmoid is the VAE decoder's last op, over every pixel of every batch: with expf an element
// (a libm call, so no vector loop) it was 5% of the VAE's training step. In f32 it is computed in
// double as 1 / (1 + e^-v) with exp_clamped (Note [Vector math]) and rounded to float: the loop
// vectorises in each clone, every clone rounds alike, and the float is the correctly rounded
// sigmoid but within 1e-15 of a halfway point. No overflow to guard against: e^-v stays below
// 1e304 (|v| clamped at 700, where the float is already 0 or 1). NaN is NaN. f64 keeps
// stable_sigmoid. Strided f32 runs the same function element by element: the same bits.
template <class T> [[gnu::always_inline]] inline T sigmoid_value(T v) {
    if constexpr (std::is_same_v<T, float>) {
        return static_cast<float>(1.0 / (1.0 + detail::exp_clamped(-static_cast<double>(v))));
    } else {
        return stable_sigmoid(v);
    }
}

// sigmoid_value over contiguous f32, compiled for AVX-512, AVX2 and the baseline
[[gnu::target_clones("avx512f", "avx2", "default")]] void sigmoid_f32(const float* in, float* out, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = sigmoid_value(in[i]);
}

// Note [exp in f32]
// expf is a libm call per element, so the loop does not vectorise: exp over 10^7 floats ran at
// 17% of memcpy's rate on AMD Zen 3. In f32, exp is exp_clamped (Note [Vector math]) in double,
// rounded to float: the correctly rounded e^x but within 1e-15 of a halfway point (glibc's
// expf is within 1 ulp). Rounding to float does the rest: past log(FLT_MAX) the double
// overflows the float to inf, below the smallest subnormal it is 0, as expf gives; exp(-inf)
// is 0, exp(inf) inf, NaN is NaN. f64 keeps std::exp; strided f32 runs the same function
// element by element: the same bits.
template <class T> [[gnu::always_inline]] inline T exp_value(T v) {
    if constexpr (std::is_same_v<T, float>) {
        return static_cast<float>(detail::exp_clamped(static_cast<double>(v)));
    } else {
        return std::exp(v);
    }
}

// exp_value over contiguous f32, compiled for AVX-512, AVX2 and the baseline
[[gnu::target_clones("avx512f", "avx2", "default")]] void exp_f32(const float* in, float* out, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = exp_value(in[i]);
}

}  // namespace

Var exp(Var x) {
    // f32: Note [exp in f32]
    return unary("exp", x, Keep::output, [](auto v) { return exp_value(v); },
                 // y = exp(x);  dy/dx = y
                 [](auto y) { return y; }, &exp_f32);
}

Var log(Var x) {
    return unary("log", x, Keep::input, [](auto v) { return std::log(v); },
                 // y = log(x);  dy/dx = 1 / x
                 [](auto v) { return 1 / v; });
}

Var sqrt(Var x) {
    return unary("sqrt", x, Keep::output, [](auto v) { return std::sqrt(v); },
                 // y = sqrt(x);  dy/dx = 1 / (2 y)
                 [](auto y) { return 1 / (2 * y); });
}

Var abs(Var x) {
    return unary("abs", x, Keep::input, [](auto v) { return std::abs(v); },
                 // y = |x|;  dy/dx = sign(x), 0 at 0
                 [](auto v) { return v > 0 ? 1 : (v < 0 ? -1 : 0); });
}

Var tanh(Var x) {
    return unary("tanh", x, Keep::output, [](auto v) { return std::tanh(v); },
                 // y = tanh(x);  dy/dx = 1 - y^2
                 [](auto y) { return 1 - y * y; });
}

Var sigmoid(Var x) {
    // f32: Note [sigmoid in f32]
    return unary("sigmoid", x, Keep::output, [](auto v) { return sigmoid_value(v); },
                 // y = 1 / (1 + e^-x);  dy/dx = y (1 - y)
                 [](auto y) { return y * (1 - y); }, &sigmoid_f32);
}

Var relu(Var x) {
    // Note [NaN propagates]: relu(NaN) = NaN, and its gradient passes there as PyTorch's does
    return unary("relu", x, Keep::output, [](auto v) { return !(v <= 0) ? v : decltype(v)(0); },
                 // y = max(x, 0);  dy/dx = [not y <= 0]
                 [](auto y) { return !(y <= 0) ? 1 : 0; });
}

// Note [GELU]
// Exact (PyTorch's default): x Phi(x), Phi the standard normal CDF, 0.5 (1 + erf(x / sqrt 2)).
// Tanh approximation (PyTorch approximate='tanh'): 0.5 x (1 + tanh(u)),
// u = sqrt(2 / pi) (x + 0.044715 x^3).
Var gelu(Var x, bool tanh_approximation) {
    if (!tanh_approximation) {
        return unary("gelu", x, Keep::input,
                     [](auto v) {
                         using T = decltype(v);
                         return T(0.5) * v * (T(1) + std::erf(v * T(kInvSqrt2)));
                     },
                     // y = x Phi(x);  dy/dx = Phi(x) + x phi(x)
                     [](auto v) {
                         using T = decltype(v);
                         T cdf = T(0.5) * (T(1) + std::erf(v * T(kInvSqrt2)));
                         T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
                         return cdf + v * pdf;
                     });
    }
    return unary("gelu", x, Keep::input,
                 [](auto v) {
                     using T = decltype(v);
                     return T(0.5) * v * (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(kCubic) * v * v * v)));
                 },
                 // y = 0.5 x (1 + tanh(u));  dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx
                 [](auto v) {
                     using T = decltype(v);
                     T t = std::tanh(T(kSqrt2OverPi) * (v + T(kCubic) * v * v * v));
                     T du = T(kSqrt2OverPi) * (T(1) + T(3 * kCubic) * v * v);
                     return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du;
                 });
}

// As PyTorch: x where beta x > threshold, else log(1 + e^(beta x)) / beta, the latter computed
// as (max(bx, 0) + log1p(e^-|bx|)) / beta so that no threshold can make it overflow.
Var softplus(Var x, double beta, double threshold) {
    if (beta == 0) throw ShapeError("softplus", fmt::format("beta must not be zero (x {})", x.shape().str()));
    return unary("softplus", x, Keep::input,
                 [beta, threshold](auto v) {
                     using T = decltype(v);
                     T bx = T(beta) * v;
                     if (bx > T(threshold)) return v;
                     return (std::max(bx, T(0)) + std::log1p(std::exp(-std::abs(bx)))) / T(beta);
                 },
                 // y = log(1 + e^(beta x)) / beta;  dy/dx = sigmoid(beta x)  (1 above the threshold)
                 [beta, threshold](auto v) {
                     using T = decltype(v);
                     T bx = T(beta) * v;
                     return bx > T(threshold) ? T(1) : stable_sigmoid(bx);
                 });
}

void register_unary(Registry& r) {
    const std::vector<ArgSpec> x = {arg::tensor("x")};
    r.def("exp", x, "e^x", &exp);
    r.def("log", x, "natural logarithm", &log);
    r.def("sqrt", x, "square root", &sqrt);
    r.def("abs", x, "|x|; gradient 0 at 0", &abs);
    r.def("tanh", x, "hyperbolic tangent", &tanh);
    r.def("sigmoid", x, "1 / (1 + e^-x), stable for large |x|", &sigmoid);
    r.def("relu", x, "max(x, 0)", &relu);
    r.def("gelu", {arg::tensor("x"), arg::string("approximate", "none")},
          "x Phi(x); approximate=\"tanh\" for the tanh form (as PyTorch)", [](Var x, const std::string& approximate) {
              if (approximate != "none" && approximate != "tanh") {
                  throw ArgumentError(fmt::format("unknown approximate '{}'; expected \"none\" or \"tanh\"", approximate));
              }
              return gelu(x, approximate == "tanh");
          });
    r.def("softplus", {arg::tensor("x"), arg::number("beta", 1.0), arg::number("threshold", 20.0)},
          "log(1 + e^(beta x)) / beta, and x where beta x > threshold (as PyTorch)", &softplus);
}

}  // namespace wengert
