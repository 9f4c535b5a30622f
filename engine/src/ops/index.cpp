// Indexing: one_hot, argmax (no gradient), gather, index_select, embedding (scatter-add
// backward). Index tensors are i64 and never receive a gradient; every index is checked
// before any data is read, and the first bad one (in row-major order) is named.
//
// Note [Scatter-add order]
// Repeated indices send several gradients to one element, so backward accumulates. gather
// runs rows in parallel: distinct rows of its index write distinct rows of dx. index_select
// walks its index in order, each step adding one whole slice. Either way every element's sum
// is taken in a fixed order, whatever the thread count.
#include <fmt/format.h>

#include <cmath>
#include <type_traits>

#include "../kernels/rows.hpp"
#include "families.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_all;
using detail::dispatch_float;
using detail::for_each_row;

namespace {

void require_i64(const Var& index, const char* what, const char* op) {
    if (index.dtype() != DType::i64) {
        throw ShapeError(op, fmt::format("{} must be i64, got {} {}", what, dtype_name(index.dtype()), index.shape().str()));
    }
}

// The first value of `index` outside [0, limit), if any, with its flat position.
struct BadIndex {
    std::int64_t value, position;
};
std::optional<BadIndex> first_out_of_range(const Tensor& index, std::int64_t limit) {
    Tensor c = index.contiguous();
    const std::int64_t* p = c.data<std::int64_t>();
    for (std::int64_t i = 0; i < c.numel(); ++i) {
        if (p[i] < 0 || p[i] >= limit) return BadIndex{p[i], i};
    }
    return std::nullopt;
}

template <class T> bool is_nan(T v) {
    if constexpr (std::is_floating_point_v<T>) return std::isnan(v);
    return false;
}

}  // namespace

// labels (...) i64 -> (..., n_classes)
Var one_hot(Var labels, std::int64_t n_classes, DType dtype) {
    require_i64(labels, "labels", "one_hot");
    if (n_classes <= 0) throw ShapeError("one_hot", fmt::format("n_classes must be positive, got {}", n_classes));
    if (auto bad = first_out_of_range(labels.value(), n_classes)) {
        throw ShapeError("one_hot", fmt::format("label {} (element {} of labels {}) is out of range for {} classes",
                                                bad->value, bad->position, labels.shape().str(), n_classes));
    }
    Shape shape = labels.shape();
    shape.push_back(n_classes);
    Tensor out = Tensor::zeros(shape, dtype);
    Tensor c = labels.value().contiguous();
    const std::int64_t* lp = c.data<std::int64_t>();
    dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* o = out.data<T>();
        for (std::int64_t i = 0; i < c.numel(); ++i) o[i * n_classes + lp[i]] = T(1);
    });
    return labels.tape()->record_no_grad("one_hot", std::move(out), {labels});
}

// x (..., n, ...) -> (..., ...) i64, or (..., 1, ...) with keepdims; first index on ties,
// NaN counts as the largest value (as NumPy)
Var argmax(Var x, int axis_in, bool keepdims) {
    int axis = normalize_axis(axis_in, x.ndim(), "argmax");
    if (x.shape()[axis] == 0) throw ShapeError("argmax", fmt::format("axis {} of {} is empty", axis, x.shape().str()));
    Shape kept_shape = x.shape();
    kept_shape[axis] = 1;
    Tensor kept = Tensor::empty(kept_shape, DType::i64);
    std::int64_t* po = kept.data<std::int64_t>();
    dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.value().data<T>();
        for_each_row<2>(x.shape(), axis, {&x.value().strides(), &kept.strides()}, [&](auto off, auto step, std::int64_t n) {
            const T* row = px + off[0];
            T best = row[0];
            std::int64_t best_j = 0;
            for (std::int64_t j = 1; j < n; ++j) {
                if (is_nan(best)) break;
                T v = row[j * step[0]];
                if (v > best || is_nan(v)) {
                    best = v;
                    best_j = j;
                }
            }
            po[off[1]] = best_j;
        });
    });
    Tensor out = keepdims ? kept : kept.squeeze(axis);
    return x.tape()->record_no_grad("argmax", std::move(out), {x});
}

// x (d0, .., n, .., dk), index (e0, .., m, .., ek) i64 with e_i <= d_i -> (e0, .., m, .., ek):
// out[.., j, ..] = x[.., index[.., j, ..], ..] along axis
Var gather(Var x, int axis_in, Var index) {
    require_i64(index, "index", "gather");
    int axis = normalize_axis(axis_in, x.ndim(), "gather");
    bool fits = index.ndim() == x.ndim();
    for (int i = 0; fits && i < x.ndim(); ++i) fits = i == axis || index.shape()[i] <= x.shape()[i];
    if (!fits) {
        throw ShapeError("gather", fmt::format("index {} does not fit x {} outside axis {} (same rank, extents no larger)",
                                               index.shape().str(), x.shape().str(), axis));
    }
    std::int64_t extent = x.shape()[axis];
    if (auto bad = first_out_of_range(index.value(), extent)) {
        throw ShapeError("gather", fmt::format("index {} (element {} of index {}) is out of range for axis {} of x {}",
                                               bad->value, bad->position, index.shape().str(), axis, x.shape().str()));
    }
    const Tensor& xv = x.value();
    const Tensor& iv = index.value();
    Tensor out = Tensor::empty(iv.shape(), xv.dtype());
    dispatch_all(xv.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* px = xv.data<T>();
        const std::int64_t* pi = iv.data<std::int64_t>();
        T* po = out.data<T>();
        for_each_row<3>(iv.shape(), axis, {&iv.strides(), &out.strides(), &xv.strides()}, [&](auto off, auto step, std::int64_t n) {
            for (std::int64_t j = 0; j < n; ++j) po[off[1] + j * step[1]] = px[off[2] + pi[off[0] + j * step[0]] * step[2]];
        });
    });
    Saved sindex(iv);
    Shape x_shape = xv.shape();
    return x.tape()->record("gather", std::move(out), {x, index}, [sindex, x_shape, axis](BackwardCtx& ctx) {
        // out[.., j, ..] = x[.., index[.., j, ..], ..];  dx[.., index[.., j, ..], ..] += grad_out[.., j, ..]
        const Tensor& iv = sindex.get("gather");
        const Tensor& g = ctx.grad_out();
        Tensor dx = Tensor::zeros(x_shape, g.dtype());
        dispatch_float(g.dtype(), "gather", [&](auto tag) {
            using T = decltype(tag);
            const std::int64_t* pi = iv.data<std::int64_t>();
            const T* pg = g.data<T>();
            T* pd = dx.data<T>();
            for_each_row<3>(iv.shape(), axis, {&iv.strides(), &g.strides(), &dx.strides()}, [&](auto off, auto step, std::int64_t n) {
                for (std::int64_t j = 0; j < n; ++j) pd[off[2] + pi[off[0] + j * step[0]] * step[2]] += pg[off[1] + j * step[1]];
            });
        });
        ctx.add(0, dx);
    });
}

// x (.., n, ..), index (m) i64 -> (.., m, ..): out[.., k, ..] = x[.., index[k], ..]
Var index_select(Var x, int axis_in, Var index) {
    require_i64(index, "index", "index_select");
    if (index.ndim() != 1) {
        throw ShapeError("index_select", fmt::format("index must have rank 1, got {} (x {})", index.shape().str(), x.shape().str()));
    }
    int axis = normalize_axis(axis_in, x.ndim(), "index_select");
    if (auto bad = first_out_of_range(index.value(), x.shape()[axis])) {
        throw ShapeError("index_select", fmt::format("index {} (element {} of index {}) is out of range for axis {} of x {}",
                                                     bad->value, bad->position, index.shape().str(), axis, x.shape().str()));
    }
    Tensor picks = index.value().contiguous();
    const std::int64_t* pp = picks.data<std::int64_t>();
    std::vector<std::int64_t> rows(pp, pp + picks.numel());
    Shape shape = x.shape();
    shape[axis] = static_cast<std::int64_t>(rows.size());
    Tensor out = Tensor::empty(shape, x.dtype());
    for (std::size_t k = 0; k < rows.size(); ++k) {
        out.select(axis, static_cast<std::int64_t>(k)).copy_from(x.value().select(axis, rows[k]));
    }
    Shape x_shape = x.shape();
    return x.tape()->record("index_select", std::move(out), {x, index}, [rows, x_shape, axis](BackwardCtx& ctx) {
        // out[.., k, ..] = x[.., index[k], ..];  dx[.., index[k], ..] += grad_out[.., k, ..]
        Tensor dx = Tensor::zeros(x_shape, ctx.grad_out().dtype());
        for (std::size_t k = 0; k < rows.size(); ++k) {
            Tensor slot = dx.select(axis, rows[k]);
            kern::add_(slot, ctx.grad_out().select(axis, static_cast<std::int64_t>(k)));
        }
        ctx.add(0, dx);
    });
}

// table (V, D), ids (...) i64 -> (..., D): the rows of table that ids name
Var embedding(Var table, Var ids) {
    if (table.ndim() != 2) {
        throw ShapeError("embedding", fmt::format("table must be (V, D), got {} (ids {})", table.shape().str(), ids.shape().str()));
    }
    require_i64(ids, "ids", "embedding");
    std::int64_t vocab = table.shape()[0];
    if (auto bad = first_out_of_range(ids.value(), vocab)) {
        throw ShapeError("embedding", fmt::format("id {} (element {} of ids {}) is out of range for a table of V = {} rows {}",
                                                  bad->value, bad->position, ids.shape().str(), vocab, table.shape().str()));
    }
    Shape shape = ids.shape();
    shape.push_back(table.shape()[1]);
    return reshape(index_select(table, 0, reshape(ids, Shape{ids.numel()})), shape);
}

void register_index(Registry& r) {
    r.def("one_hot", {arg::tensor("labels"), arg::integer("n_classes"), arg::dtype()},
          "(...) i64 labels -> (..., n_classes) with a 1 at each label", &one_hot, Gradient::none);
    r.def("argmax", {arg::tensor("x"), arg::integer("axis", -1), arg::boolean("keepdims", false)},
          "i64 index of the largest value along axis; first on ties", &argmax, Gradient::none);
    r.def("gather", {arg::tensor("x"), arg::integer("axis"), arg::tensor("index")},
          "torch.gather: out[.., j, ..] = x[.., index[.., j, ..], ..] along axis", &gather);
    r.def("index_select", {arg::tensor("x"), arg::integer("axis"), arg::tensor("index")},
          "the slices of x along axis named by a rank-1 i64 index", &index_select);
    r.def("embedding", {arg::tensor("table"), arg::tensor("ids")}, "table (V, D), ids (...) i64 -> (..., D); gradient to the rows read",
          &embedding);
}

}  // namespace wengert
