#include "wengert/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "elementwise.hpp"

namespace wengert::kern {

using detail::dispatch_all;
using detail::map1;
using detail::map2;

namespace {

template <class F> Tensor arith(const Tensor& a, const Tensor& b, const char* op, F f) {
    detail::require_same_dtype(a, b, op);
    return dispatch_all(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        return map2<T, T>(a, b, op, [&](T x, T y) { return static_cast<T>(f(x, y)); });
    });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return arith(a, b, "add", [](auto x, auto y) { return x + y; }); }
Tensor sub(const Tensor& a, const Tensor& b) { return arith(a, b, "sub", [](auto x, auto y) { return x - y; }); }
Tensor mul(const Tensor& a, const Tensor& b) { return arith(a, b, "mul", [](auto x, auto y) { return x * y; }); }
Tensor div(const Tensor& a, const Tensor& b) { return arith(a, b, "div", [](auto x, auto y) { return x / y; }); }

Tensor scale(const Tensor& x, double s) {
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T ts = static_cast<T>(s);
        return map1<T, T>(x, [ts](T v) { return static_cast<T>(v * ts); });
    });
}

Tensor add_scalar(const Tensor& x, double s) {
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T ts = static_cast<T>(s);
        return map1<T, T>(x, [ts](T v) { return static_cast<T>(v + ts); });
    });
}

Tensor neg(const Tensor& x) { return scale(x, -1.0); }

void add_(Tensor& dst, const Tensor& src_in, double alpha) {
    detail::require_same_dtype(dst, src_in, "add_");
    Tensor src = src_in.shape() == dst.shape() ? src_in : src_in.expand(dst.shape());
    dispatch_all(dst.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* o = dst.data<T>();
        const T* s = src.data<T>();
        T a = static_cast<T>(alpha);
        detail::for_each_run<2>(dst.shape(), {&dst.strides(), &src.strides()}, [&](std::int64_t n, auto off, auto st) {
            T* po = o + off[0];
            const T* ps = s + off[1];
            if (st[0] == 1 && st[1] == 1) {
                if (alpha == 1.0) for (std::int64_t i = 0; i < n; ++i) po[i] += ps[i];
                else for (std::int64_t i = 0; i < n; ++i) po[i] += a * ps[i];
            } else {
                for (std::int64_t i = 0; i < n; ++i) po[i * st[0]] += a * ps[i * st[1]];
            }
        });
    });
    dst.bump_version();
}

void scale_(Tensor& dst, double s) {
    dispatch_all(dst.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* o = dst.data<T>();
        T ts = static_cast<T>(s);
        detail::for_each_run<1>(dst.shape(), {&dst.strides()}, [&](std::int64_t n, auto off, auto st) {
            for (std::int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] *= ts;
        });
    });
    dst.bump_version();
}

std::vector<int> normalize_axes(std::span<const std::int64_t> axes, int ndim, const char* op) {
    std::vector<int> out;
    if (axes.empty()) {
        for (int i = 0; i < ndim; ++i) out.push_back(i);
        return out;
    }
    for (auto a : axes) out.push_back(normalize_axis(a, ndim, op));
    std::sort(out.begin(), out.end());
    if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
        throw ShapeError(op, "an axis appears twice in the list of axes");
    }
    return out;
}

Shape reduced_shape(const Shape& shape, std::span<const int> axes, bool keepdims) {
    Shape out;
    for (int i = 0; i < shape.size(); ++i) {
        bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
        if (!reduced) out.push_back(shape[i]);
        else if (keepdims) out.push_back(1);
    }
    return out;
}

namespace {

// Note [Reductions]
// The input is permuted so that reduced axes come last. When they then form one contiguous
// block (the common case: reducing trailing axes of a contiguous tensor) each output element
// reduces a contiguous run, in parallel over outputs; a run is reduced in eight interleaved
// partial results (element j goes to partial j % 8), merged in order at the end, so that the
// additions of a long sum do not each wait for the one before. When the reduced axes lead a
// contiguous tensor (a bias gradient: (B, n) summed over B), rows are added into the n
// results one after another, in parallel over blocks of columns. Otherwise the input is walked
// once in memory order, accumulating into the output through stride-0 views. Either way each
// output element is reduced in a fixed order, so results do not depend on the thread count.
template <class T, class Acc, class Combine, class Merge>
Acc reduce_run(const T* p, std::int64_t n, Acc init, Combine combine, Merge merge) {
    constexpr std::int64_t kLanes = 8;
    Acc lanes[kLanes];
    for (auto& lane : lanes) lane = init;
    std::int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
        for (std::int64_t l = 0; l < kLanes; ++l) lanes[l] = combine(lanes[l], p[j + l]);
    }
    for (std::int64_t l = 0; j < n; ++j, ++l) lanes[l] = combine(lanes[l], p[j]);
    Acc acc = lanes[0];
    for (std::int64_t l = 1; l < kLanes; ++l) acc = merge(acc, lanes[l]);
    return acc;
}

// Runs body(lo, hi) over the outputs [0, n_out), each a reduction of n_red inputs, split into
// blocks of at least min_grain outputs across threads when the work is large. Every output is
// computed whole by one call, so the split never changes a result.
template <class Body> void over_outputs(std::int64_t n_out, std::int64_t n_red, std::int64_t min_grain, Body&& body) {
    if (n_out * n_red < detail::kParallelGrain || n_out == 1 || max_threads() == 1) {
        body(0, n_out);
        return;
    }
    std::int64_t grain = std::max<std::int64_t>(min_grain, detail::kParallelGrain / n_red);
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n_out, grain),
                      [&](const tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
}

template <class T, class Acc, class Combine, class Merge>
Tensor reduce(const Tensor& x, std::span<const int> axes_in, bool keepdims, Acc init, Combine combine, Merge merge) {
    std::vector<int> axes(axes_in.begin(), axes_in.end());
    if (axes.empty()) for (int i = 0; i < x.ndim(); ++i) axes.push_back(i);
    Shape kept_shape = reduced_shape(x.shape(), axes, true);
    Shape final_shape = reduced_shape(x.shape(), axes, keepdims);
    std::int64_t n_out = kept_shape.numel();
    std::int64_t n_red = n_out == 0 ? 0 : x.numel() / std::max<std::int64_t>(n_out, 1);
    Tensor out = Tensor::empty(kept_shape, dtype_of<T>());
    T* o = out.data<T>();
    const T* in = x.data<T>();

    // permutation: kept axes first, then reduced axes
    std::vector<int> perm;
    for (int i = 0; i < x.ndim(); ++i) if (std::find(axes.begin(), axes.end(), i) == axes.end()) perm.push_back(i);
    for (int a : axes) perm.push_back(a);
    Tensor xp = x.permute(std::span<const int>(perm));
    // Is the reduced block one contiguous run?
    bool inner_contiguous = true;
    std::int64_t expect = 1;
    for (int i = xp.ndim() - 1; i >= xp.ndim() - static_cast<int>(axes.size()); --i) {
        if (xp.shape()[i] != 1 && xp.strides()[i] != expect) inner_contiguous = false;
        expect *= xp.shape()[i];
    }
    // Do the reduced axes lead a contiguous x?
    bool leading = x.is_contiguous();
    for (std::size_t i = 0; i < axes.size(); ++i) leading = leading && axes[i] == static_cast<int>(i);
    if (inner_contiguous && n_red > 0) {
        // offsets of each output's run: iterate kept axes of xp
        Shape kept_only;
        Shape kept_strides;
        for (int i = 0; i < xp.ndim() - static_cast<int>(axes.size()); ++i) {
            kept_only.push_back(xp.shape()[i]);
            kept_strides.push_back(xp.strides()[i]);
        }
        auto body = [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t r = lo; r < hi; ++r) {
                std::int64_t off = 0, rem = r;
                for (int i = kept_only.size() - 1; i >= 0; --i) {
                    off += (rem % kept_only[i]) * kept_strides[i];
                    rem /= kept_only[i];
                }
                o[r] = static_cast<T>(reduce_run(in + off, n_red, init, combine, merge));
            }
        };
        over_outputs(n_out, n_red, 1, body);
    } else if (leading && n_red > 0) {
        // x as (n_red, n_out): each row added into the n_out results, rows in order
        auto body = [&](std::int64_t lo, std::int64_t hi) {
            std::vector<Acc> acc(static_cast<std::size_t>(hi - lo), init);
            for (std::int64_t r = 0; r < n_red; ++r) {
                const T* row = in + r * n_out + lo;
                for (std::int64_t c = 0; c < hi - lo; ++c) acc[static_cast<std::size_t>(c)] = combine(acc[static_cast<std::size_t>(c)], row[c]);
            }
            for (std::int64_t c = lo; c < hi; ++c) o[c] = static_cast<T>(acc[static_cast<std::size_t>(c - lo)]);
        };
        over_outputs(n_out, n_red, 16, body);
    } else {
        std::vector<Acc> acc(static_cast<std::size_t>(n_out), init);
        // Walk x in its own order; output offset via stride-0 view of kept_shape.
        Shape out_strides = contiguous_strides(kept_shape);
        Shape out_bstrides;
        for (int i = 0; i < x.ndim(); ++i) out_bstrides.push_back(kept_shape[i] == 1 && x.shape()[i] != 1 ? 0 : out_strides[i]);
        detail::RunPlan<2> plan = detail::plan_runs<2>(x.shape(), {&x.strides(), &out_bstrides});
        detail::exec_runs<2>(plan, 0, plan.outer, [&](std::int64_t n, auto off, auto st) {
            for (std::int64_t i = 0; i < n; ++i) {
                Acc& a = acc[static_cast<std::size_t>(off[1] + i * st[1])];
                a = combine(a, in[off[0] + i * st[0]]);
            }
        });
        for (std::int64_t r = 0; r < n_out; ++r) o[r] = static_cast<T>(acc[static_cast<std::size_t>(r)]);
    }
    return keepdims ? out : out.view(final_shape);
}

}  // namespace

Tensor sum(const Tensor& x, std::span<const int> axes, bool keepdims) {
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_floating_point_v<T>) {
            return reduce<T>(x, axes, keepdims, 0.0, [](double a, T v) { return a + static_cast<double>(v); }, std::plus<double>());
        } else {
            return reduce<T>(x, axes, keepdims, std::int64_t{0}, [](std::int64_t a, T v) { return a + static_cast<std::int64_t>(v); },
                             std::plus<std::int64_t>());
        }
    });
}

static void require_nonempty(const Tensor& x, std::span<const int> axes, const char* op) {
    for (int a : axes) {
        if (x.shape()[a] == 0) throw ShapeError(op, fmt::format("reducing an empty axis {} of {}", a, x.shape().str()));
    }
    if (axes.empty() && x.numel() == 0) throw ShapeError(op, fmt::format("reducing an empty tensor {}", x.shape().str()));
}

Tensor max(const Tensor& x, std::span<const int> axes, bool keepdims) {
    require_nonempty(x, axes, "max");
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto larger = [](T a, T v) { return detail::max_keeping_nan(a, v); };
        return reduce<T>(x, axes, keepdims, std::numeric_limits<T>::lowest(), larger, larger);
    });
}

Tensor min(const Tensor& x, std::span<const int> axes, bool keepdims) {
    require_nonempty(x, axes, "min");
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto smaller = [](T a, T v) { return detail::min_keeping_nan(a, v); };
        return reduce<T>(x, axes, keepdims, std::numeric_limits<T>::max(), smaller, smaller);
    });
}

double sum_all(const Tensor& x) { return sum(x.to(DType::f64), {}, false).item(); }

double dot_all(const Tensor& a, const Tensor& b) {
    detail::require_same_dtype(a, b, "dot");
    return dispatch_all(a.dtype(), [&](auto tag) -> double {
        using T = decltype(tag);
        Tensor ca = a.contiguous(), cb = b.contiguous();
        if (!(ca.shape() == cb.shape())) throw ShapeError("dot", fmt::format("shapes {} and {} differ", a.shape().str(), b.shape().str()));
        const T* pa = ca.data<T>();
        const T* pb = cb.data<T>();
        double acc = 0;
        for (std::int64_t i = 0; i < ca.numel(); ++i) acc += static_cast<double>(pa[i]) * static_cast<double>(pb[i]);
        return acc;
    });
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    int lead = g.ndim() - shape.size();
    if (lead < 0) throw ShapeError("sum_to_shape", fmt::format("cannot sum {} to larger shape {}", g.shape().str(), shape.str()));
    std::vector<int> axes;
    for (int i = 0; i < g.ndim(); ++i) {
        if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) axes.push_back(i);
    }
    if (axes.empty()) return g.reshape(shape);
    Tensor s = sum(g, axes, true);
    return s.reshape(shape);
}

}  // namespace wengert::kern
