// Keras regularizers and constraints: SPEC.md section 2 numbers and gradients.
#include <catch2/catch.hpp>

#include <cmath>

#include "wengert/gradcheck.hpp"
#include "wengert/ops.hpp"
#include "wengert/regularizers.hpp"

using namespace wengert;

namespace {

Tensor f64(std::vector<double> values, const Shape& shape) { return Tensor::from(values, shape); }

}  // namespace

TEST_CASE("l1, l2 and l1_l2: SPEC's numbers", "[regularizers]") {
    Tape tape;
    Var x = tape.input(f64({1, 2}, Shape{2}));
    CHECK(l2(0.01)(x).item() == Approx(0.05).margin(1e-6));
    CHECK(l1(0.01)(x).item() == Approx(0.03).margin(1e-6));
    CHECK(l1_l2()(x).item() == Approx(0.08).margin(1e-6));
    CHECK(l1()(x).item() == Approx(0.03).margin(1e-6));      // default 0.01
    CHECK(l2()(x).item() == Approx(0.05).margin(1e-6));
    Var negative = tape.input(f64({-1, 2, -3}, Shape{3}));
    CHECK(l1(0.5)(negative).item() == Approx(3.0).margin(1e-12));
    CHECK(l1_l2(0.1, 0.2)(negative).item() == Approx(0.6 + 2.8).margin(1e-12));
    CHECK(l1_l2(0.1, 0.2).name == "l1_l2(l1=0.1, l2=0.2)");
    CHECK(l2(0.01).name == "l2(0.01)");
    CHECK_THROWS_WITH(l1(-0.1), "l1: the penalty factor must be a finite number >= 0, got -0.1");
}

TEST_CASE("SPEC's Dense(5) example: kernel l1 0.25, activity l2 5.0, total 5.25", "[regularizers]") {
    Tape tape;
    // input ones(5, 5) * 2 as (5, 5, 1) against the kernel (5, 5): x[i, k] W[k, j] summed over k
    Var x = tape.input(Tensor::full(Shape{5, 5, 1}, 2.0, DType::f64));
    Var kernel = tape.leaf(Tensor::ones(Shape{5, 5}, DType::f64));
    Var bias = tape.leaf(Tensor::zeros(Shape{5}, DType::f64));
    Var output = sum(x * kernel, {1}) + bias;
    CHECK(output.value().to_doubles() == std::vector<double>(25, 10.0));
    const double batch_size = 5;
    Var kernel_term = l1(0.01)(kernel);
    Var activity_term = l2(0.01)(output) / batch_size;
    Var total = kernel_term + activity_term;
    CHECK(kernel_term.item() == Approx(0.25).margin(1e-6));
    CHECK(activity_term.item() == Approx(5.0).margin(1e-6));
    CHECK(total.item() == Approx(5.25).margin(1e-6));
    // d total / d kernel[k, j] = 0.01 + 0.01 * 2 * sum_i output[i, j] * x[i, k] / 5 = 0.01 + 0.4
    tape.backward(total);
    for (double g : kernel.grad().to_doubles()) CHECK(g == Approx(0.41).margin(1e-12));
}

TEST_CASE("regularizer penalties pass gradient checks; |x| has subgradient 0 at 0", "[regularizers]") {
    Tensor x = f64({-0.7, 0.3, 1.1, -0.2, 0.9, -1.4}, Shape{2, 3});
    for (const Regularizer& reg : {l1(0.3), l2(0.2), l1_l2(0.1, 0.4)}) {
        INFO(reg.name);
        GradCheckResult r = gradcheck([&reg](std::span<const Var> v) { return reg(v[0]); }, {x});
        INFO(r.message);
        CHECK(r.ok);
    }
    Tape tape;
    Var zero = tape.leaf(f64({0, 2, -2}, Shape{3}));
    tape.backward(l1(1.0)(zero));
    CHECK(zero.grad().to_doubles() == std::vector<double>{0, 1, -1});
}

TEST_CASE("constraints: Keras's non_neg, unit_norm and max_norm", "[regularizers]") {
    // columns (axis 0) [3, 4] and [0, -1]
    Tensor w = f64({3, 0, 4, -1}, Shape{2, 2});
    Tensor t = w.clone();
    non_neg().project(t);
    CHECK(t.to_doubles() == std::vector<double>{3, 0, 4, 0});

    t = w.clone();
    unit_norm().project(t);
    auto u = t.to_doubles();
    CHECK(u[0] == Approx(0.6).margin(1e-6));
    CHECK(u[2] == Approx(0.8).margin(1e-6));
    CHECK(u[1] == 0.0);
    CHECK(u[3] == Approx(-1.0).margin(1e-6));

    t = w.clone();
    unit_norm(1).project(t);   // rows [3, 0] and [4, -1]
    auto rows = t.to_doubles();
    CHECK(rows[0] == Approx(1.0).margin(1e-6));
    CHECK(rows[2] == Approx(4 / std::sqrt(17.0)).margin(1e-6));

    t = w.clone();
    max_norm(2.0).project(t);   // column 0 (norm 5) scaled to norm 2; column 1 (norm 1) kept
    auto m = t.to_doubles();
    CHECK(m[0] == Approx(1.2).margin(1e-6));
    CHECK(m[2] == Approx(1.6).margin(1e-6));
    CHECK(m[3] == Approx(-1.0).margin(1e-6));
    CHECK(max_norm(2.0).name == "max_norm(max_value=2, axis=0)");

    Tensor v = f64({1, 2}, Shape{2});
    CHECK_THROWS_WITH(unit_norm(1).project(v), "unit_norm: axis 1 is out of range for a tensor of rank 1");
    CHECK_THROWS_WITH(max_norm(-1.0), "max_norm: max_value must not be negative, got -1");
}

TEST_CASE("simplex projection: SPEC's numbers, per column", "[regularizers]") {
    auto project = [](std::vector<double> v) {
        auto n = static_cast<std::int64_t>(v.size());
        Tensor w = Tensor::from(v, Shape{n, 1});   // one column
        simplex(0).project(w);
        return w.to_doubles();
    };
    auto near = [](const std::vector<double>& a, const std::vector<double>& b) {
        for (std::size_t i = 0; i < a.size(); ++i) if (std::abs(a[i] - b[i]) > 1e-9) return false;
        return true;
    };
    CHECK(near(project({0.5, 0.8, -0.2}), {0.35, 0.65, 0}));
    CHECK(near(project({1.2, 0.4, 0.1}), {0.9, 0.1, 0}));
    CHECK(near(project({0.2, 0.2, 0.2}), {1.0 / 3, 1.0 / 3, 1.0 / 3}));
    CHECK(near(project({2, 0, 0}), {1, 0, 0}));
    // a 3x2 matrix: each column projected on its own; axis 1 projects rows instead
    Tensor m = Tensor::from(std::vector<double>{0.5, 2, 0.8, 0, -0.2, 0}, Shape{3, 2});
    simplex(0).project(m);
    CHECK(near(m.to_doubles(), {0.35, 1, 0.65, 0, 0, 0}));
    Tensor r = Tensor::from(std::vector<double>{0.5, 0.8, -0.2, 2, 0, 0}, Shape{2, 3});
    simplex(1).project(r);
    CHECK(near(r.to_doubles(), {0.35, 0.65, 0, 1, 0, 0}));
}
