#include "cases.hpp"

namespace wengert::test {

WG_CASES(reduce_cases) {
    auto a = random_tensor(Shape{2, 3, 4}, 11);
    auto spread = spread_tensor(Shape{2, 3, 4}, 12);
    cases.add_grad("sum", "all axes", [](auto x) { return sum(x[0]); }, {a});
    cases.add_grad("sum", "axes (0, 2) keepdims", [](auto x) { return sum(x[0], {0, 2}, true); }, {a});
    cases.add_grad("sum", "negative axis, non-contiguous", [](auto x) { return sum(x[0], {-1}); }, {noncontiguous(a)});
    cases.add_grad("mean", "axis 1", [](auto x) { return mean(x[0], {1}); }, {a});
    cases.add_grad("mean", "all", [](auto x) { return mean(x[0]); }, {a});
    cases.add_grad("max", "axis -1", [](auto x) { return max(x[0], {-1}); }, {spread});
    cases.add_grad("max", "axes (0, 1) keepdims", [](auto x) { return max(x[0], {0, 1}, true); }, {spread});
    cases.add_grad("min", "axis 0", [](auto x) { return min(x[0], {0}); }, {spread});
    cases.add_grad("logsumexp", "axis -1", [](auto x) { return logsumexp(x[0], {-1}); }, {a});
    cases.add_grad("logsumexp", "axes (0, 2), large values", [](auto x) { return logsumexp(x[0] * 300.0, {0, 2}, true); }, {a});
    cases.add_grad("var", "axis -1", [](auto x) { return var(x[0], {-1}); }, {a});
    cases.add_grad("var", "all, unbiased", [](auto x) { return var(x[0], {}, false, 1); }, {a});
}

TEST_CASE("reduction values", "[reduce]") {
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{1, 5, 3, 2, 2, 0}, Shape{2, 3}));
    require_close(sum(x, {1}).value(), {9, 4});
    require_close(mean(x, {0}).value(), {1.5, 3.5, 1.5});
    require_close(max(x, {1}).value(), {5, 2});
    require_close(min(x).value(), {0});
    require_close(logsumexp(x, {1}).value(), {std::log(std::exp(1) + std::exp(5) + std::exp(3)), std::log(2 * std::exp(2) + 1)});
    require_close(var(x, {1}).value(), {8.0 / 3.0, 8.0 / 9.0});
    Var big = tape.input(Tensor::from(std::vector<double>{1000, 1000}, Shape{2}));
    require_close(logsumexp(big).value(), {1000 + std::log(2.0)});
}

TEST_CASE("max shares the gradient among ties", "[reduce]") {
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<double>{3, 1, 3}, Shape{3}));
    tape.backward(max(x));
    require_close(x.grad(), {0.5, 0, 0.5});
}

TEST_CASE("max and min of a row with NaN are NaN, and their gradient goes to the NaN (Note [NaN propagates])", "[reduce][nan]") {
    const double nan = std::nan("");
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<double>{1, nan, 3, 4, 5, 6}, Shape{2, 3}));
    Var hi = max(x, {1}), lo = min(x, {1});
    require_close(hi.value(), {nan, 6});
    require_close(lo.value(), {nan, 4});
    require_close(max(x).value(), {nan});
    require_close(logsumexp(x, {1}).value(), {nan, std::log(std::exp(4) + std::exp(5) + std::exp(6))});
    // PyTorch's evenly_distribute_backward: a NaN extremum is the NaN elements'
    tape.backward(sum(hi) + sum(lo));
    require_close(x.grad(), {0, 2, 0, 1, 0, 1});
    Var f = tape.input(Tensor::from(std::vector<float>{2.0f, 7.0f, std::nanf(""), 1.0f, 0.0f, 9.0f, 3.0f, 4.0f, 5.0f}, Shape{9}));
    require_close(max(f).value(), {nan});
    require_close(min(f).value(), {nan});
}

}  // namespace wengert::test
