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
    const ArgSpec shape{"shape", ArgKind::ints, {}};
    const ArgSpec dtype{"dtype", ArgKind::string, ArgValue{std::string("f32")}};
    auto shape_of = [](const Args& a, std::size_t i) { return Shape(std::span<const std::int64_t>(a.ints(i))); };
    r.add({"zeros", {shape, dtype}, "a tensor of zeros", false,
           [=](const Args& a) { return zeros(shape_of(a, 0), parse_dtype(a.string(1), "zeros")); }});
    r.add({"ones", {shape, dtype}, "a tensor of ones", false,
           [=](const Args& a) { return ones(shape_of(a, 0), parse_dtype(a.string(1), "ones")); }});
    r.add({"full", {shape, {"value", ArgKind::number, {}}, dtype}, "a tensor filled with value", false,
           [=](const Args& a) { return full(shape_of(a, 0), a.number(1), parse_dtype(a.string(2), "full")); }});
    r.add({"eye", {{"n", ArgKind::integer, {}}, dtype}, "the n x n identity matrix", false,
           [](const Args& a) { return eye(a.integer(0), parse_dtype(a.string(1), "eye")); }});
    r.add({"arange",
           {{"start", ArgKind::number, {}}, {"stop", ArgKind::number, {}}, {"step", ArgKind::number, ArgValue{1.0}}, dtype},
           "start, start + step, ... up to but excluding stop", false,
           [](const Args& a) { return arange(a.number(0), a.number(1), a.number(2), parse_dtype(a.string(3), "arange")); }});
    r.add({"normal",
           {shape, {"mean", ArgKind::number, ArgValue{0.0}}, {"stddev", ArgKind::number, ArgValue{1.0}}, dtype},
           "samples of N(mean, stddev^2) from the default generator", false,
           [=](const Args& a) {
               return normal(shape_of(a, 0), a.number(1), a.number(2), parse_dtype(a.string(3), "normal"));
           }});
    r.add({"uniform",
           {shape, {"low", ArgKind::number, ArgValue{0.0}}, {"high", ArgKind::number, ArgValue{1.0}}, dtype},
           "samples of U[low, high) from the default generator", false,
           [=](const Args& a) {
               return uniform(shape_of(a, 0), a.number(1), a.number(2), parse_dtype(a.string(3), "uniform"));
           }});
}

}  // namespace wengert
