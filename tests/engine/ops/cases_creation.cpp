// Creation ops: values on the current tape, no gradient; normal and uniform reproducible from
// manual_seed.
#include <cmath>

#include "cases.hpp"

namespace wengert::test {

namespace {

// mean and population standard deviation
std::pair<double, double> moments(const std::vector<double>& v) {
    double mean = 0, sq = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) sq += (x - mean) * (x - mean);
    return {mean, std::sqrt(sq / static_cast<double>(v.size()))};
}

}  // namespace

WG_CASES(creation_cases) {
    cases.add_forward("zeros", "(2, 3) f64", [] {
        Tape tape;
        Var z = zeros(Shape{2, 3}, DType::f64);
        CHECK(z.shape() == Shape{2, 3});
        CHECK(z.dtype() == DType::f64);
        CHECK_FALSE(z.requires_grad());
        require_close(z.value(), {0, 0, 0, 0, 0, 0});
    });
    cases.add_forward("ones", "(2,) i64", [] {
        Tape tape;
        Var o = ones(Shape{2}, DType::i64);
        CHECK(o.dtype() == DType::i64);
        require_close(o.value(), {1, 1});
    });
    cases.add_forward("full", "(2, 2) of 2.5", [] {
        Tape tape;
        require_close(full(Shape{2, 2}, 2.5).value(), {2.5, 2.5, 2.5, 2.5});
    });
    cases.add_forward("eye", "3 x 3", [] {
        Tape tape;
        Var e = eye(3);
        CHECK(e.shape() == Shape{3, 3});
        require_close(e.value(), {1, 0, 0, 0, 1, 0, 0, 0, 1});
        CHECK_THROWS_WITH(eye(-1), "eye: size must not be negative, got -1");
    });
    cases.add_forward("arange", "0 to 2 by 0.5, and down by 2", [] {
        Tape tape;
        require_close(arange(0, 2, 0.5).value(), {0, 0.5, 1, 1.5});
        require_close(arange(5, 0, -2, DType::i64).value(), {5, 3, 1});
        CHECK(arange(3, 3).numel() == 0);
    });
    cases.add_forward("normal", "moments and reproducibility", [] {
        Tape tape;
        manual_seed(1);
        Var a = normal(Shape{100, 100}, 2.0, 0.5, DType::f64);
        auto [mean, stddev] = moments(a.value().to_doubles());
        CHECK(std::abs(mean - 2.0) < 0.02);       // standard error 0.005
        CHECK(std::abs(stddev - 0.5) < 0.02);
        CHECK_FALSE(a.requires_grad());
        manual_seed(1);
        CHECK(normal(Shape{100, 100}, 2.0, 0.5, DType::f64).value().to_doubles() == a.value().to_doubles());
        CHECK_THROWS_WITH(normal(Shape{2}, 0.0, -1.0), "normal: stddev must not be negative, got -1");
    });
    cases.add_forward("uniform", "range, moments and reproducibility", [] {
        Tape tape;
        manual_seed(2);
        Var u = uniform(Shape{10000}, -1.0, 3.0);
        CHECK(u.dtype() == DType::f32);
        auto values = u.value().to_doubles();
        for (double v : values) CHECK((v >= -1.0 && v < 3.0));
        auto [mean, stddev] = moments(values);
        CHECK(std::abs(mean - 1.0) < 0.05);       // standard error 0.012
        CHECK(std::abs(stddev - 4.0 / std::sqrt(12.0)) < 0.05);
        manual_seed(2);
        CHECK(uniform(Shape{10000}, -1.0, 3.0).value().to_doubles() == values);
        CHECK_THROWS_WITH(uniform(Shape{2}, 1.0, 0.0), "uniform: low 1 is above high 0");
    });
}

TEST_CASE("creation ops are reachable through the registry", "[creation]") {
    Tape tape;
    const OpSchema& op = registry().get("full");
    CHECK(op.signature() == "full(shape, value, dtype=\"f32\")");
    Var v = op.call(Args({std::vector<std::int64_t>{2}, 7.0, std::string("f64")}));
    CHECK(v.dtype() == DType::f64);
    require_close(v.value(), {7, 7});
}

}  // namespace wengert::test
