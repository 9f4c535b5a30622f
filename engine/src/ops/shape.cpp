// Shape ops: reshape, permute, transpose, slice, concat, stack, expand, squeeze, unsqueeze,
// flatten. Every forward except concat and stack is a Tensor view of its input (Note [Views]
// in tensor.hpp; reshape copies only when the strides do not allow a view); every backward
// is a view of the output gradient, except slice, which scatters into zeros.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>

#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

namespace {

int checked_axis(std::int64_t axis, int rank, const Shape& shape, const char* op) {
    if (axis < -rank || axis >= rank) {
        throw ShapeError(op, fmt::format("axis {} is out of range for {} (axes -{}..{})", axis, shape.str(), rank, rank - 1));
    }
    return static_cast<int>(axis < 0 ? axis + rank : axis);
}

std::string shapes_text(std::span<const Var> xs) {
    std::vector<std::string> parts;
    for (const Var& x : xs) parts.push_back(x.shape().str());
    return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

// x (...) -> shape (same element count, one -1 inferred)
Var reshape(Var x, const Shape& shape) {
    Tensor out = x.value().reshape(shape);
    Shape in_shape = x.shape();
    return x.tape()->record("reshape", std::move(out), {x}, [in_shape](BackwardCtx& ctx) {
        // out = reshape(x, shape)
        ctx.add(0, ctx.grad_out().reshape(in_shape));
    });
}

// x (d0, d1, ...) -> (d_axes[0], d_axes[1], ...)
Var permute(Var x, std::vector<int> axes_in) {
    int rank = x.ndim();
    if (static_cast<int>(axes_in.size()) != rank) {
        throw ShapeError("permute", fmt::format("({}) has {} axes for {} of rank {}", fmt::join(axes_in, ", "), axes_in.size(),
                                                x.shape().str(), rank));
    }
    std::vector<int> axes(axes_in.size()), inverse(axes_in.size(), -1);
    for (int i = 0; i < rank; ++i) {
        axes[i] = checked_axis(axes_in[i], rank, x.shape(), "permute");
        if (inverse[axes[i]] >= 0) {
            throw ShapeError("permute", fmt::format("axis {} appears twice in ({}) for {}", axes[i], fmt::join(axes_in, ", "),
                                                    x.shape().str()));
        }
        inverse[axes[i]] = i;
    }
    Tensor out = x.value().permute(std::span<const int>(axes));
    return x.tape()->record("permute", std::move(out), {x}, [inverse](BackwardCtx& ctx) {
        // out = permute(x, axes)
        ctx.add(0, ctx.grad_out().permute(std::span<const int>(inverse)));
    });
}

// x (..., a, ..., b, ...) -> (..., b, ..., a, ...)
Var transpose(Var x, int a_in, int b_in) {
    int a = checked_axis(a_in, x.ndim(), x.shape(), "transpose");
    int b = checked_axis(b_in, x.ndim(), x.shape(), "transpose");
    Tensor out = x.value().transpose(a, b);
    return x.tape()->record("transpose", std::move(out), {x}, [a, b](BackwardCtx& ctx) {
        // out = transpose(x, a, b)
        ctx.add(0, ctx.grad_out().transpose(a, b));
    });
}

// x (..., n, ...) -> (..., ceil((stop - start) / step), ...); start and stop clamped as Python's
Var slice(Var x, int axis_in, std::int64_t start, std::int64_t stop, std::int64_t step) {
    int axis = checked_axis(axis_in, x.ndim(), x.shape(), "slice");
    if (step <= 0) throw ShapeError("slice", fmt::format("step must be positive, got {} (x {})", step, x.shape().str()));
    Tensor out = x.value().slice(axis, start, stop, step);
    Shape in_shape = x.shape();
    return x.tape()->record("slice", std::move(out), {x}, [in_shape, axis, start, stop, step](BackwardCtx& ctx) {
        // out = x[start:stop:step] along axis;  dx = zeros with grad_out scattered back
        Tensor dx = Tensor::zeros(in_shape, ctx.grad_out().dtype());
        dx.slice(axis, start, stop, step).copy_from(ctx.grad_out());
        ctx.add(0, dx);
    });
}

// xs[k] (..., n_k, ...) -> (..., sum n_k, ...)
Var concat(std::span<const Var> xs, int axis_in) {
    if (xs.empty()) throw ShapeError("concat", "no tensors to concatenate");
    const Var& first = xs[0];
    int axis = checked_axis(axis_in, first.ndim(), first.shape(), "concat");
    Shape shape = first.shape();
    shape[axis] = 0;
    for (const Var& x : xs) {
        if (x.dtype() != first.dtype()) {
            throw ShapeError("concat", fmt::format("dtypes differ: {} {} and {} {}", dtype_name(first.dtype()),
                                                   first.shape().str(), dtype_name(x.dtype()), x.shape().str()));
        }
        bool fits = x.ndim() == first.ndim();
        for (int i = 0; fits && i < x.ndim(); ++i) fits = i == axis || x.shape()[i] == first.shape()[i];
        if (!fits) throw ShapeError("concat", fmt::format("shapes differ outside axis {}: {}", axis, shapes_text(xs)));
        shape[axis] += x.shape()[axis];
    }
    Tensor out = Tensor::empty(shape, first.dtype());
    std::vector<std::int64_t> starts;
    std::int64_t at = 0;
    for (const Var& x : xs) {
        starts.push_back(at);
        out.slice(axis, at, at + x.shape()[axis]).copy_from(x.value());
        at += x.shape()[axis];
    }
    starts.push_back(at);
    return first.tape()->record("concat", std::move(out), xs, [starts, axis](BackwardCtx& ctx) {
        // out = [x0 | x1 | ...] along axis;  dx_k = grad_out's k-th block
        for (std::size_t k = 0; k + 1 < starts.size(); ++k) {
            int input = static_cast<int>(k);
            if (ctx.needs(input)) ctx.add(input, ctx.grad_out().slice(axis, starts[k], starts[k + 1]));
        }
    });
}

// xs[k] (...) -> (..., len(xs), ...) with the new axis at `axis`
Var stack(std::span<const Var> xs, int axis_in) {
    if (xs.empty()) throw ShapeError("stack", "no tensors to stack");
    const Var& first = xs[0];
    int axis = checked_axis(axis_in, first.ndim() + 1, first.shape(), "stack");
    for (const Var& x : xs) {
        if (x.dtype() != first.dtype()) {
            throw ShapeError("stack", fmt::format("dtypes differ: {} {} and {} {}", dtype_name(first.dtype()),
                                                  first.shape().str(), dtype_name(x.dtype()), x.shape().str()));
        }
        if (!(x.shape() == first.shape())) throw ShapeError("stack", fmt::format("shapes differ: {}", shapes_text(xs)));
    }
    Shape shape = first.shape();
    shape.insert(axis, static_cast<std::int64_t>(xs.size()));
    Tensor out = Tensor::empty(shape, first.dtype());
    for (std::size_t k = 0; k < xs.size(); ++k) out.select(axis, static_cast<std::int64_t>(k)).copy_from(xs[k].value());
    std::int64_t count = static_cast<std::int64_t>(xs.size());
    return first.tape()->record("stack", std::move(out), xs, [count, axis](BackwardCtx& ctx) {
        // out[..., k, ...] = x_k;  dx_k = grad_out[..., k, ...]
        for (std::int64_t k = 0; k < count; ++k) {
            int input = static_cast<int>(k);
            if (ctx.needs(input)) ctx.add(input, ctx.grad_out().select(axis, k));
        }
    });
}

// x (...) -> shape, broadcasting as NumPy (stride-0 view)
Var expand(Var x, const Shape& shape) {
    Tensor out = x.value().expand(shape);
    return x.tape()->record("expand", std::move(out), {x}, [](BackwardCtx& ctx) {
        // out = broadcast(x);  dx = grad_out summed back to x's shape (by BackwardCtx::add)
        ctx.add(0, ctx.grad_out());
    });
}

// x (..., 1, ...) -> (..., ...)
Var squeeze(Var x, int axis_in) {
    int axis = checked_axis(axis_in, x.ndim(), x.shape(), "squeeze");
    Tensor out = x.value().squeeze(axis);
    return x.tape()->record("squeeze", std::move(out), {x}, [axis](BackwardCtx& ctx) {
        // out = squeeze(x, axis)
        ctx.add(0, ctx.grad_out().unsqueeze(axis));
    });
}

// x (..., ...) -> (..., 1, ...)
Var unsqueeze(Var x, int axis_in) {
    int axis = checked_axis(axis_in, x.ndim() + 1, x.shape(), "unsqueeze");
    Tensor out = x.value().unsqueeze(axis);
    return x.tape()->record("unsqueeze", std::move(out), {x}, [axis](BackwardCtx& ctx) {
        // out = unsqueeze(x, axis)
        ctx.add(0, ctx.grad_out().squeeze(axis));
    });
}

// x (d0, ..., d_start, ..., d_last) -> (d0, ..., d_start * ... * d_last)
Var flatten(Var x, int start_axis_in) {
    int start_axis = checked_axis(start_axis_in, x.ndim(), x.shape(), "flatten");
    Shape shape;
    for (int i = 0; i < start_axis; ++i) shape.push_back(x.shape()[i]);
    std::int64_t rest = 1;
    for (int i = start_axis; i < x.ndim(); ++i) rest *= x.shape()[i];
    shape.push_back(rest);
    Tensor out = x.value().reshape(shape);
    Shape in_shape = x.shape();
    return x.tape()->record("flatten", std::move(out), {x}, [in_shape](BackwardCtx& ctx) {
        // out = reshape(x, (d0, ..., prod d_start..))
        ctx.add(0, ctx.grad_out().reshape(in_shape));
    });
}

void register_shape(Registry& r) {
    r.def("reshape", {arg::tensor("x"), arg::ints("shape")}, "same elements in a new shape; one -1 is inferred", &reshape);
    r.def("permute", {arg::tensor("x"), arg::ints("axes")}, "reorders axes: out axis i is x axis axes[i]", &permute);
    r.def("transpose", {arg::tensor("x"), arg::integer("a", -2), arg::integer("b", -1)}, "swaps axes a and b", &transpose);
    r.def("slice",
          {arg::tensor("x"), arg::integer("axis"), arg::integer("start", 0), arg::integer("stop", arg::none),
           arg::integer("step", 1)},
          "x[start:stop:step] along axis (Python's clamping; stop omitted: to the end)",
          [](Var x, int axis, std::int64_t start, std::optional<std::int64_t> stop, std::int64_t step) {
              return slice(x, axis, start, stop.value_or(std::numeric_limits<std::int64_t>::max()), step);
          });
    r.def("concat", {arg::tensors("xs"), arg::integer("axis", 0)}, "joins tensors along an existing axis", &concat);
    r.def("stack", {arg::tensors("xs"), arg::integer("axis", 0)}, "joins equal-shaped tensors along a new axis", &stack);
    r.def("expand", {arg::tensor("x"), arg::ints("shape")}, "broadcasts x to shape without copying", &expand);
    r.def("squeeze", {arg::tensor("x"), arg::integer("axis")}, "removes an axis of extent 1", &squeeze);
    r.def("unsqueeze", {arg::tensor("x"), arg::integer("axis")}, "inserts an axis of extent 1", &unsqueeze);
    r.def("flatten", {arg::tensor("x"), arg::integer("start_axis", 1)}, "merges axes start_axis.. into one: (B, ...) -> (B, prod ...)",
          &flatten);
}

}  // namespace wengert
