// The fused dense layer: linear(x, w, b, activation) = activation(x @ w + b).
//
// Note [Fused linear]
// A dense layer is a product, a bias and an activation. As three ops (matmul, add, relu) a
// training step makes two full-size temporaries and five passes over them besides the
// products: the broadcast add, the relu, the relu's backward, and the bias gradient, a sum
// over the rows. As one op it makes none and two:
//     forward   y = x @ w (one gemm into y), then y = act(y + b) in place, row by row
//     backward  g' = g [y > 0] (relu) and db = sum over rows of g', in one pass;
//               dx = g' @ w^T and dw = x^T @ g', each one gemm (batch axes of x folded into
//               the product, and summed into dw, as matmul does).
// The sums and roundings are the unfused ops' own: y + b is rounded once after the product,
// db adds the rows in order in double (kern::sum over leading axes), so values and gradients
// equal those of relu(add(matmul(x, w), b)) exactly for finite gradients (where the relu is off,
// g' is 0 as in PyTorch's threshold_backward, where the unfused g * 0 would turn inf into NaN);
// tests/engine/ops/cases_linear.cpp checks both.
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "../kernels/gemm.hpp"
#include "../kernels/bias_activation.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::bias_activation;
using detail::for_rows;

Activation parse_activation(const std::string& name, const char* op) {
    if (name == "none") return Activation::none;
    if (name == "relu") return Activation::relu;
    throw ShapeError(op, fmt::format("unknown activation '{}'; expected none or relu", name));
}

// x (..., d_in), w (d_in, d_out), b (d_out) -> (..., d_out)  (Note [Fused linear])
Var linear(Var x, Var w, std::optional<Var> b, Activation activation) {
    const char* op = "linear";
    std::string shapes = fmt::format("x {}, w {}{}", x.shape().str(), w.shape().str(), b ? ", b " + b->shape().str() : "");
    if (!is_floating(x.dtype()) || w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) {
        throw ShapeError(op, fmt::format("expected f32 or f64 operands of one dtype, got x {} {}, w {} {}{}", dtype_name(x.dtype()),
                                         x.shape().str(), dtype_name(w.dtype()), w.shape().str(),
                                         b ? fmt::format(", b {} {}", dtype_name(b->dtype()), b->shape().str()) : ""));
    }
    if (x.ndim() == 0 || w.ndim() != 2) throw ShapeError(op, "x needs at least one axis and w exactly two: " + shapes);
    if (x.shape().back() != w.shape()[0]) {
        throw ShapeError(op, fmt::format("x's last axis and w's first differ: {} ({} vs {})", shapes, x.shape().back(), w.shape()[0]));
    }
    const std::int64_t d_out = w.shape()[1];
    if (b && !(b->shape() == Shape{d_out})) throw ShapeError(op, fmt::format("b must have shape [{}]: {}", d_out, shapes));

    const bool x_vector = x.ndim() == 1;
    Tensor lhs = x_vector ? x.value().unsqueeze(0) : x.value();
    Shape out_shape = lhs.shape();
    out_shape[out_shape.size() - 1] = d_out;
    Tensor out = Tensor::empty(out_shape, x.dtype());
    detail::batched_gemm(lhs, w.value(), out);
    const std::int64_t n_rows = d_out == 0 ? 0 : out.numel() / d_out;
    if (b || activation != Activation::none) {
        Tensor bias = b ? b->value().contiguous() : Tensor();
        dispatch_float(out.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            T* y = out.data<T>();
            const T* pb = b ? bias.data<T>() : nullptr;
            for_rows(n_rows, d_out, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t r = lo; r < hi; ++r) bias_activation(y + r * d_out, pb, d_out, activation);
            });
        });
    }
    Tensor result = x_vector ? out.squeeze(0) : out;

    // Only what each gradient reads: x for dw, w for dx, y for the relu's mask.
    Saved saved_x = w.requires_grad() ? Saved(lhs) : Saved();
    Saved saved_w = x.requires_grad() ? Saved(w.value()) : Saved();
    Saved saved_y = activation == Activation::relu ? Saved(out) : Saved();
    std::vector<Var> inputs{x, w};
    if (b) inputs.push_back(*b);
    const bool has_b = b.has_value();
    Shape lhs_shape = lhs.shape(), w_shape = w.shape();
    return x.tape()->record(op, std::move(result), inputs,
                            [saved_x, saved_w, saved_y, lhs_shape, w_shape, out_shape, n_rows, d_out, activation, x_vector,
                             has_b, op](BackwardCtx& ctx) {
        // y = act(x @ w + b);  g' = g [y > 0] (relu) or g;  db = sum over rows of g';
        // dx = g' @ w^T;  dw = x^T @ g'
        Tensor g = x_vector ? ctx.grad_out().unsqueeze(0) : ctx.grad_out();
        const bool want_db = has_b && ctx.needs(2);
        if (activation == Activation::relu || want_db) {
            Tensor g_in = g.contiguous();
            Tensor masked = activation == Activation::relu ? Tensor::empty(out_shape, g.dtype()) : g_in;
            Tensor db = want_db ? Tensor::empty(Shape{d_out}, g.dtype()) : Tensor();
            dispatch_float(g.dtype(), op, [&](auto tag) {
                using T = decltype(tag);
                detail::bias_activation_backward(g_in.data<T>(), activation == Activation::relu ? saved_y.get(op).data<T>() : nullptr,
                                                 masked.data<T>(), want_db ? db.data<T>() : nullptr, n_rows, d_out);
            });
            g = masked;
            if (want_db) ctx.add(2, db);
        }
        if (ctx.needs(0)) {
            Tensor dx = Tensor::empty(lhs_shape, g.dtype());
            detail::batched_gemm(g, saved_w.get(op).transpose(0, 1), dx);
            ctx.add(0, x_vector ? dx.squeeze(0) : dx);
        }
        if (ctx.needs(1)) {
            Tensor dw = Tensor::empty(w_shape, g.dtype());
            detail::batched_gemm(saved_x.get(op).transpose(-1, -2), g, dw);
            ctx.add(1, dw);
        }
    });
}

void register_linear(Registry& r) {
    r.def("linear", {arg::tensor("x"), arg::tensor("w"), arg::tensor("b", arg::none), arg::string("activation", "none")},
          "activation(x @ w + b) as one op: x (..., d_in), w (d_in, d_out), b (d_out); activation `none` or `relu`. `dense` "
          "uses it; equal to the composition",
          &linear);
}

}  // namespace wengert
