// Regularizers and constraints (Note [Regularizers] in regularizers.hpp).
#include "wengert/regularizers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::map1;
using detail::map2;

namespace {

void require_penalty(double a, const char* name) {
    if (!(a >= 0.0 && std::isfinite(a))) throw ShapeError(name, fmt::format("the penalty factor must be a finite number >= 0, got {}", a));
}

Var sum_abs(Var x) { return sum(abs(x)); }

Var sum_squares(Var x) { return sum(x * x); }

// ||w|| over `axis`, kept as an extent-1 axis.
Tensor l2_norms(const Tensor& w, std::int64_t axis, const char* op) {
    std::vector<int> axes{normalize_axis(axis, w.ndim(), op)};
    Tensor squares = kern::sum(kern::mul(w, w), axes, true);
    return dispatch_float(w.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        return map1<T, T>(squares, [](T s) { return std::sqrt(s); });
    });
}

}  // namespace

Regularizer l1(double a) {
    require_penalty(a, "l1");
    return {fmt::format("l1({})", a), [a](Var x) { return sum_abs(x) * a; }};
}

Regularizer l2(double a) {
    require_penalty(a, "l2");
    return {fmt::format("l2({})", a), [a](Var x) { return sum_squares(x) * a; }};
}

Regularizer l1_l2(double a, double b) {
    require_penalty(a, "l1_l2");
    require_penalty(b, "l1_l2");
    return {fmt::format("l1_l2(l1={}, l2={})", a, b), [a, b](Var x) { return sum_abs(x) * a + sum_squares(x) * b; }};
}

Constraint non_neg() {
    return {"non_neg", [](Tensor& w) {
                // w * (w >= 0)
                w.copy_from(dispatch_float(w.dtype(), "non_neg", [&](auto tag) {
                    using T = decltype(tag);
                    return map1<T, T>(w, [](T v) { return v >= 0 ? v : T(0); });
                }));
            }};
}

Constraint unit_norm(std::int64_t axis) {
    return {fmt::format("unit_norm(axis={})", axis), [axis](Tensor& w) {
                // w / (1e-7 + ||w||)
                Tensor norms = l2_norms(w, axis, "unit_norm");
                w.copy_from(dispatch_float(w.dtype(), "unit_norm", [&](auto tag) {
                    using T = decltype(tag);
                    return map2<T, T>(w, norms, "unit_norm", [](T v, T n) { return v / (T(1e-7) + n); });
                }));
            }};
}

Constraint max_norm(double max_value, std::int64_t axis) {
    if (!(max_value >= 0.0)) throw ShapeError("max_norm", fmt::format("max_value must not be negative, got {}", max_value));
    return {fmt::format("max_norm(max_value={}, axis={})", max_value, axis), [max_value, axis](Tensor& w) {
                // w * clip(||w||, 0, max_value) / (1e-7 + ||w||)
                Tensor norms = l2_norms(w, axis, "max_norm");
                w.copy_from(dispatch_float(w.dtype(), "max_norm", [&](auto tag) {
                    using T = decltype(tag);
                    const T m = static_cast<T>(max_value);
                    return map2<T, T>(w, norms, "max_norm", [m](T v, T n) { return v * std::min(n, m) / (T(1e-7) + n); });
                }));
            }};
}

// Note [Simplex projection]
// Duchi et al. 2008: for each slice y along `axis`, sort u = y descending; rho is the largest j
// with u_j + (1 - sum_{i<=j} u_i) / j > 0; lambda = (1 - sum_{i<=rho} u_i) / rho; the
// projection is max(y + lambda, 0). It is the nearest point of the simplex in L2, which
// clipping negatives and renormalising is not.
Constraint simplex(std::int64_t axis) {
    return {fmt::format("simplex(axis={})", axis), [axis](Tensor& w) {
                int a = normalize_axis(axis, w.ndim(), "simplex");
                Tensor moved = w.transpose(a, w.ndim() - 1).contiguous();
                std::int64_t n = moved.shape().back();
                std::int64_t slices = moved.numel() / std::max<std::int64_t>(n, 1);
                dispatch_float(w.dtype(), "simplex", [&](auto tag) {
                    using T = decltype(tag);
                    T* p = moved.data<T>();
                    std::vector<double> u(static_cast<std::size_t>(n));
                    for (std::int64_t s = 0; s < slices; ++s) {
                        T* y = p + s * n;
                        for (std::int64_t j = 0; j < n; ++j) u[static_cast<std::size_t>(j)] = static_cast<double>(y[j]);
                        std::sort(u.begin(), u.end(), std::greater<>());
                        double cumulative = 0, lambda = 0;
                        for (std::int64_t j = 0; j < n; ++j) {
                            cumulative += u[static_cast<std::size_t>(j)];
                            double candidate = (1.0 - cumulative) / static_cast<double>(j + 1);
                            if (u[static_cast<std::size_t>(j)] + candidate > 0) lambda = candidate;
                        }
                        for (std::int64_t j = 0; j < n; ++j) y[j] = static_cast<T>(std::max(0.0, static_cast<double>(y[j]) + lambda));
                    }
                });
                w.copy_from(moved.transpose(a, w.ndim() - 1));
            }};
}

}  // namespace wengert
