// From a distribution to a (near) one-hot vector, keeping a gradient: sharpen,
// straight_through and gumbel_softmax (SPEC.md section 4).
//
// Note [Near one-hot]
// argmax has no gradient: it is piecewise constant with an integer output, so a model that
// picks a category and then uses it (looks up its embedding, say) learns nothing upstream of
// the pick. Three ways keep a gradient:
// - sharpen(p, n) = p^n / sum p^n: still a distribution, closer to one-hot as n grows. The
//   naive power underflows (0.5^1000 is 0 in f32, so the row is 0 / 0); it is computed as
//   softmax(n log p), which never underflows to 0 / 0 (Note [Stable softmax]). From logits z,
//   softmax(z) sharpened is softmax(n z): no op needed.
// - straight_through(soft): the forward value is exactly one_hot(argmax(soft)), the backward
//   passes the gradient to soft unchanged, as if the forward had been the identity.
// - gumbel_softmax(logits, tau, hard): a differentiable sample, softmax((logits + g) / tau)
//   with g = -log(-log U) Gumbel noise; hard = true gives exactly one-hot values with the soft
//   sample's gradient (straight_through of the soft sample; PyTorch writes it
//   y_hard - stop(y_soft) + y_soft, which rounds to values that are not exactly 0 and 1).
// A one-hot (or near one-hot) s then looks an embedding up as s @ E: the row of E at the
// argmax, with a gradient to every row weighted by s, and through s to what produced it.
#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <limits>

#include "../kernels/rows.hpp"
#include "../kernels/softmax.hpp"
#include "families.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::for_each_row;

namespace {

void require_floating(const Var& x, const char* op) {
    if (!is_floating(x.dtype()) || x.ndim() == 0) {
        throw ShapeError(op, fmt::format("expected f32 or f64 with at least one axis, got {} {}", dtype_name(x.dtype()),
                                         x.shape().str()));
    }
}

// p (..., n, ...) -> s, p^n / sum p^n along axis, as softmax(n log p)
Tensor sharpen_forward(const Tensor& p, double power, int axis) {
    Tensor u = dispatch_float(p.dtype(), "sharpen", [&](auto tag) {
        using T = decltype(tag);
        Tensor pc = p.contiguous(), out = Tensor::empty(p.shape(), p.dtype());
        const T* pp = pc.data<T>();
        T* pu = out.data<T>();
        for (std::int64_t i = 0; i < out.numel(); ++i) pu[i] = static_cast<T>(power * std::log(pp[i]));   // -inf at 0
        return out;
    });
    return detail::softmax_forward(u, axis, false);
}

// p, s (the forward's output) and grad_out -> dp
Tensor sharpen_backward(const Tensor& p, const Tensor& s, const Tensor& grad_out, double power, int axis) {
    return dispatch_float(p.dtype(), "sharpen", [&](auto tag) {
        using T = decltype(tag);
        Tensor dp = Tensor::empty(p.shape(), p.dtype());
        const T* pp = p.data<T>();
        const T* ps = s.data<T>();
        const T* pg = grad_out.data<T>();
        T* pd = dp.data<T>();
        for_each_row<4>(p.shape(), axis, {&p.strides(), &s.strides(), &grad_out.strides(), &dp.strides()},
                        [&](auto off, auto step, std::int64_t n) {
                            const T* pr = pp + off[0];
                            const T* sr = ps + off[1];
                            const T* gr = pg + off[2];
                            T* dr = pd + off[3];
                            double dot = 0, total_p = 0;
                            for (std::int64_t j = 0; j < n; ++j) {
                                dot += static_cast<double>(gr[j * step[2]]) * static_cast<double>(sr[j * step[1]]);
                                total_p += pr[j * step[0]];
                            }
                            for (std::int64_t j = 0; j < n; ++j) {
                                // s = softmax(n log p);  dp = n (s / p) (g - sum(g s)), where s / p
                                // = p^(n-1) / sum p^n is 0 at p = 0 for n > 1 and 1 / sum p for n = 1
                                const T pj = pr[j * step[0]];
                                const double ratio = pj > T(0) ? static_cast<double>(sr[j * step[1]]) / pj
                                                     : power == 1.0 ? 1.0 / total_p
                                                                    : 0.0;
                                dr[j * step[3]] = static_cast<T>(power * ratio * (gr[j * step[2]] - dot));
                            }
                        });
        return dp;
    });
}

// Every row of p along axis must be a set of weights: no negative entry, one positive. A NaN
// passes, and makes its row NaN (Note [NaN propagates]).
void require_weights(const Tensor& p, int axis) {
    std::atomic<bool> bad_entry = false, empty_row = false;
    dispatch_float(p.dtype(), "sharpen", [&](auto tag) {
        using T = decltype(tag);
        const T* pp = p.data<T>();
        for_each_row<1>(p.shape(), axis, {&p.strides()}, [&](auto off, auto step, std::int64_t n) {
            bool positive = false;
            for (std::int64_t j = 0; j < n; ++j) {
                const T v = pp[off[0] + j * step[0]];
                if (v < T(0)) bad_entry = true;
                positive = positive || !(v <= T(0));
            }
            if (!positive) empty_row = true;
        });
        return 0;
    });
    if (bad_entry) throw ShapeError("sharpen", fmt::format("p {} has a negative entry: it must hold probabilities", p.shape().str()));
    if (empty_row && p.shape()[axis] > 0) {
        throw ShapeError("sharpen", fmt::format("p {} has a row along axis {} with no positive entry", p.shape().str(), axis));
    }
}

// x (..., n, ...) -> one_hot(argmax(x along axis)) in x's dtype: the first largest entry of
// each row is 1, every other 0. As argmax, a NaN is the largest; NaN entries stay NaN, as in
// PyTorch's y_hard - stop(y) + y (Note [NaN propagates]).
Tensor hard_one_hot(const Tensor& x, int axis) {
    return dispatch_float(x.dtype(), "straight_through", [&](auto tag) {
        using T = decltype(tag);
        Tensor out = Tensor::empty(x.shape(), x.dtype());
        const T* px = x.data<T>();
        T* po = out.data<T>();
        for_each_row<2>(x.shape(), axis, {&x.strides(), &out.strides()}, [&](auto off, auto step, std::int64_t n) {
            const T* xr = px + off[0];
            T* yr = po + off[1];
            std::int64_t best = 0;
            for (std::int64_t j = 1; j < n && !std::isnan(xr[best * step[0]]); ++j) {
                const T v = xr[j * step[0]];
                if (v > xr[best * step[0]] || std::isnan(v)) best = j;
            }
            for (std::int64_t j = 0; j < n; ++j) {
                const T v = xr[j * step[0]];
                yr[j * step[1]] = std::isnan(v) ? v : j == best ? T(1) : T(0);
            }
        });
        return out;
    });
}

}  // namespace

// p (..., n, ...) -> (..., n, ...): p^n / sum p^n along axis (Note [Near one-hot])
Var sharpen(Var p, double power, int axis_in) {
    const char* op = "sharpen";
    require_floating(p, op);
    if (!(power >= 1.0) || !std::isfinite(power)) {
        throw ShapeError(op, fmt::format("the power n must be a finite number >= 1, got {} (for n < 1 write softmax(n * log(p)))", power));
    }
    int axis = normalize_axis(axis_in, p.ndim(), op);
    require_weights(p.value(), axis);
    Tensor out = sharpen_forward(p.value(), power, axis);
    Saved sp(p.value()), sout(out);
    return tape_of(p).record(op, std::move(out), {p}, [sp, sout, power, axis, op](BackwardCtx& ctx) {
        ctx.add(0, sharpen_backward(sp.get(op), sout.get(op), ctx.grad_out(), power, axis));
    });
}

// x (..., n, ...) -> one_hot(argmax(x)) along axis, with x's gradient (Note [Near one-hot])
Var straight_through(Var x, int axis_in) {
    const char* op = "straight_through";
    require_floating(x, op);
    int axis = normalize_axis(axis_in, x.ndim(), op);
    return tape_of(x).record(op, hard_one_hot(x.value(), axis), {x}, [](BackwardCtx& ctx) {
        // out = one_hot(argmax(x)), differentiated as out = x:  dx = grad_out
        ctx.add(0, ctx.grad_out());
    });
}

// logits (..., n, ...) -> a sample (..., n, ...) along axis (Note [Near one-hot]); noise in
// Mode::train only, from default_generator()
Var gumbel_softmax(Var logits, double tau, bool hard, int axis_in) {
    const char* op = "gumbel_softmax";
    require_floating(logits, op);
    if (!(tau > 0.0) || !std::isfinite(tau)) throw ShapeError(op, fmt::format("tau must be a finite number > 0, got {}", tau));
    int axis = normalize_axis(axis_in, logits.ndim(), op);
    Var z = logits;
    if (current_mode() == Mode::train) {
        // g = -log(-log U), U uniform in (0, 1): 0 is moved to the dtype's least normal number
        Tensor g = Tensor::empty(logits.shape(), logits.dtype());
        default_generator().fill_uniform(g, 0.0, 1.0);
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            T* pg = g.data<T>();
            for (std::int64_t i = 0; i < g.numel(); ++i) {
                pg[i] = -std::log(-std::log(std::max(pg[i], std::numeric_limits<T>::min())));
            }
            return 0;
        });
        z = logits + tape_of(logits).input(g);
    }
    Var soft = softmax(tau == 1.0 ? z : z / tau, axis);
    return hard ? straight_through(soft, axis) : soft;
}

void register_onehot(Registry& r) {
    r.def("sharpen", {arg::tensor("p"), arg::number("n"), arg::integer("axis", -1)},
          "p^n / sum p^n along axis for weights p >= 0 and n >= 1, computed as softmax(n log p): nearer one-hot as n grows, "
          "never 0 / 0; from logits z, `softmax(n * z)` is the same ([docs/onehot.md](onehot.md))",
          &sharpen);
    r.def("straight_through", {arg::tensor("x"), arg::integer("axis", -1)},
          "exactly one_hot(argmax(x)) along axis, with the gradient of x itself (the straight-through estimator)",
          &straight_through);
    r.def("gumbel_softmax", {arg::tensor("logits"), arg::number("tau", 1.0), arg::boolean("hard", false), arg::integer("axis", -1)},
          "softmax((logits + g) / tau), g Gumbel noise drawn in train mode only (eval and predict use g = 0); `hard = true`: "
          "exactly one-hot, with the soft sample's gradient",
          &gumbel_softmax);
}

}  // namespace wengert
