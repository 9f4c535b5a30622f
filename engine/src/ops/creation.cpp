// Creation: new values on the current tape (Tape::current()), without gradient. normal and
// uniform draw from default_generator(), so manual_seed makes them reproducible; sinusoids are
// the Transformer's positions.
#include <fmt/format.h>

#include <cmath>

#include "families.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert {

namespace {

Var constant(const char* op, Tensor value) { return Tape::current().record(op, std::move(value), {}, nullptr); }

}  // namespace

// shape -> shape
Var zeros(const Shape& shape, DType dtype) { return constant("zeros", Tensor::zeros(shape, dtype)); }
Var ones(const Shape& shape, DType dtype) { return constant("ones", Tensor::ones(shape, dtype)); }
Var full(const Shape& shape, double value, DType dtype) { return constant("full", Tensor::full(shape, value, dtype)); }

// n -> (n, n)
Var eye(std::int64_t n, DType dtype) {
    if (n < 0) throw ShapeError("eye", fmt::format("size must not be negative, got {}", n));
    return constant("eye", Tensor::eye(n, dtype));
}

// -> (ceil((stop - start) / step),)
Var arange(double start, double stop, double step, DType dtype) {
    return constant("arange", Tensor::arange(start, stop, step, dtype));
}

// shape -> shape, N(mean, stddev^2)
Var normal(const Shape& shape, double mean, double stddev, DType dtype) {
    if (!(stddev >= 0.0)) throw ShapeError("normal", fmt::format("stddev must not be negative, got {}", stddev));
    Tensor t = Tensor::empty(shape, dtype);
    default_generator().fill_normal(t, mean, stddev);
    return constant("normal", std::move(t));
}

// shape -> shape, U[low, high)
Var uniform(const Shape& shape, double low, double high, DType dtype) {
    if (!(low <= high)) throw ShapeError("uniform", fmt::format("low {} is above high {}", low, high));
    Tensor t = Tensor::empty(shape, dtype);
    default_generator().fill_uniform(t, low, high);
    return constant("uniform", std::move(t));
}

// -> (length, d)
Var sinusoids(std::int64_t length, std::int64_t d, DType dtype) {
    const char* op = "sinusoids";
    if (length < 0 || d < 0) throw ShapeError(op, fmt::format("sizes must not be negative, got length {} and d {}", length, d));
    Tensor pe = Tensor::empty(Shape{length, d}, DType::f64);
    double* p = pe.data<double>();
    for (std::int64_t pos = 0; pos < length; ++pos) {
        for (std::int64_t i = 0; i < d; ++i) {
            // 2 (i / 2): the pair's even index, so that sin and cos of one pair share a frequency
            double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(2 * (i / 2)) / static_cast<double>(d));
            p[pos * d + i] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
        }
    }
    return constant(op, pe.to(dtype));
}

void register_creation(Registry& r) {
    const ArgSpec shape = arg::ints("shape");
    r.def("zeros", {shape, arg::dtype()}, "a tensor of zeros", &zeros, Gradient::none);
    r.def("ones", {shape, arg::dtype()}, "a tensor of ones", &ones, Gradient::none);
    r.def("full", {shape, arg::number("value"), arg::dtype()}, "a tensor filled with value", &full, Gradient::none);
    r.def("eye", {arg::integer("n"), arg::dtype()}, "the n x n identity matrix", &eye, Gradient::none);
    r.def("arange", {arg::number("start"), arg::number("stop"), arg::number("step", 1.0), arg::dtype()},
          "start, start + step, ... up to but excluding stop", &arange, Gradient::none);
    r.def("normal", {shape, arg::number("mean", 0.0), arg::number("stddev", 1.0), arg::dtype()},
          "samples of N(mean, stddev^2) from the default generator", &normal, Gradient::none);
    r.def("uniform", {shape, arg::number("low", 0.0), arg::number("high", 1.0), arg::dtype()},
          "samples of U[low, high) from the default generator", &uniform, Gradient::none);
}

}  // namespace wengert
