// dropout and layer_norm: gradient checks, modes, PyTorch's values (torch 1.13, f64), and the
// fused layer norm against its unfused composition.
#include <cmath>

#include "cases.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

Tensor f64(std::vector<double> values, const Shape& shape) { return Tensor::from(values, shape); }

// layer norm from existing ops: (x - mean) / sqrt(var + eps) * gamma + beta
Var unfused_layer_norm(Var x, Var gamma, Var beta, double eps) {
    Var centered = sub(x, mean(x, {-1}, true));
    Var xhat = div(centered, pow(var(x, {-1}, true) + eps, 0.5));
    return add(mul(xhat, gamma), beta);
}

}  // namespace

WG_CASES(nn_cases) {
    auto a = random_tensor(Shape{3, 4}, 41);
    // Every evaluation reseeds, so the finite differences see the mask the tape saw.
    cases.add_grad("dropout", "p = 0.3, fixed seed", [](auto x) {
        manual_seed(11);
        return dropout(x[0], 0.3);
    }, {a});
    cases.add_grad("dropout", "p = 0.5, non-contiguous", [](auto x) {
        manual_seed(12);
        return dropout(x[0], 0.5);
    }, {noncontiguous(a)});

    auto x = random_tensor(Shape{3, 5}, 42, -2.0, 2.0);
    auto gamma = random_tensor(Shape{5}, 43, 0.5, 1.5);
    auto beta = random_tensor(Shape{5}, 44);
    auto ln = [](std::optional<int> g, std::optional<int> b) {
        return [g, b](std::span<const Var> v) {
            return layer_norm(v[0], g ? std::optional(v[*g]) : std::nullopt, b ? std::optional(v[*b]) : std::nullopt);
        };
    };
    cases.add_grad("layer_norm", "gamma and beta", ln(1, 2), {x, gamma, beta});
    cases.add_grad("layer_norm", "without gamma and beta", ln(std::nullopt, std::nullopt), {x});
    cases.add_grad("layer_norm", "gamma only", ln(1, std::nullopt), {x, gamma});
    cases.add_grad("layer_norm", "beta only", ln(std::nullopt, 1), {x, beta});
    cases.add_grad("layer_norm", "non-contiguous x", ln(1, 2), {noncontiguous(x), gamma, beta});
    cases.add_grad("layer_norm", "rank 3 (2, 3, 4), eps 0.1", [](auto v) {
        return layer_norm(v[0], v[1], v[2], 0.1);
    }, {random_tensor(Shape{2, 3, 4}, 45), random_tensor(Shape{4}, 46), random_tensor(Shape{4}, 47)});
    cases.add_grad("layer_norm", "rank 1", ln(1, 2), {random_tensor(Shape{5}, 48), gamma, beta});
}

TEST_CASE("dropout is the identity in eval and predict modes and for p = 0", "[nn]") {
    Tape tape;
    Var x = tape.leaf(random_tensor(Shape{4, 8}, 51));
    for (Mode mode : {Mode::eval, Mode::predict}) {
        INFO(mode_name(mode));
        ModeGuard guard(mode);
        Var y = dropout(x, 0.5);
        CHECK(y.id() == x.id());
    }
    CHECK(dropout(x, 0.0).id() == x.id());
}

TEST_CASE("dropout in train mode: inverted scaling, reproducible masks", "[nn]") {
    Tape tape;
    const std::int64_t n = 20000;
    Var x = tape.leaf(Tensor::full(Shape{n}, 2.0, DType::f64));
    manual_seed(5);
    Var y = dropout(x, 0.25);
    auto values = y.value().to_doubles();
    std::int64_t kept = 0;
    for (double v : values) {
        if (v != 0) {
            ++kept;
            CHECK(v == 2.0 / 0.75);
        }
    }
    // binomial(20000, 0.75): standard deviation 61
    CHECK(std::abs(static_cast<double>(kept) - 0.75 * n) < 400);
    tape.backward(sum(y));
    auto g = x.grad().to_doubles();
    for (std::int64_t i = 0; i < n; ++i) CHECK(g[static_cast<std::size_t>(i)] == (values[static_cast<std::size_t>(i)] != 0 ? 1 / 0.75 : 0.0));
    manual_seed(5);
    CHECK(dropout(x, 0.25).value().to_doubles() == values);
    CHECK(dropout(x, 0.25).value().to_doubles() != values);   // the generator moved on
}

TEST_CASE("dropout masks do not depend on the thread count", "[nn]") {
    Tensor big = Tensor::ones(Shape{300, 400}, DType::f32);
    auto run = [&](int threads) {
        set_num_threads(threads);
        Tape tape;
        manual_seed(9);
        return dropout(tape.input(big), 0.4).value().to_doubles();
    };
    int before = max_threads();
    auto one = run(1);
    auto two = run(2);
    set_num_threads(before);
    CHECK(one == two);
}

TEST_CASE("dropout rejects p outside [0, 1)", "[nn]") {
    Tape tape;
    Var x = tape.input(Tensor::ones(Shape{2}, DType::f64));
    CHECK_THROWS_WITH(dropout(x, 1.0), "dropout: p must be in [0, 1), got 1");
    CHECK_THROWS_WITH(dropout(x, -0.1), "dropout: p must be in [0, 1), got -0.1");
    ModeGuard eval(Mode::eval);
    CHECK_THROWS_WITH(dropout(x, 1.5), "dropout: p must be in [0, 1), got 1.5");
}

TEST_CASE("layer_norm matches PyTorch", "[nn]") {
    Tape tape;
    Var x = tape.leaf(f64({1, 2, 4, 7, 0.5, -0.5, 0, 3}, Shape{2, 4}));
    Var gamma = tape.leaf(f64({1, 0.5, -1, 2}, Shape{4}));
    Var beta = tape.leaf(f64({0, 0.1, 0.2, -0.3}, Shape{4}));
    require_close(layer_norm(x, std::nullopt, std::nullopt).value(),
                  {-1.0910884120486357, -0.6546530472291815, 0.21821768240972705, 1.5275237768680898,
                   -0.18569482591616965, -0.9284741295808483, -0.557084477748509, 1.671253433245527}, 1e-12);
    Var y = layer_norm(x, gamma, beta);
    require_close(y.value(), {-1.0910884120486357, -0.22732652361459074, -0.018217682409727043, 2.75504755373618,
                              -0.18569482591616965, -0.36423706479042417, 0.7570844777485091, 3.0425068664910544}, 1e-12);
    tape.backward(y, f64({1, -1, 2, 0.5, 0, 1, -2, 1}, Shape{2, 4}));
    require_close(x.grad(), {0.5299571544857772, -0.14028284036896066, -0.826109782849255, 0.43643546873243844,
                             -0.77479598857838, -0.16008342456850616, 0.8324240748397447, 0.10245533830714149}, 1e-12);
    require_close(gamma.grad(), {-1.0910884120486357, -0.2738210823516668, 1.550604320316472, 2.435015321679572}, 1e-12);
    require_close(beta.grad(), {1, 0, 0, 1.5}, 1e-12);
}

TEST_CASE("fused layer_norm equals the unfused composition in value and gradient", "[nn]") {
    Tensor x = random_tensor(Shape{2, 3, 6}, 52, -3.0, 3.0);
    Tensor gamma = random_tensor(Shape{6}, 53);
    Tensor beta = random_tensor(Shape{6}, 54);
    Tensor cotangent = random_tensor(Shape{2, 3, 6}, 55);
    auto run = [&](bool fused) {
        Tape tape;
        Var xv = tape.leaf(x), gv = tape.leaf(gamma), bv = tape.leaf(beta);
        Var y = fused ? layer_norm(xv, gv, bv, 1e-3) : unfused_layer_norm(xv, gv, bv, 1e-3);
        tape.backward(y, cotangent);
        return std::vector<Tensor>{y.value(), xv.grad(), gv.grad(), bv.grad()};
    };
    auto fused = run(true), unfused = run(false);
    for (std::size_t i = 0; i < fused.size(); ++i) {
        INFO("tensor " << i << " (value, dx, dgamma, dbeta)");
        require_close(fused[i], unfused[i].to_doubles(), 1e-12);
    }
}

TEST_CASE("layer_norm's lane sums: the composition's values, the same bits at any thread count", "[nn]") {
    // Note [Fused layer norm]: rows of 64 and 67 features (whole lanes, and a tail) sum over
    // interleaved partial sums; f64 against the composition, f32 within float rounding of f64,
    // and 1 thread against 2 bit for bit with rows split over tasks
    for (std::int64_t D : {64, 67}) {
        INFO("D " << D);
        const std::int64_t rows = 1200;   // above the parallel grain
        Tensor x = random_tensor(Shape{rows, D}, 60, -3.0, 3.0), gamma = random_tensor(Shape{D}, 61),
               beta = random_tensor(Shape{D}, 62), cotangent = random_tensor(Shape{rows, D}, 63);
        auto run = [&](bool fused, DType dtype) {
            Tape tape;
            Var xv = tape.leaf(x.to(dtype)), gv = tape.leaf(gamma.to(dtype)), bv = tape.leaf(beta.to(dtype));
            Var y = fused ? layer_norm(xv, gv, bv, 1e-5) : unfused_layer_norm(xv, gv, bv, 1e-5);
            tape.backward(y, cotangent.to(dtype));
            return std::vector<Tensor>{y.value(), xv.grad(), gv.grad(), bv.grad()};
        };
        const auto fused = run(true, DType::f64), unfused = run(false, DType::f64);
        const int before = max_threads();
        set_num_threads(1);
        const auto one = run(true, DType::f32);
        set_num_threads(2);
        const auto two = run(true, DType::f32);
        set_num_threads(before);
        for (std::size_t i = 0; i < fused.size(); ++i) {
            INFO("tensor " << i << " (value, dx, dgamma, dbeta)");
            require_close(fused[i], unfused[i].to_doubles(), 1e-12);
            require_close(one[i], fused[i].to_doubles(), 1e-3);
            CHECK(one[i].to_doubles() == two[i].to_doubles());
        }
    }
}

TEST_CASE("layer_norm errors name the operands", "[nn]") {
    Tape tape;
    Var x = tape.input(Tensor::zeros(Shape{2, 4}, DType::f64));
    CHECK_THROWS_WITH(layer_norm(x, tape.input(Tensor::ones(Shape{3}, DType::f64)), std::nullopt),
                      "layer_norm: gamma must be f64 of shape [4] for x [2, 4], got f64 [3]");
    CHECK_THROWS_WITH(layer_norm(x, std::nullopt, tape.input(Tensor::ones(Shape{4}, DType::f32))),
                      "layer_norm: beta must be f64 of shape [4] for x [2, 4], got f32 [4]");
    CHECK_THROWS_WITH(layer_norm(tape.input(Tensor::zeros(Shape{2}, DType::i64)), std::nullopt, std::nullopt),
                      "layer_norm: x must be f32 or f64 with at least one axis, got i64 [2]");
}

}  // namespace wengert::test
