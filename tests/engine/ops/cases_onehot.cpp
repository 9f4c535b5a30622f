// sharpen, straight_through and gumbel_softmax (Note [Near one-hot], SPEC.md section 4):
// gradient checks, SPEC's numbers, the fused sharpen against softmax(n log p), exact one-hot
// values with the soft gradient, and the Gumbel-max frequencies.
#include <algorithm>
#include <cmath>

#include "cases.hpp"

namespace wengert::test {

WG_CASES(onehot_cases) {
    // weights, not normalised: sharpen normalises each row itself
    auto p = random_tensor(Shape{2, 3, 4}, 61, 0.05, 1.0);
    cases.add_grad("sharpen", "n = 2, last axis", [](auto x) { return sharpen(x[0], 2.0); }, {p});
    cases.add_grad("sharpen", "n = 1, middle axis", [](auto x) { return sharpen(x[0], 1.0, 1); }, {p});
    cases.add_grad("sharpen", "n = 7.5, first axis, non-contiguous", [](auto x) { return sharpen(x[0], 7.5, 0); },
                   {noncontiguous(p)});
    cases.add_grad("sharpen", "of a softmax", [](auto x) { return sharpen(softmax(x[0]), 4.0); },
                   {random_tensor(Shape{3, 5}, 62, -2.0, 2.0)});

    auto logits = random_tensor(Shape{3, 5}, 63, -2.0, 2.0);
    cases.add_grad("gumbel_softmax", "tau = 1, fixed seed", [](auto x) {
        manual_seed(21);
        return gumbel_softmax(x[0]);
    }, {logits});
    cases.add_grad("gumbel_softmax", "tau = 0.5, axis 0, non-contiguous", [](auto x) {
        manual_seed(22);
        return gumbel_softmax(x[0], 0.5, false, 0);
    }, {noncontiguous(logits)});

    // straight_through is piecewise constant, so finite differences see 0 where its gradient
    // is the identity by definition: the check is analytic
    cases.add_forward("straight_through", "exact one-hot forward, identity backward", [] {
        Tape tape;
        Var x = tape.leaf(Tensor::from_doubles({0.1, 0.7, 0.2, 3.0, -1.0, 3.0}, Shape{2, 3}));
        Var y = straight_through(x);
        require_close(y.value(), {0, 1, 0, 1, 0, 0}, 0.0);   // a tie goes to the first
        Tensor w = Tensor::from_doubles({1, 2, 3, 4, 5, 6}, Shape{2, 3});
        tape.backward(sum(y * tape.input(w)));
        require_close(x.grad(), {1, 2, 3, 4, 5, 6}, 0.0);
    });
}

namespace {

Tensor sharpened(const std::vector<double>& probs, double n, DType dtype) {
    Tape tape;
    Var p = tape.input(Tensor::from_doubles(probs, Shape{static_cast<std::int64_t>(probs.size())}, dtype));
    return sharpen(p, n).value();
}

}  // namespace

TEST_CASE("sharpen gives SPEC.md section 4's numbers and stays finite where p^n underflows", "[onehot]") {
    for (DType dtype : {DType::f64, DType::f32}) {
        INFO(dtype_name(dtype));
        require_close(sharpened({0.5, 0.3, 0.2}, 2, dtype), {0.657895, 0.236842, 0.105263});
        require_close(sharpened({0.5, 0.3, 0.2}, 10, dtype), {0.993886, 0.006010, 0.000104});
        // 0.5^1000 is 0 in f32: the naive p^n / sum p^n is 0 / 0
        require_close(sharpened({0.5, 0.3, 0.2}, 1000, dtype), {1, 0, 0}, 1e-30);
    }
}

TEST_CASE("sharpen equals softmax(n log p), values and gradients", "[onehot]") {
    Tensor p = random_tensor(Shape{4, 6}, 64, 0.01, 1.0);
    Tensor w = random_tensor(Shape{4, 6}, 65);
    for (double n : {1.0, 3.0, 12.0}) {
        INFO("n = " << n);
        Tape tape;
        Var a = tape.leaf(p), b = tape.leaf(p);
        Var fused = sharpen(a, n, 1), composed = softmax(log(b) * n, 1);
        require_close(fused.value(), composed.value().to_doubles(), 1e-12);
        tape.backward(sum(fused * tape.input(w)) + sum(composed * tape.input(w)));
        require_close(a.grad(), b.grad().to_doubles(), 1e-10);
    }
}

TEST_CASE("sharpen of a row with zeros: zero there, and a finite gradient", "[onehot]") {
    for (double n : {1.0, 2.0}) {
        INFO("n = " << n);
        Tape tape;
        Var p = tape.leaf(Tensor::from_doubles({0.0, 0.6, 0.2, 0.0}, Shape{4}));
        Var s = sharpen(p, n);
        CHECK(s.value().to_doubles()[0] == 0.0);
        tape.backward(sum(s * tape.input(Tensor::from_doubles({1, 2, 3, 4}, Shape{4}))));
        auto g = p.grad().to_doubles();
        for (double v : g) CHECK(std::isfinite(v));
        // the derivative at p = 0: n p^(n-1) / sum p^n (g - sum g s), 0 for n > 1
        double dot = 2 * s.value().to_doubles()[1] + 3 * s.value().to_doubles()[2];
        CHECK(g[0] == Approx(n == 1.0 ? (1 - dot) / 0.8 : 0.0).margin(1e-12));
    }
}

TEST_CASE("sharpen refuses what is not a set of weights, and powers below 1", "[onehot]") {
    Tape tape;
    auto message = [&](std::vector<double> values, double n) {
        try {
            sharpen(tape.input(Tensor::from_doubles(values, Shape{static_cast<std::int64_t>(values.size())})), n);
        } catch (const ShapeError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(message({0.5, -0.2, 0.7}, 2) == "sharpen: p [3] has a negative entry: it must hold probabilities");
    CHECK_THAT(message({0.0, 0.0}, 2), Catch::Contains("no positive entry"));
    CHECK_THAT(message({0.5, 0.5}, 0.5), Catch::Contains("n < 1"));
    CHECK_THAT(message({0.5, 0.5}, INFINITY), Catch::Contains(">= 1"));
}

TEST_CASE("gumbel_softmax: noise in train mode only, reproducible by seed", "[onehot]") {
    Tensor logits = random_tensor(Shape{4, 5}, 66, -2.0, 2.0);
    Tape tape;
    Var z = tape.leaf(logits);
    for (Mode mode : {Mode::eval, Mode::predict}) {
        INFO(mode_name(mode));
        ModeGuard guard(mode);
        require_close(gumbel_softmax(z, 0.5).value(), softmax(z / 0.5).value().to_doubles(), 1e-15);
        require_close(gumbel_softmax(z, 0.5, true).value(), one_hot(argmax(z), 5, DType::f64).value().to_doubles(), 0.0);
    }
    manual_seed(3);
    Tensor first = gumbel_softmax(z).value();
    manual_seed(3);
    require_close(gumbel_softmax(z).value(), first.to_doubles(), 0.0);
    auto noisy = first.to_doubles(), plain = softmax(z).value().to_doubles();
    double largest = 0;
    for (std::size_t i = 0; i < noisy.size(); ++i) largest = std::max(largest, std::abs(noisy[i] - plain[i]));
    CHECK(largest > 1e-3);   // the noise is there
}

TEST_CASE("gumbel_softmax(hard = true) is exactly one-hot with the soft sample's gradient", "[onehot]") {
    Tensor logits = random_tensor(Shape{6, 4}, 67, -2.0, 2.0);
    Tensor w = random_tensor(Shape{6, 4}, 68);
    Tape tape;
    Var a = tape.leaf(logits), b = tape.leaf(logits);
    manual_seed(5);
    Var hard = gumbel_softmax(a, 0.7, true);
    manual_seed(5);
    Var soft = gumbel_softmax(b, 0.7, false);
    require_close(hard.value(), one_hot(argmax(soft), 4, DType::f64).value().to_doubles(), 0.0);
    tape.backward(sum(hard * tape.input(w)) + sum(soft * tape.input(w)));
    require_close(a.grad(), b.grad().to_doubles(), 0.0);
}

TEST_CASE("gumbel_softmax's argmax samples the softmax's categories (the Gumbel-max trick)", "[onehot]") {
    const std::vector<double> probs = {0.5, 0.3, 0.2};
    const std::int64_t draws = 20000;
    Tensor logits = Tensor::empty(Shape{draws, 3}, DType::f64);
    for (std::int64_t i = 0; i < draws; ++i) {
        for (int j = 0; j < 3; ++j) logits.data<double>()[i * 3 + j] = std::log(probs[static_cast<std::size_t>(j)]);
    }
    Tape tape;
    manual_seed(9);
    auto picks = sum(gumbel_softmax(tape.input(logits), 1.0, true), {0}).value().to_doubles();
    for (int j = 0; j < 3; ++j) {
        INFO("category " << j);
        // binomial standard deviation at n = 20000 is at most 0.0036: a margin of 5 of them
        CHECK(picks[static_cast<std::size_t>(j)] / draws == Approx(probs[static_cast<std::size_t>(j)]).margin(0.018));
    }
}

TEST_CASE("a NaN makes its row NaN in sharpen; straight_through and gumbel_softmax keep it (Note [NaN propagates])",
          "[onehot][nan]") {
    const double nan = std::nan("");
    Tape tape;
    Var p = tape.leaf(Tensor::from(std::vector<double>{nan, 0.5, 0.5, 0.5, 0.3, 0.2}, Shape{2, 3}));
    Var s = sharpen(p, 2);
    require_close(s.value(), {nan, nan, nan, 0.657895, 0.236842, 0.105263});
    tape.backward(sum(s * tape.input(Tensor::from(std::vector<double>{1, 2, 3, 1, 2, 3}, Shape{2, 3}))));
    auto g = p.grad().to_doubles();
    for (std::size_t j = 0; j < 3; ++j) CHECK(std::isnan(g[j]));
    for (std::size_t j = 3; j < 6; ++j) CHECK(std::isfinite(g[j]));
    // a row whose only non-zero entry is NaN is NaN, not "no positive entry"
    require_close(sharpen(tape.input(Tensor::from(std::vector<double>{nan, 0.0}, Shape{2})), 2).value(), {nan, nan});

    // argmax takes the first NaN for the largest; the NaN entries stay NaN, as PyTorch's
    // y_hard - stop(y) + y gives, and the gradient passes straight through
    Var x = tape.leaf(Tensor::from(std::vector<double>{1, nan, 3, nan, 1, 3, 2, 0}, Shape{2, 4}));
    Var hard = straight_through(x);
    require_close(hard.value(), {0, nan, 0, nan, 0, 1, 0, 0});
    tape.backward(sum(hard));
    require_close(x.grad(), {1, 1, 1, 1, 1, 1, 1, 1});
    ModeGuard eval(Mode::eval);
    Var logits = tape.input(Tensor::from(std::vector<double>{0.5, nan, 1.0, 0.5, 2.0, 1.0}, Shape{2, 3}));
    require_close(gumbel_softmax(logits, 1.0, true).value(), {nan, nan, nan, 0, 1, 0});
}

}  // namespace wengert::test
