// linear (the fused dense layer): gradient checks, and values and gradients equal to the
// unfused composition relu(add(matmul(x, w), b)) in f32 and f64, at 1 and 2 threads.
#include "cases.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

// The composition linear() fuses.
Var unfused_linear(Var x, Var w, std::optional<Var> b, Activation activation) {
    Var y = matmul(x, w);
    if (b) y = add(y, *b);
    return activation == Activation::relu ? relu(y) : y;
}

using LinearFn = Var (*)(Var, Var, std::optional<Var>, Activation);

// The value and the gradients of x, w (and b) of sum(f(x, w, b) * weights).
std::vector<std::vector<double>> value_and_grads(LinearFn f, const Tensor& x, const Tensor& w, const Tensor& b,
                                                 Activation activation) {
    Tape tape;
    Var xv = tape.leaf(x), wv = tape.leaf(w);
    std::optional<Var> bv;
    if (b.defined()) bv = tape.leaf(b);
    Var out = f(xv, wv, bv, activation);
    Var weights = tape.input(random_tensor(out.shape(), 99, -1.0, 1.0, out.dtype()));
    tape.backward(sum(out * weights));
    std::vector<std::vector<double>> result{out.value().to_doubles(), xv.grad().to_doubles(), wv.grad().to_doubles()};
    if (bv) result.push_back(bv->grad().to_doubles());
    return result;
}

}  // namespace

WG_CASES(linear_cases) {
    auto x = random_tensor(Shape{4, 5}, 1), w = random_tensor(Shape{5, 3}, 2), b = random_tensor(Shape{3}, 3);
    auto with_bias = [](Activation a) {
        return [a](std::span<const Var> v) { return linear(v[0], v[1], v[2], a); };
    };
    auto without_bias = [](Activation a) {
        return [a](std::span<const Var> v) { return linear(v[0], v[1], std::nullopt, a); };
    };
    cases.add_grad("linear", "bias, no activation", with_bias(Activation::none), {x, w, b});
    cases.add_grad("linear", "bias and relu", with_bias(Activation::relu), {x, w, b});
    cases.add_grad("linear", "relu without bias", without_bias(Activation::relu), {x, w});
    cases.add_grad("linear", "neither: a plain product", without_bias(Activation::none), {x, w});
    cases.add_grad("linear", "batched x (2, 3, 5)", with_bias(Activation::relu),
                   {random_tensor(Shape{2, 3, 5}, 4), w, b});
    cases.add_grad("linear", "rank-1 x", with_bias(Activation::relu), {random_tensor(Shape{5}, 5), w, b});
    cases.add_grad("linear", "non-contiguous x and w", with_bias(Activation::relu), {noncontiguous(x), noncontiguous(w), b});
    cases.add_grad("linear", "only w and b need gradients", with_bias(Activation::relu), {x, w, b}, {false, true, true});
    cases.add_grad("linear", "gradient arrives as a broadcast view",
                   [](auto v) { return sum(linear(v[0], v[1], v[2], Activation::relu)); }, {x, w, b});
}

TEST_CASE("linear equals relu(add(matmul(x, w), b)) exactly, values and gradients", "[linear]") {
    for (DType dtype : {DType::f32, DType::f64}) {
        INFO(dtype_name(dtype));
        auto r = [dtype](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, dtype); };
        struct Problem {
            Tensor x, w, b;
        };
        std::vector<Problem> problems = {
            {r(Shape{7, 5}, 1), r(Shape{5, 9}, 2), r(Shape{9}, 3)},
            {r(Shape{2, 6, 40}, 4), r(Shape{40, 30}, 5), r(Shape{30}, 6)},
            {r(Shape{130, 70}, 7), r(Shape{70, 300}, 8), r(Shape{300}, 9)},          // big enough to split over threads
            {r(Shape{9, 7}, 10).transpose(0, 1), r(Shape{11, 9}, 11).transpose(0, 1), r(Shape{22}, 12).slice(0, 0, 22, 2)},
            {r(Shape{5, 8}, 13), r(Shape{8, 4}, 14), Tensor()},
        };
        for (const auto& [x, w, b] : problems) {
            for (Activation activation : {Activation::none, Activation::relu}) {
                INFO("x " << x.shape().str() << ", w " << w.shape().str() << (b.defined() ? ", bias" : "")
                          << (activation == Activation::relu ? ", relu" : ""));
                CHECK(value_and_grads(&linear, x, w, b, activation) == value_and_grads(&unfused_linear, x, w, b, activation));
            }
        }
    }
}

TEST_CASE("linear gives identical results at 1 and 2 threads", "[linear][threads]") {
    int before = max_threads();
    auto r = [](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, DType::f32); };
    Tensor x = r(Shape{300, 64}, 1), w = r(Shape{64, 200}, 2), b = r(Shape{200}, 3);
    set_num_threads(1);
    auto one = value_and_grads(&linear, x, w, b, Activation::relu);
    set_num_threads(2);
    auto two = value_and_grads(&linear, x, w, b, Activation::relu);
    CHECK(one == two);
    set_num_threads(before);
}

TEST_CASE("linear through the registry: activation by name", "[linear]") {
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{1, -2}, Shape{1, 2}));
    Var w = tape.input(Tensor::from(std::vector<double>{1, 0, 0, 1}, Shape{2, 2}));
    Var b = tape.input(Tensor::from(std::vector<double>{0.5, 0.5}, Shape{2}));
    const OpSchema& op = registry().get("linear");
    require_close(op.call(Args({x, w, b, std::string("relu")})).value(), {1.5, 0.0});
    require_close(op.call(Args({x, w, std::monostate{}, std::string("none")})).value(), {1.0, -2.0});
    CHECK_THROWS_WITH(op.call(Args({x, w, b, std::string("tanh")})), "linear: unknown activation 'tanh'; expected none or relu");
}

TEST_CASE("linear errors name every operand's shape", "[linear]") {
    Tape tape;
    auto in = [&](Shape s, DType dtype = DType::f32) { return tape.input(Tensor::zeros(s, dtype)); };
    CHECK_THROWS_WITH(linear(in(Shape{2, 3}), in(Shape{4, 5})), "linear: x's last axis and w's first differ: x [2, 3], w [4, 5] (3 vs 4)");
    CHECK_THROWS_WITH(linear(in(Shape{2, 3}), in(Shape{3, 5}), in(Shape{4})), "linear: b must have shape [5]: x [2, 3], w [3, 5], b [4]");
    CHECK_THROWS_WITH(linear(in(Shape{2, 3}), in(Shape{3})), "linear: x needs at least one axis and w exactly two: x [2, 3], w [3]");
    CHECK_THROWS_WITH(linear(in(Shape{}), in(Shape{3, 2})), "linear: x needs at least one axis and w exactly two: x [], w [3, 2]");
    CHECK_THROWS_WITH(linear(in(Shape{2, 3}), in(Shape{3, 2}, DType::f64)),
                      "linear: expected f32 or f64 operands of one dtype, got x f32 [2, 3], w f64 [3, 2]");
    CHECK_THROWS_WITH(linear(in(Shape{2, 3}, DType::i64), in(Shape{3, 2}, DType::i64)),
                      "linear: expected f32 or f64 operands of one dtype, got x i64 [2, 3], w i64 [3, 2]");
}

TEST_CASE("linear's fused relu propagates NaN as relu does, values and gradients (Note [NaN propagates])", "[linear][nan]") {
    const double nan = std::nan(""), inf = INFINITY;
    for (DType dtype : {DType::f32, DType::f64}) {
        INFO(dtype_name(dtype));
        // x @ w = [1, 1, 1, 1, 1] + b: a NaN, a negative, a positive and an infinite pre-activation, on
        // two rows so the bias gradient sums
        Tape tape;
        Var x = tape.leaf(Tensor::from_doubles({1, 1}, Shape{2, 1}, dtype));
        Var w = tape.leaf(Tensor::from_doubles({1, 1, 1, 1, 1}, Shape{1, 5}, dtype));
        Var b = tape.leaf(Tensor::from_doubles({nan, -2, 1, inf, -inf}, Shape{5}, dtype));
        Var y = linear(x, w, b, Activation::relu);
        require_close(y.value(), {nan, 0, 2, inf, 0, nan, 0, 2, inf, 0});
        require_close(relu(add(matmul(x, w), b)).value(), y.value().to_doubles());
        tape.backward(sum(y * tape.input(Tensor::from_doubles({1, 1, 1, 1, 1, 2, 2, 2, 2, 2}, Shape{2, 5}, dtype))));
        require_close(b.grad(), {3, 0, 3, 3, 0});
    }
}

}  // namespace wengert::test
