#include <cmath>

#include "cases.hpp"

#include <limits>

namespace wengert::test {

WG_CASES(elementwise_cases) {
    Shape s{3, 4};
    auto a = random_tensor(s, 1);
    auto b = random_tensor(s, 2);
    auto pos = random_tensor(s, 3, 0.5, 2.0);
    auto row = random_tensor(Shape{4}, 4);
    auto col = random_tensor(Shape{3, 1}, 5, 0.5, 2.0);

    cases.add_grad("add", "same shape", [](auto x) { return add(x[0], x[1]); }, {a, b});
    cases.add_grad("add", "broadcast row", [](auto x) { return add(x[0], x[1]); }, {a, row});
    cases.add_grad("add", "non-contiguous", [](auto x) { return add(x[0], x[1]); }, {noncontiguous(a), b});
    cases.add_grad("add_scalar", "tensor + 2.5", [](auto x) { return x[0] + 2.5; }, {a});
    cases.add_grad("sub", "broadcast column", [](auto x) { return sub(x[0], x[1]); }, {a, col});
    cases.add_grad("rsub_scalar", "1 - x", [](auto x) { return 1.0 - x[0]; }, {a});
    cases.add_grad("mul", "broadcast both ways", [](auto x) { return mul(x[0], x[1]); }, {col, row});
    cases.add_grad("mul", "same value twice accumulates", [](auto x) { return mul(x[0], x[0]); }, {a});
    cases.add_grad("mul_scalar", "x * -3", [](auto x) { return x[0] * -3.0; }, {a});
    cases.add_grad("div", "broadcast column", [](auto x) { return div(x[0], x[1]); }, {a, col});
    cases.add_grad("div", "non-contiguous", [](auto x) { return div(x[0], x[1]); }, {a, noncontiguous(pos)});
    cases.add_grad("rdiv_scalar", "2 / x", [](auto x) { return 2.0 / x[0]; }, {pos});
    cases.add_grad("neg", "-x", [](auto x) { return -x[0]; }, {a});
    cases.add_grad("pow", "tensor exponent", [](auto x) { return pow(x[0], x[1]); }, {pos, b});
    cases.add_grad("pow", "broadcast exponent", [](auto x) { return pow(x[0], x[1]); }, {pos, row});
    cases.add_grad("pow_scalar", "x^2", [](auto x) { return pow(x[0], 2.0); }, {a});
    cases.add_grad("pow_scalar", "x^3", [](auto x) { return pow(x[0], 3.0); }, {a});
    cases.add_grad("pow_scalar", "x^0.5", [](auto x) { return pow(x[0], 0.5); }, {pos});
    auto sa = spread_tensor(s, 6), sb = spread_tensor(s, 7, 0.05);
    cases.add_grad("maximum", "no ties", [](auto x) { return maximum(x[0], x[1]); }, {sa, sb});
    cases.add_grad("minimum", "broadcast", [](auto x) { return minimum(x[0], x[1]); }, {sa, spread_tensor(Shape{4}, 8, 0.03)});
    cases.add_grad("clamp", "both bounds", [](auto x) { return clamp(x[0], -0.4, 0.3); }, {sa});
    cases.add_grad("clamp", "low only", [](auto x) { return clamp(x[0], 0.0, std::nullopt); }, {sa});
    cases.add_grad("where", "broadcast mask", [](auto x) {
        Var mask = gt(x[0], x[1]);
        return where(mask, x[0], x[1] * 2.0);
    }, {sa, row});
    cases.add_grad("cast", "f64 -> f32 -> f64 path", [](auto x) { return cast(x[0] * 2.0, DType::f64); }, {a});

    auto check_mask = [](const char* op, Var (*f)(Var, Var), std::vector<double> want) {
        Tape tape;
        Var x = tape.input(Tensor::from(std::vector<double>{1, 2, 3}, Shape{3}));
        Var y = tape.input(Tensor::from(std::vector<double>{2, 2, 2}, Shape{3}));
        Var m = f(x, y);
        REQUIRE(m.dtype() == DType::u8);
        REQUIRE_FALSE(m.requires_grad());
        INFO(op);
        require_close(m.value(), want);
    };
    cases.add_forward("eq", "[1,2,3] == 2", [=] { check_mask("eq", &eq, {0, 1, 0}); });
    cases.add_forward("ne", "[1,2,3] != 2", [=] { check_mask("ne", &ne, {1, 0, 1}); });
    cases.add_forward("lt", "[1,2,3] < 2", [=] { check_mask("lt", &lt, {1, 0, 0}); });
    cases.add_forward("le", "[1,2,3] <= 2", [=] { check_mask("le", &le, {1, 1, 0}); });
    cases.add_forward("gt", "[1,2,3] > 2", [=] { check_mask("gt", &gt, {0, 0, 1}); });
    cases.add_forward("ge", "[1,2,3] >= 2", [=] { check_mask("ge", &ge, {0, 1, 1}); });
    cases.add_forward("logical_not", "not [1,0]", [] {
        Tape tape;
        Var m = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 0}, Shape{2}));
        require_close(logical_not(m).value(), {0, 1});
    });
    cases.add_forward("logical_and", "[1,1,0] and [1,0,0]", [] {
        Tape tape;
        Var a = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 1, 0}, Shape{3}));
        Var b = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 0, 0}, Shape{3}));
        require_close(logical_and(a, b).value(), {1, 0, 0});
    });
    cases.add_forward("logical_or", "[1,1,0,0] or [1,0,1,0], broadcasting", [] {
        Tape tape;
        Var a = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 1, 0, 0}, Shape{4}));
        Var b = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 0, 1, 0}, Shape{4}));
        require_close(logical_or(a, b).value(), {1, 1, 1, 0});
        Var column = tape.input(Tensor::from(std::vector<std::uint8_t>{0, 1}, Shape{2, 1}));
        require_close(logical_or(column, tape.input(Tensor::from(std::vector<std::uint8_t>{1, 0}, Shape{2}))).value(), {1, 0, 1, 1});
        CHECK_FALSE(logical_or(a, b).requires_grad());
        CHECK_THROWS_WITH(logical_or(a, tape.input(Tensor::zeros(Shape{4}))), "logical_or: expected u8 masks, got u8 and f32");
    });
    cases.add_forward("detach", "same values, no gradient", [] {
        Tape tape;
        Var x = tape.leaf(Tensor::from(std::vector<double>{1, 2}, Shape{2}));
        Var d = detach(x);
        REQUIRE_FALSE(d.requires_grad());
        require_close(d.value(), {1, 2});
    });
}

TEST_CASE("cast to an integer dtype refuses values it has none for, instead of undefined behaviour", "[elementwise][cast]") {
    Tape tape;
    auto in = [&](std::vector<double> v) { return tape.input(Tensor::from(v, Shape{static_cast<std::int64_t>(v.size())})); };
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(cast(in({1, nan}), DType::i64), "cast: element 1 is nan, which has no i64 value");
    CHECK_THROWS_WITH(cast(in({-inf}), DType::i64), "cast: element 0 is -inf, which has no i64 value");
    CHECK_THROWS_WITH(cast(in({2, 1e30}), DType::i64), "cast: element 1 is 1e+30, which has no i64 value");
    CHECK_THROWS_WITH(cast(in({256}), DType::u8), "cast: element 0 is 256, which has no u8 value");
    CHECK_THROWS_WITH(cast(in({-1}), DType::u8), "cast: element 0 is -1, which has no u8 value");
    // what does fit truncates toward zero, as C and NumPy do
    CHECK(cast(in({-2.5, 2.5, -9223372036854775808.0}), DType::i64).value().to_doubles() ==
          std::vector<double>{-2, 2, -9223372036854775808.0});
    CHECK(cast(in({255.9, -0.5}), DType::u8).value().to_doubles() == std::vector<double>{255, 0});
}

TEST_CASE("maximum, minimum and clamp propagate NaN as PyTorch does (Note [NaN propagates])", "[elementwise][nan]") {
    const double nan = std::nan(""), inf = INFINITY;
    Tape tape;
    Var a = tape.leaf(Tensor::from(std::vector<double>{nan, 1.0, nan, 2.0, -inf, 3.0}, Shape{6}));
    Var b = tape.leaf(Tensor::from(std::vector<double>{1.0, nan, nan, 1.0, nan, 3.0}, Shape{6}));
    Var hi = maximum(a, b), lo = minimum(a, b);
    require_close(hi.value(), {nan, nan, nan, 2, nan, 3});
    require_close(lo.value(), {nan, nan, nan, 1, nan, 3});
    // the gradient goes where the output came from: the NaN operand (a when both are), a on ties
    tape.backward(sum(hi));
    require_close(a.grad(), {1, 0, 1, 1, 0, 1});
    require_close(b.grad(), {0, 1, 0, 0, 1, 0});
    Tape again;
    Var x = again.leaf(Tensor::from(std::vector<double>{nan, 2.0, -3.0, 0.5, inf}, Shape{5}));
    Var c = clamp(x, -1.0, 1.0);
    require_close(c.value(), {nan, 1, -1, 0.5, 1});
    require_close(clamp(x, std::nullopt, 1.0).value(), {nan, 1, -3, 0.5, 1});
    // torch.clamp's backward: the gradient passes where low <= x <= high, so not at NaN
    again.backward(sum(c));
    require_close(x.grad(), {0, 0, 0, 1, 0});
    Var xf = again.input(Tensor::from(std::vector<float>{std::nanf(""), 1.0f, -2.0f}, Shape{3}));
    Var zf = again.input(Tensor::from(std::vector<float>{0.0f, std::nanf(""), 0.0f}, Shape{3}));
    require_close(maximum(xf, zf).value(), {nan, nan, 0});
    require_close(minimum(xf, zf).value(), {nan, nan, -2});
}

}  // namespace wengert::test

namespace wengert::test {

TEST_CASE("pow with the exponents 2, 3 and 0.5 is x * x, x * x * x and sqrt(x), as PyTorch's", "[elementwise]") {
    Tape tape;
    Tensor x = random_tensor(Shape{1000}, 5, 0.0, 10.0, DType::f32);
    Var v = tape.input(x);
    auto xs = x.to_doubles();
    auto sq = pow(v, 2.0).value().to_doubles(), cube = pow(v, 3.0).value().to_doubles(), root = pow(v, 0.5).value().to_doubles();
    for (std::size_t i = 0; i < xs.size(); ++i) {
        float f = static_cast<float>(xs[i]);
        CHECK(sq[i] == static_cast<double>(f * f));
        CHECK(cube[i] == static_cast<double>(f * f * f));
        CHECK(root[i] == static_cast<double>(std::sqrt(f)));
    }
}

}  // namespace wengert::test
