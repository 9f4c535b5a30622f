// Internal: elementwise maps with NumPy broadcasting, the building block of op kernels.
#pragma once

#include <fmt/format.h>

#include "../dispatch.hpp"

namespace wengert::detail {

// out[i] = f(x[i]); out is a new contiguous tensor of x's shape and dtype Out.
template <class Out, class In, class F> Tensor map1(const Tensor& x, F&& f) {
    Tensor out = Tensor::empty(x.shape(), dtype_of<Out>());
    Out* o = out.data<Out>();
    const In* in = x.data<In>();
    if (x.is_contiguous()) {
        for_elements(x.numel(), [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) o[i] = f(in[i]);
        });
        return out;
    }
    for_each_run<2>(x.shape(), {&out.strides(), &x.strides()}, [&](std::int64_t n, auto off, auto st) {
        for (std::int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = f(in[off[1] + i * st[1]]);
    });
    return out;
}

inline void require_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
    if (a.dtype() != b.dtype()) {
        throw ShapeError(op, fmt::format("dtypes differ: {} {} and {} {}", dtype_name(a.dtype()), a.shape().str(),
                                         dtype_name(b.dtype()), b.shape().str()));
    }
}

// out = f(a, b) with broadcasting; out is new and contiguous.
template <class Out, class In, class F> Tensor map2(const Tensor& a, const Tensor& b, const char* op, F&& f) {
    Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
    Tensor out = Tensor::empty(shape, dtype_of<Out>());
    Out* o = out.data<Out>();
    const In* pa = a.data<In>();
    const In* pb = b.data<In>();
    if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
        for_elements(out.numel(), [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) o[i] = f(pa[i], pb[i]);
        });
        return out;
    }
    Tensor ea = a.shape() == shape ? a : a.expand(shape);
    Tensor eb = b.shape() == shape ? b : b.expand(shape);
    for_each_run<3>(shape, {&out.strides(), &ea.strides(), &eb.strides()}, [&](std::int64_t n, auto off, auto st) {
        Out* po = o + off[0];
        const In* xa = pa + off[1];
        const In* xb = pb + off[2];
        if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
            In vb = *xb;
            for (std::int64_t i = 0; i < n; ++i) po[i] = f(xa[i], vb);
        } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
            In va = *xa;
            for (std::int64_t i = 0; i < n; ++i) po[i] = f(va, xb[i]);
        } else {
            for (std::int64_t i = 0; i < n; ++i) po[i * st[0]] = f(xa[i * st[1]], xb[i * st[2]]);
        }
    });
    return out;
}

// out = f(a, b, c) with broadcasting over all three; A, B, C are the operands' element types.
template <class Out, class A, class B, class C, class F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, const char* op, F&& f) {
    Shape shape = broadcast_shapes(broadcast_shapes(a.shape(), b.shape(), op), c.shape(), op);
    Tensor out = Tensor::empty(shape, dtype_of<Out>());
    Tensor ea = a.expand(shape), eb = b.expand(shape), ec = c.expand(shape);
    Out* o = out.data<Out>();
    const A* pa = ea.data<A>();
    const B* pb = eb.data<B>();
    const C* pc = ec.data<C>();
    for_each_run<4>(shape, {&out.strides(), &ea.strides(), &eb.strides(), &ec.strides()},
                    [&](std::int64_t n, auto off, auto st) {
                        for (std::int64_t i = 0; i < n; ++i) {
                            o[off[0] + i * st[0]] = f(pa[off[1] + i * st[1]], pb[off[2] + i * st[2]], pc[off[3] + i * st[3]]);
                        }
                    });
    return out;
}

}  // namespace wengert::detail
