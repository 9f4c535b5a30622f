// softmax and log_softmax over any axis, one row at a time (Note [Rows along an axis]).
//
// Note [Stable softmax]
// softmax(x) = exp(x - logsumexp(x)) and log_softmax(x) = x - logsumexp(x), with
// logsumexp(x) = m + log(sum(exp(x - m))) and m the row's max (0 when the max is infinite):
// every exp sees an argument <= 0, so no logit, however large, overflows, and the largest
// weight of a row is exactly exp(0) = 1 before normalisation. log_softmax is computed as
// (x - m) - log(sum(...)), never through m + log(...), which would round to m's precision
// (about 1e-3 for logits of 1e4 in f32). Sums accumulate in f64.
// Backward uses the closed forms below; no Jacobian is ever built.
#include <cmath>

#include "../kernels/rows.hpp"
#include "../kernels/softmax.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::for_each_row;

namespace {

// The row's shift m: its max, or 0 when that is infinite or NaN (Note [NaN propagates]: a NaN
// entry makes the whole row NaN, as in PyTorch).
template <class T> T row_shift(const T* x, std::int64_t step, std::int64_t n) {
    T m = -INFINITY;
    for (std::int64_t j = 0; j < n; ++j) m = detail::max_keeping_nan(m, x[j * step]);
    return std::isfinite(m) ? m : T(0);
}

}  // namespace

// x (..., n, ...) -> (..., n, ...), normalised along `axis`
Tensor detail::softmax_forward(const Tensor& x, int axis, bool log_form) {
    return dispatch_float(x.dtype(), log_form ? "log_softmax" : "softmax", [&](auto tag) {
        using T = decltype(tag);
        Tensor out = Tensor::empty(x.shape(), x.dtype());
        const T* px = x.data<T>();
        T* po = out.data<T>();
        for_each_row<2>(x.shape(), axis, {&x.strides(), &out.strides()}, [&](auto off, auto step, std::int64_t n) {
            const T* xr = px + off[0];
            T* yr = po + off[1];
            T m = row_shift(xr, step[0], n);
            double total = 0;
            if (log_form) {
                for (std::int64_t j = 0; j < n; ++j) total += std::exp(xr[j * step[0]] - m);
                T log_total = static_cast<T>(std::log(total));
                for (std::int64_t j = 0; j < n; ++j) yr[j * step[1]] = (xr[j * step[0]] - m) - log_total;
            } else {
                for (std::int64_t j = 0; j < n; ++j) {
                    T e = std::exp(xr[j * step[0]] - m);
                    yr[j * step[1]] = e;
                    total += e;
                }
                T inv = static_cast<T>(1.0 / total);
                for (std::int64_t j = 0; j < n; ++j) yr[j * step[1]] *= inv;
            }
        });
        return out;
    });
}

namespace {

// y (the forward's output) and grad_out (..., n, ...) -> dx
Tensor softmax_backward(const Tensor& y, const Tensor& grad_out, int axis, bool log_form) {
    return dispatch_float(y.dtype(), log_form ? "log_softmax" : "softmax", [&](auto tag) {
        using T = decltype(tag);
        Tensor dx = Tensor::empty(y.shape(), y.dtype());
        const T* py = y.data<T>();
        const T* pg = grad_out.data<T>();
        T* pd = dx.data<T>();
        for_each_row<3>(y.shape(), axis, {&y.strides(), &grad_out.strides(), &dx.strides()},
                        [&](auto off, auto step, std::int64_t n) {
                            const T* yr = py + off[0];
                            const T* gr = pg + off[1];
                            T* dr = pd + off[2];
                            double acc = 0;
                            if (log_form) {
                                // y = x - logsumexp(x);  dx = g - exp(y) sum(g)
                                for (std::int64_t j = 0; j < n; ++j) acc += gr[j * step[1]];
                                T total = static_cast<T>(acc);
                                for (std::int64_t j = 0; j < n; ++j) {
                                    dr[j * step[2]] = gr[j * step[1]] - std::exp(yr[j * step[0]]) * total;
                                }
                            } else {
                                // y = exp(x - logsumexp(x));  dx = y (g - sum(g y))
                                for (std::int64_t j = 0; j < n; ++j) {
                                    acc += static_cast<double>(gr[j * step[1]]) * static_cast<double>(yr[j * step[0]]);
                                }
                                T dot = static_cast<T>(acc);
                                for (std::int64_t j = 0; j < n; ++j) {
                                    dr[j * step[2]] = yr[j * step[0]] * (gr[j * step[1]] - dot);
                                }
                            }
                        });
        return dx;
    });
}

Var softmax_op(Var x, int axis_in, bool log_form) {
    const char* op = log_form ? "log_softmax" : "softmax";
    int axis = normalize_axis(axis_in, x.ndim(), op);
    Tensor out = detail::softmax_forward(x.value(), axis, log_form);
    Saved sout(out);
    return x.tape()->record(op, std::move(out), {x}, [sout, axis, log_form, op](BackwardCtx& ctx) {
        ctx.add(0, softmax_backward(sout.get(op), ctx.grad_out(), axis, log_form));
    });
}

}  // namespace

Var softmax(Var x, int axis) { return softmax_op(x, axis, false); }
Var log_softmax(Var x, int axis) { return softmax_op(x, axis, true); }

void register_softmax(Registry& r) {
    const std::vector<ArgSpec> along = {arg::tensor("x"), arg::integer("axis", -1)};
    r.def("softmax", along, "exp(x - logsumexp(x)) along axis, stable for any logits", &softmax);
    r.def("log_softmax", along, "x - logsumexp(x) along axis", &log_softmax);
}

}  // namespace wengert
