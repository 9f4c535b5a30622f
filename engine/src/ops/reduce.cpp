// Reductions over any set of axes, with keepdims: sum, mean, max, min, logsumexp, var.
// Backward broadcasts the output gradient back over the reduced axes (a stride-0 view, no
// copy) after restoring them as extent-1 axes.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "../kernels/elementwise.hpp"
#include "families.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::map2;
using detail::map3;

namespace {

// The output gradient reshaped to keepdims form and broadcast to the input's shape.
Tensor expand_back(const Tensor& grad_out, const Shape& input_shape, const std::vector<int>& axes) {
    Shape kept = kern::reduced_shape(input_shape, axes, true);
    return grad_out.reshape(kept).expand(input_shape);
}

std::int64_t reduced_count(const Shape& shape, const std::vector<int>& axes) {
    std::int64_t n = 1;
    for (int a : axes) n *= shape[a];
    return n;
}

}  // namespace

// x (...) -> (... without axes)
Var sum(Var x, std::vector<std::int64_t> axes_in, bool keepdims) {
    std::vector<int> axes = kern::normalize_axes(axes_in, x.ndim(), "sum");
    Tensor out = kern::sum(x.value(), axes, keepdims);
    Shape in_shape = x.shape();
    return x.tape()->record("sum", std::move(out), {x}, [axes, in_shape](BackwardCtx& ctx) {
        // out = sum(x, axes);  dx = broadcast(grad_out)
        ctx.add(0, expand_back(ctx.grad_out(), in_shape, axes));
    });
}

Var mean(Var x, std::vector<std::int64_t> axes_in, bool keepdims) {
    std::vector<int> axes = kern::normalize_axes(axes_in, x.ndim(), "mean");
    std::int64_t n = reduced_count(x.shape(), axes);
    if (n == 0) throw ShapeError("mean", fmt::format("mean over zero elements of {}", x.shape().str()));
    Tensor out = kern::scale(kern::sum(x.value(), axes, keepdims), 1.0 / static_cast<double>(n));
    Shape in_shape = x.shape();
    return x.tape()->record("mean", std::move(out), {x}, [axes, in_shape, n](BackwardCtx& ctx) {
        // out = sum(x, axes) / n;  dx = broadcast(grad_out) / n
        ctx.add(0, kern::scale(expand_back(ctx.grad_out(), in_shape, axes), 1.0 / static_cast<double>(n)));
    });
}

namespace {

// max and min: the gradient is shared equally among the elements equal to the extremum; a NaN
// extremum is each NaN's (PyTorch's evenly_distribute_backward; Note [NaN propagates]).
Var extremum(Var x, std::vector<std::int64_t> axes_in, bool keepdims, bool is_max) {
    const char* op = is_max ? "max" : "min";
    std::vector<int> axes = kern::normalize_axes(axes_in, x.ndim(), op);
    Tensor kept = is_max ? kern::max(x.value(), axes, true) : kern::min(x.value(), axes, true);
    Tensor out = keepdims ? kept : kept.reshape(kern::reduced_shape(x.shape(), axes, false));
    Saved sx(x.value()), skept(kept);
    Shape in_shape = x.shape();
    return x.tape()->record(op, std::move(out), {x}, [sx, skept, axes, in_shape, op](BackwardCtx& ctx) {
        // out = extremum(x, axes);  dx = grad_out * [x == out] / count(x == out), NaN matching NaN
        dispatch_float(ctx.grad_out().dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            Tensor hit = map2<T, T>(sx.get(op), skept.get(op), op, [](T v, T m) { return v == m || (v != v && m != m) ? T(1) : T(0); });
            Tensor count = kern::sum(hit, axes, true);
            Tensor share = kern::div(ctx.grad_out().reshape(count.shape()), count);
            ctx.add(0, kern::mul(hit, share));
        });
    });
}

}  // namespace

Var max(Var x, std::vector<std::int64_t> axes, bool keepdims) { return extremum(x, std::move(axes), keepdims, true); }
Var min(Var x, std::vector<std::int64_t> axes, bool keepdims) { return extremum(x, std::move(axes), keepdims, false); }

// Stable: m + log(sum(exp(x - m))), m the max over the axes (0 where it is infinite).
Var logsumexp(Var x, std::vector<std::int64_t> axes_in, bool keepdims) {
    std::vector<int> axes = kern::normalize_axes(axes_in, x.ndim(), "logsumexp");
    Tensor kept = dispatch_float(x.dtype(), "logsumexp", [&](auto tag) {
        using T = decltype(tag);
        Tensor m = kern::max(x.value(), axes, true);
        Tensor shift = detail::map1<T, T>(m, [](T v) { return std::isfinite(v) ? v : T(0); });
        Tensor e = map2<T, T>(x.value(), shift, "logsumexp", [](T v, T s) { return std::exp(v - s); });
        Tensor s = kern::sum(e, axes, true);
        return map2<T, T>(s, shift, "logsumexp", [](T sv, T sh) { return std::log(sv) + sh; });
    });
    Tensor out = keepdims ? kept : kept.reshape(kern::reduced_shape(x.shape(), axes, false));
    Saved sx(x.value()), skept(kept);
    return x.tape()->record("logsumexp", std::move(out), {x}, [sx, skept](BackwardCtx& ctx) {
        // out = log sum exp(x);  dx = grad_out * exp(x - out)
        dispatch_float(ctx.grad_out().dtype(), "logsumexp", [&](auto tag) {
            using T = decltype(tag);
            const Tensor& lse = skept.get("logsumexp");
            ctx.add(0, map3<T, T, T, T>(sx.get("logsumexp"), lse, ctx.grad_out().reshape(lse.shape()), "logsumexp",
                                        [](T v, T l, T g) { return g * std::exp(v - l); }));
        });
    });
}

// Population variance by default (correction 0, as NumPy and layer norm); correction 1 is the
// unbiased estimate.
Var var(Var x, std::vector<std::int64_t> axes_in, bool keepdims, std::int64_t correction) {
    std::vector<int> axes = kern::normalize_axes(axes_in, x.ndim(), "var");
    std::int64_t n = reduced_count(x.shape(), axes);
    if (n - correction <= 0) {
        throw ShapeError("var", fmt::format("{} elements with correction {} leaves no degrees of freedom", n, correction));
    }
    double denom = static_cast<double>(n - correction);
    Tensor mu = kern::scale(kern::sum(x.value(), axes, true), 1.0 / static_cast<double>(n));
    Tensor centered = kern::sub(x.value(), mu);
    Tensor kept = kern::scale(kern::sum(kern::mul(centered, centered), axes, true), 1.0 / denom);
    Tensor out = keepdims ? kept : kept.reshape(kern::reduced_shape(x.shape(), axes, false));
    Saved scentered(centered);
    Shape kept_shape = kept.shape();
    return x.tape()->record("var", std::move(out), {x}, [scentered, kept_shape, denom](BackwardCtx& ctx) {
        // out = sum((x - mean)^2) / (n - correction);  dx = 2 (x - mean) grad_out / (n - correction)
        ctx.add(0, kern::mul(kern::scale(scentered.get("var"), 2.0 / denom), ctx.grad_out().reshape(kept_shape)));
    });
}

void register_reduce(Registry& r) {
    const std::vector<ArgSpec> over = {arg::tensor("x"), arg::ints("axis", std::vector<std::int64_t>{}), arg::boolean("keepdims", false)};
    r.def("sum", over, "sum over axes (all when empty)", &sum);
    r.def("mean", over, "mean over axes (all when empty)", &mean);
    r.def("max", over, "max over axes; ties share the gradient", &max);
    r.def("min", over, "min over axes; ties share the gradient", &min);
    r.def("logsumexp", over, "log(sum(exp(x))) over axes, computed stably", &logsumexp);
    std::vector<ArgSpec> var_args = over;
    var_args.push_back(arg::integer("correction", 0));
    r.def("var", var_args, "variance over axes; correction 0 (population) or 1 (unbiased)", &var);
}

}  // namespace wengert
