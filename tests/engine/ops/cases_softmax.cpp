#include <cmath>

#include "cases.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

WG_CASES(softmax_cases) {
    auto a = random_tensor(Shape{2, 3, 4}, 31, -2.0, 2.0);
    cases.add_grad("softmax", "last axis", [](auto x) { return softmax(x[0]); }, {a});
    cases.add_grad("softmax", "middle axis", [](auto x) { return softmax(x[0], 1); }, {a});
    cases.add_grad("softmax", "first axis, non-contiguous", [](auto x) { return softmax(x[0], 0); }, {noncontiguous(a)});
    cases.add_grad("softmax", "large logits", [](auto x) { return softmax(x[0] * 50.0 + 1e4, -1); }, {a});
    cases.add_grad("softmax", "used twice", [](auto x) {
        Var p = softmax(x[0], -1);
        return p * p;
    }, {a});
    cases.add_grad("log_softmax", "last axis", [](auto x) { return log_softmax(x[0]); }, {a});
    cases.add_grad("log_softmax", "axis 1, non-contiguous", [](auto x) { return log_softmax(x[0], 1); }, {noncontiguous(a)});
    cases.add_grad("log_softmax", "large logits", [](auto x) { return log_softmax(x[0] * 50.0 - 1e4, 0); }, {a});
}

TEST_CASE("softmax and log_softmax of logits of 1e4 give no NaN in f32", "[softmax]") {
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<float>{1e4f, 0.0f, -1e4f, 1e4f, 1e4f, 1e4f}, Shape{2, 3}));
    Var p = softmax(x);
    Var lp = log_softmax(x);
    require_close(p.value(), {1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    require_close(lp.value(), {0, -1e4, -2e4, -std::log(3.0), -std::log(3.0), -std::log(3.0)});
    tape.backward(sum(p * tape.input(Tensor::from(std::vector<float>{1, 2, 3, 1, 2, 3}, Shape{2, 3}))) + sum(lp));
    for (double g : x.grad().to_doubles()) CHECK(std::isfinite(g));
    // d/dx of sum(p * w): p (w - sum(p w)); of sum(log_softmax): 1 - 3 p
    require_close(x.grad(), {0 + 1 - 3, 0 + 1, 0 + 1, -1.0 / 3 + 0, 0 + 0, 1.0 / 3 + 0}, 1e-5);
}

TEST_CASE("softmax values along a non-last axis", "[softmax]") {
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{0, 1, 2, 2, 1, 0}, Shape{2, 3}));
    double e = std::exp(2.0);
    require_close(softmax(x, 0).value(), {1 / (1 + e), 0.5, e / (1 + e), e / (1 + e), 0.5, 1 / (1 + e)});
    require_close(log_softmax(x, -2).value(),
                  {-std::log1p(e), -std::log(2.0), 2 - std::log1p(e), 2 - std::log1p(e), -std::log(2.0), -std::log1p(e)});
    CHECK_THROWS_WITH(softmax(x, 2), "softmax: axis 2 is out of range for a tensor of rank 2");
}

TEST_CASE("large softmax rows run in parallel, identical to one thread", "[softmax]") {
    // 67,200 elements: above the parallel grain
    Tensor logits = random_tensor(Shape{96, 700}, 33, -5.0, 5.0, DType::f32);
    Tensor cotangent = random_tensor(Shape{96, 700}, 34, -1.0, 1.0, DType::f32);
    auto run = [&](int threads) {
        set_num_threads(threads);
        Tape tape;
        Var x = tape.leaf(logits);
        Var y = softmax(x, 0) + log_softmax(x, 1);
        tape.backward(y, cotangent);
        Var reference = exp(x - logsumexp(x, {0}, true)) + (x - logsumexp(x, {1}, true));
        auto got = y.value().to_doubles(), want = reference.value().to_doubles();
        double worst = 0;
        for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
        CHECK(worst <= 1e-5);
        return std::pair(y.value().to_doubles(), x.grad().to_doubles());
    };
    int before = max_threads();
    auto one = run(1);
    auto several = run(4);
    set_num_threads(before);
    CHECK(one == several);
}

TEST_CASE("a NaN logit makes its softmax row NaN and leaves the other rows alone (Note [NaN propagates])", "[softmax][nan]") {
    const double nan = std::nan(""), e = std::exp(1.0);
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{1, nan, 2, 0, 1, 2}, Shape{2, 3}));
    const double total = 1 + e + e * e;
    require_close(softmax(x).value(), {nan, nan, nan, 1 / total, e / total, e * e / total});
    require_close(log_softmax(x).value(), {nan, nan, nan, -std::log(total), 1 - std::log(total), 2 - std::log(total)});
    Var labels = tape.input(Tensor::from(std::vector<std::int64_t>{0, 2}, Shape{2}));
    require_close(cross_entropy(x, labels, 0.0, Reduction::none).value(), {nan, std::log(total) - 2});
}

}  // namespace wengert::test
