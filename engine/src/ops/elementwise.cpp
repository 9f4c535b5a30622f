// Elementwise arithmetic, comparisons, where, clamp, detach, cast.
// Every binary op broadcasts as NumPy does; BackwardCtx::add sums gradients back to each
// input's shape, so closures below only write the full-shape gradient.
#include <fmt/format.h>

#include <cmath>

#include "../kernels/elementwise.hpp"
#include "families.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_all;
using detail::dispatch_float;
using detail::map1;
using detail::map2;
using detail::map3;

namespace {

// A scalar as a 0-d tensor of x's dtype.
Tensor scalar_like(const Var& x, double s) { return Tensor::scalar(s, x.dtype()); }

}  // namespace

// ---- add / sub ------------------------------------------------------------------------------
// a (...), b (...) -> broadcast (...)
Var add(Var a, Var b) {
    Tensor out = kern::add(a.value(), b.value());
    return tape_of(a).record("add", std::move(out), {a, b}, [](BackwardCtx& ctx) {
        // out = a + b
        ctx.add(0, ctx.grad_out());
        ctx.add(1, ctx.grad_out());
    });
}

Var sub(Var a, Var b) {
    Tensor out = kern::sub(a.value(), b.value());
    return tape_of(a).record("sub", std::move(out), {a, b}, [](BackwardCtx& ctx) {
        // out = a - b
        ctx.add(0, ctx.grad_out());
        if (ctx.needs(1)) ctx.add(1, kern::neg(ctx.grad_out()));
    });
}

Var add(Var x, double s) {
    Tensor out = kern::add_scalar(x.value(), s);
    return tape_of(x).record("add", std::move(out), {x}, [](BackwardCtx& ctx) { ctx.add(0, ctx.grad_out()); });
}

Var rsub(double s, Var x) {
    Tensor out = kern::add_scalar(kern::neg(x.value()), s);
    return tape_of(x).record("sub", std::move(out), {x}, [](BackwardCtx& ctx) { ctx.add(0, kern::neg(ctx.grad_out())); });
}

// ---- mul / div ------------------------------------------------------------------------------
Var mul(Var a, Var b) {
    Tensor out = kern::mul(a.value(), b.value());
    Saved sa(a.value()), sb(b.value());
    if (a.tape() == b.tape() && a.id() == b.id()) {
        return tape_of(a).record("mul", std::move(out), {a, b}, [sa](BackwardCtx& ctx) {
            // out = a * a (a square, as in an L2 penalty): da = g a + g a, sent once
            ctx.add(0, dispatch_all(ctx.grad_out().dtype(), [&](auto tag) {
                using T = decltype(tag);
                return map2<T, T>(ctx.grad_out(), sa.get("mul"), "mul", [](T g, T v) {
                    T half = g * v;
                    return half + half;
                });
            }));
        });
    }
    return tape_of(a).record("mul", std::move(out), {a, b}, [sa, sb](BackwardCtx& ctx) {
        // out = a * b
        if (ctx.needs(0)) ctx.add(0, kern::mul(ctx.grad_out(), sb.get("mul")));
        if (ctx.needs(1)) ctx.add(1, kern::mul(ctx.grad_out(), sa.get("mul")));
    });
}

Var mul(Var x, double s) {
    Tensor out = kern::scale(x.value(), s);
    return tape_of(x).record("mul", std::move(out), {x}, [s](BackwardCtx& ctx) { ctx.add(0, kern::scale(ctx.grad_out(), s)); });
}

Var div(Var a, Var b) {
    Tensor out = kern::div(a.value(), b.value());
    Saved sb(b.value()), sout(out);
    return tape_of(a).record("div", out, {a, b}, [sb, sout](BackwardCtx& ctx) {
        // out = a / b;  d/da = 1/b;  d/db = -out/b
        const Tensor& bv = sb.get("div");
        if (ctx.needs(0)) ctx.add(0, kern::div(ctx.grad_out(), bv));
        if (ctx.needs(1)) ctx.add(1, kern::neg(kern::div(kern::mul(ctx.grad_out(), sout.get("div")), bv)));
    });
}

Var rdiv(double s, Var x) {
    Tensor out = kern::div(scalar_like(x, s), x.value());
    Saved sx(x.value()), sout(out);
    return tape_of(x).record("div", out, {x}, [sx, sout](BackwardCtx& ctx) {
        // out = s / x;  d/dx = -out / x
        ctx.add(0, kern::neg(kern::div(kern::mul(ctx.grad_out(), sout.get("div")), sx.get("div"))));
    });
}

Var neg(Var x) {
    Tensor out = kern::neg(x.value());
    return tape_of(x).record("neg", std::move(out), {x}, [](BackwardCtx& ctx) { ctx.add(0, kern::neg(ctx.grad_out())); });
}

// ---- pow ------------------------------------------------------------------------------------
// x^p for a number p. As PyTorch's pow with a scalar exponent, 2 is x * x, 3 is x * x * x and 0.5
// is sqrt(x): the same values as PyTorch's, each rounded once, and the square of a penalty's
// sum(h ^ 2) no longer costs a pow call per element.
template <class T> T pow_scalar(T v, double p) {
    if (p == 2) return v * v;
    if (p == 3) return v * v * v;
    if (p == 0.5) return std::sqrt(v);
    return static_cast<T>(std::pow(v, static_cast<T>(p)));
}

Var pow(Var x, double p) {
    Tensor out = dispatch_float(x.dtype(), "pow", [&](auto tag) {
        using T = decltype(tag);
        if (p == 2) return map1<T, T>(x.value(), [](T v) { return v * v; });
        return map1<T, T>(x.value(), [p](T v) { return pow_scalar(v, p); });
    });
    Saved sx(x.value());
    return tape_of(x).record("pow", std::move(out), {x}, [sx, p](BackwardCtx& ctx) {
        // out = x^p;  d/dx = p x^(p-1)
        Tensor d = dispatch_float(ctx.grad_out().dtype(), "pow", [&](auto tag) {
            using T = decltype(tag);
            if (p == 2) return map2<T, T>(ctx.grad_out(), sx.get("pow"), "pow", [](T g, T v) { return g * T(2) * v; });
            return map2<T, T>(ctx.grad_out(), sx.get("pow"), "pow", [p](T g, T v) {
                return p == 0 ? T(0) : static_cast<T>(g * p * pow_scalar(v, p - 1));
            });
        });
        ctx.add(0, d);
    });
}

Var pow(Var x, Var e) {
    detail::require_same_dtype(x.value(), e.value(), "pow");
    Tensor out = dispatch_float(x.dtype(), "pow", [&](auto tag) {
        using T = decltype(tag);
        return map2<T, T>(x.value(), e.value(), "pow", [](T v, T p) { return std::pow(v, p); });
    });
    Saved sx(x.value()), se(e.value()), sout(out);
    return tape_of(x).record("pow", out, {x, e}, [sx, se, sout](BackwardCtx& ctx) {
        // out = x^e;  d/dx = e x^(e-1);  d/de = out log x
        dispatch_float(ctx.grad_out().dtype(), "pow", [&](auto tag) {
            using T = decltype(tag);
            const Tensor& xv = sx.get("pow");
            const Tensor& ev = se.get("pow");
            if (ctx.needs(0)) {
                Tensor t = map2<T, T>(xv, ev, "pow", [](T v, T p) { return p == 0 ? T(0) : p * std::pow(v, p - 1); });
                ctx.add(0, kern::mul(ctx.grad_out(), t));
            }
            if (ctx.needs(1)) {
                Tensor t = map2<T, T>(sout.get("pow"), xv, "pow", [](T o, T v) { return o == 0 ? T(0) : o * std::log(v); });
                ctx.add(1, kern::mul(ctx.grad_out(), t));
            }
        });
    });
}

// ---- maximum / minimum / clamp --------------------------------------------------------------
namespace {

// Whether the output is a: on ties it is, and a NaN on either side is the output (Note [NaN
// propagates]); the gradient goes where the output came from.
template <bool kMax, class T> bool picks_a(T x, T y) { return (kMax ? x >= y : x <= y) || x != x; }

template <bool kMax> Var extremum(Var a, Var b, const char* op) {
    detail::require_same_dtype(a.value(), b.value(), op);
    Tensor out = dispatch_all(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        return map2<T, T>(a.value(), b.value(), op, [](T x, T y) { return picks_a<kMax>(x, y) ? x : y; });
    });
    Saved sa(a.value()), sb(b.value());
    return tape_of(a).record(op, std::move(out), {a, b}, [sa, sb, op](BackwardCtx& ctx) {
        // out = a where a (>= | <=) b or a is NaN, else b
        Tensor pick_a = dispatch_all(sa.get(op).dtype(), [&](auto tag) {
            using T = decltype(tag);
            return map2<std::uint8_t, T>(sa.get(op), sb.get(op), op, [](T x, T y) -> std::uint8_t { return picks_a<kMax>(x, y); });
        });
        Tensor zero = Tensor::scalar(0.0, ctx.grad_out().dtype());
        dispatch_all(ctx.grad_out().dtype(), [&](auto tag) {
            using T = decltype(tag);
            auto sel = [](std::uint8_t m, T g, T z) { return m ? g : z; };
            if (ctx.needs(0)) ctx.add(0, map3<T, std::uint8_t, T, T>(pick_a, ctx.grad_out(), zero, op, sel));
            if (ctx.needs(1)) ctx.add(1, map3<T, std::uint8_t, T, T>(pick_a, zero, ctx.grad_out(), op, sel));
        });
    });
}

}  // namespace

Var maximum(Var a, Var b) { return extremum<true>(a, b, "maximum"); }
Var minimum(Var a, Var b) { return extremum<false>(a, b, "minimum"); }

Var clamp(Var x, std::optional<double> low, std::optional<double> high) {
    if (low && high && *low > *high) throw ShapeError("clamp", fmt::format("low {} is above high {}", *low, *high));
    double lo = low.value_or(-INFINITY), hi = high.value_or(INFINITY);
    Tensor out = dispatch_float(x.dtype(), "clamp", [&](auto tag) {
        using T = decltype(tag);
        return map1<T, T>(x.value(), [lo, hi](T v) { return static_cast<T>(v < lo ? lo : (v > hi ? hi : v)); });
    });
    Saved sx(x.value());
    return tape_of(x).record("clamp", std::move(out), {x}, [sx, lo, hi](BackwardCtx& ctx) {
        // out = clamp(x, lo, hi);  gradient passes where lo <= x <= hi
        dispatch_float(ctx.grad_out().dtype(), "clamp", [&](auto tag) {
            using T = decltype(tag);
            ctx.add(0, map2<T, T>(ctx.grad_out(), sx.get("clamp"), "clamp",
                                  [lo, hi](T g, T v) { return v >= lo && v <= hi ? g : T(0); }));
        });
    });
}

// ---- where ----------------------------------------------------------------------------------
Var where(Var mask, Var a, Var b) {
    if (mask.dtype() != DType::u8) {
        throw ShapeError("where", fmt::format("mask must be u8 (bool), got {} {}", dtype_name(mask.dtype()), mask.shape().str()));
    }
    detail::require_same_dtype(a.value(), b.value(), "where");
    Tensor out = dispatch_all(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        return map3<T, std::uint8_t, T, T>(mask.value(), a.value(), b.value(), "where",
                                           [](std::uint8_t m, T x, T y) { return m ? x : y; });
    });
    Saved smask(mask.value());
    return tape_of(a).record("where", std::move(out), {mask, a, b}, [smask](BackwardCtx& ctx) {
        // out = mask ? a : b
        Tensor zero = Tensor::scalar(0.0, ctx.grad_out().dtype());
        dispatch_all(ctx.grad_out().dtype(), [&](auto tag) {
            using T = decltype(tag);
            auto sel = [](std::uint8_t m, T x, T y) { return m ? x : y; };
            const Tensor& m = smask.get("where");
            if (ctx.needs(1)) ctx.add(1, map3<T, std::uint8_t, T, T>(m, ctx.grad_out(), zero, "where", sel));
            if (ctx.needs(2)) ctx.add(2, map3<T, std::uint8_t, T, T>(m, zero, ctx.grad_out(), "where", sel));
        });
    });
}

// ---- comparisons (no gradient) --------------------------------------------------------------
namespace {

template <class Cmp> Var compare(Var a, Var b, const char* op, Cmp cmp) {
    detail::require_same_dtype(a.value(), b.value(), op);
    Tensor out = dispatch_all(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        return map2<std::uint8_t, T>(a.value(), b.value(), op, [&](T x, T y) -> std::uint8_t { return cmp(x, y); });
    });
    return tape_of(a).record_no_grad(op, std::move(out), {a, b});
}

}  // namespace

Var eq(Var a, Var b) { return compare(a, b, "eq", [](auto x, auto y) { return x == y; }); }
Var ne(Var a, Var b) { return compare(a, b, "ne", [](auto x, auto y) { return x != y; }); }
Var lt(Var a, Var b) { return compare(a, b, "lt", [](auto x, auto y) { return x < y; }); }
Var le(Var a, Var b) { return compare(a, b, "le", [](auto x, auto y) { return x <= y; }); }
Var gt(Var a, Var b) { return compare(a, b, "gt", [](auto x, auto y) { return x > y; }); }
Var ge(Var a, Var b) { return compare(a, b, "ge", [](auto x, auto y) { return x >= y; }); }

Var logical_not(Var mask) {
    if (mask.dtype() != DType::u8) throw ShapeError("logical_not", fmt::format("expected a u8 mask, got {}", dtype_name(mask.dtype())));
    Tensor out = map1<std::uint8_t, std::uint8_t>(mask.value(), [](std::uint8_t m) -> std::uint8_t { return !m; });
    return tape_of(mask).record_no_grad("logical_not", std::move(out), {mask});
}

namespace {

// a, b u8 masks, broadcasting -> u8 mask
template <class F> Var logical(Var a, Var b, const char* op, F f) {
    if (a.dtype() != DType::u8 || b.dtype() != DType::u8) {
        throw ShapeError(op, fmt::format("expected u8 masks, got {} and {}", dtype_name(a.dtype()), dtype_name(b.dtype())));
    }
    Tensor out = map2<std::uint8_t, std::uint8_t>(a.value(), b.value(), op, f);
    return tape_of(a).record_no_grad(op, std::move(out), {a, b});
}

}  // namespace

Var logical_and(Var a, Var b) {
    return logical(a, b, "logical_and", [](std::uint8_t x, std::uint8_t y) -> std::uint8_t { return x && y; });
}
Var logical_or(Var a, Var b) {
    return logical(a, b, "logical_or", [](std::uint8_t x, std::uint8_t y) -> std::uint8_t { return x || y; });
}

Var detach(Var x) { return tape_of(x).record_no_grad("detach", x.value(), {x}); }

namespace {

// A float that has no value of an integer dtype (NaN, an infinity, out of range) is an error,
// not the undefined behaviour of a C++ conversion.
void check_integer_cast(const Tensor& x, DType dtype) {
    if (!is_floating(x.dtype()) || is_floating(dtype)) return;
    // the half-open range of values that truncate into the dtype
    const double lo = dtype == DType::u8 ? -1.0 : -9223372036854775808.0;   // -2^63 itself fits
    const double hi = dtype == DType::u8 ? 256.0 : 9223372036854775808.0;   // 2^63 does not
    std::vector<double> values = x.to_doubles();
    for (std::size_t i = 0; i < values.size(); ++i) {
        double v = values[i];
        bool fits = dtype == DType::u8 ? (v > lo && v < hi) : (v >= lo && v < hi);
        if (!fits) {
            throw ShapeError("cast", fmt::format("element {} is {}, which has no {} value", i, v, dtype_name(dtype)));
        }
    }
}

}  // namespace

Var cast(Var x, DType dtype) {
    check_integer_cast(x.value(), dtype);
    Tensor out = x.value().to(dtype);
    if (!is_floating(dtype) || !is_floating(x.dtype())) return tape_of(x).record_no_grad("cast", std::move(out), {x});
    DType from = x.dtype();
    return tape_of(x).record("cast", std::move(out), {x}, [from](BackwardCtx& ctx) { ctx.add(0, ctx.grad_out().to(from)); });
}

// ---- registry -------------------------------------------------------------------------------
void register_elementwise(Registry& r) {
    const std::vector<ArgSpec> ab = {arg::tensor("a"), arg::tensor("b")}, xs = {arg::tensor("x"), arg::number("s")};
    r.def("add", ab, "a + b, broadcasting", static_cast<Var (*)(Var, Var)>(&add));
    r.def("sub", ab, "a - b, broadcasting", &sub);
    r.def("mul", ab, "a * b, broadcasting", static_cast<Var (*)(Var, Var)>(&mul));
    r.def("div", ab, "a / b, broadcasting", &div);
    r.def("maximum", ab, "elementwise max; ties send the gradient to a", &maximum);
    r.def("minimum", ab, "elementwise min; ties send the gradient to a", &minimum);
    r.def("eq", ab, "a == b as a u8 mask", &eq, Gradient::none);
    r.def("ne", ab, "a != b as a u8 mask", &ne, Gradient::none);
    r.def("lt", ab, "a < b as a u8 mask", &lt, Gradient::none);
    r.def("le", ab, "a <= b as a u8 mask", &le, Gradient::none);
    r.def("gt", ab, "a > b as a u8 mask", &gt, Gradient::none);
    r.def("ge", ab, "a >= b as a u8 mask", &ge, Gradient::none);
    r.def("logical_and", ab, "a and b for u8 masks", &logical_and, Gradient::none);
    r.def("logical_or", ab, "a or b for u8 masks", &logical_or, Gradient::none);
    r.def("logical_not", {arg::tensor("mask")}, "not mask for a u8 mask", &logical_not, Gradient::none);
    r.def("neg", {arg::tensor("x")}, "-x", &neg);
    r.def("pow", {arg::tensor("x"), arg::tensor("exponent")}, "x ^ exponent (tensor exponent)",
          static_cast<Var (*)(Var, Var)>(&pow));
    r.def("pow_scalar", {arg::tensor("x"), arg::number("exponent")}, "x ^ p for a number p",
          static_cast<Var (*)(Var, double)>(&pow));
    r.def("add_scalar", xs, "x + s for a number s", static_cast<Var (*)(Var, double)>(&add));
    r.def("mul_scalar", xs, "x * s for a number s", static_cast<Var (*)(Var, double)>(&mul));
    r.def("rsub_scalar", {arg::number("s"), arg::tensor("x")}, "s - x for a number s", &rsub);
    r.def("rdiv_scalar", {arg::number("s"), arg::tensor("x")}, "s / x for a number s", &rdiv);
    r.def("clamp", {arg::tensor("x"), arg::number("low", arg::none), arg::number("high", arg::none)},
          "clamp x to [low, high]; either bound may be omitted", &clamp);
    r.def("where", {arg::tensor("mask"), arg::tensor("a"), arg::tensor("b")}, "mask ? a : b, broadcasting; mask is u8", &where);
    r.def("detach", {arg::tensor("x")}, "x with no gradient flowing back (stop_gradient)", &detach, Gradient::none);
    r.def("cast", {arg::tensor("x"), arg::dtype()},
          "x converted to dtype f32, f64, i64 or u8 (gradient between f32 and f64); left out, the run's floating dtype "
          "(`cast(tokens != pad)` is a float mask in f32 and f64 runs alike)",
          &cast);
}

}  // namespace wengert
