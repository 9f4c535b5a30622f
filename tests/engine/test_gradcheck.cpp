// check_gradient, the finite-difference comparison of one tensor that gradcheck runs on each
// input and the language's model gradcheck on each parameter.
#include <catch2/catch.hpp>

#include "wengert/gradcheck.hpp"

using namespace wengert;

namespace {

// sum(x^2) / 2, whose gradient is x
double half_square_sum(const Tensor& x) {
    double total = 0;
    for (double v : x.to_doubles()) total += v * v / 2;
    return total;
}

}  // namespace

TEST_CASE("check_gradient compares every element, or max_elements spread evenly, and restores x", "[gradcheck]") {
    Tensor x = Tensor::from(std::vector<double>{0.5, -1, 2, 3, -0.25}, Shape{5});
    const std::uint64_t version = x.version();
    int evaluations = 0;
    auto objective = [&] {
        ++evaluations;
        return half_square_sum(x);
    };
    Tensor wrong_at_3 = Tensor::from(std::vector<double>{0.5, -1, 2, 3.5, -0.25}, Shape{5});
    TensorGradCheck all = check_gradient(x, wrong_at_3, objective, {});
    CHECK_FALSE(all.ok);
    CHECK(all.checked == 5);
    CHECK(evaluations == 10);
    CHECK(all.worst_index == 3);
    CHECK(all.analytic == 3.5);
    CHECK(all.numeric == Approx(3.0));
    CHECK(all.abs_error == Approx(0.5));
    CHECK(x.to_doubles() == std::vector<double>{0.5, -1, 2, 3, -0.25});
    CHECK(x.version() > version);
    // two of five: elements 0 and 2 (k n / count), so the wrong element 3 goes unchecked
    TensorGradCheck two = check_gradient(x, wrong_at_3, objective, {}, 2);
    CHECK(two.ok);
    CHECK(two.checked == 2);
    CHECK(two.worst_index == 0);
}

TEST_CASE("check_gradient reports a failing element before a larger error within tolerance", "[gradcheck]") {
    Tensor x = Tensor::from(std::vector<double>{1000, 1}, Shape{2});
    auto objective = [&] { return half_square_sum(x); };
    // element 0: off by 0.05 within rtol 1e-4 of 1000; element 1: off by 0.01, beyond it
    Tensor analytic = Tensor::from(std::vector<double>{1000.05, 1.01}, Shape{2});
    TensorGradCheck c = check_gradient(x, analytic, objective, {.eps = 1e-6, .atol = 1e-6, .rtol = 1e-4});
    CHECK_FALSE(c.ok);
    CHECK(c.worst_index == 1);
    CHECK(c.abs_error == Approx(0.01).epsilon(1e-3));
    CHECK(c.max_abs_error == Approx(0.05).epsilon(1e-3));
}

TEST_CASE("gradcheck reports the input and element that fail", "[gradcheck]") {
    // a deliberately wrong backward for input 1: d(a * b)/db sent as 2a
    auto f = [](std::span<const Var> x) {
        Var a = x[0], b = x[1];
        Tensor out = a.value().clone();
        for (std::int64_t i = 0; i < out.numel(); ++i) out.data<double>()[i] *= b.value().data<double>()[i];
        return a.tape()->record("wrong_mul", std::move(out), {a, b}, [av = a.value(), bv = b.value()](BackwardCtx& ctx) {
            Tensor da = ctx.grad_out().clone(), db = ctx.grad_out().clone();
            for (std::int64_t i = 0; i < da.numel(); ++i) {
                da.data<double>()[i] *= bv.data<double>()[i];
                db.data<double>()[i] *= 2 * av.data<double>()[i];
            }
            ctx.add(0, da);
            ctx.add(1, db);
        });
    };
    Tensor a = Tensor::from(std::vector<double>{0.5, -1.5}, Shape{2}), b = Tensor::from(std::vector<double>{2, 3}, Shape{2});
    GradCheckResult r = gradcheck(f, {a, b});
    CHECK_FALSE(r.ok);
    CHECK(r.worst_input == 1);
    CHECK(r.message.rfind("gradient mismatch: input 1 element ", 0) == 0);
}
