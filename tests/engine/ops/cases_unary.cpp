#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "cases.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

WG_CASES(unary_cases) {
    Shape s{3, 4};
    auto a = random_tensor(s, 21);
    auto pos = random_tensor(s, 22, 0.2, 3.0);
    auto spread = spread_tensor(s, 23);    // +-0.05, +-0.15, ..., +-0.55: away from the kinks at 0

    cases.add_grad("exp", "random", [](auto x) { return exp(x[0]); }, {a});
    cases.add_grad("exp", "non-contiguous", [](auto x) { return exp(x[0]); }, {noncontiguous(a)});
    cases.add_grad("log", "positive", [](auto x) { return log(x[0]); }, {pos});
    cases.add_grad("log", "non-contiguous", [](auto x) { return log(x[0]); }, {noncontiguous(pos)});
    cases.add_grad("sqrt", "positive", [](auto x) { return sqrt(x[0]); }, {pos});
    cases.add_grad("abs", "both signs", [](auto x) { return abs(x[0]); }, {spread});
    cases.add_grad("tanh", "random", [](auto x) { return tanh(x[0] * 2.0); }, {a});
    cases.add_grad("sigmoid", "random", [](auto x) { return sigmoid(x[0] * 3.0); }, {a});
    cases.add_grad("sigmoid", "large |x|", [](auto x) { return sigmoid(x[0] * 40.0); }, {a});
    cases.add_grad("relu", "both signs", [](auto x) { return relu(x[0]); }, {spread});
    cases.add_grad("relu", "non-contiguous", [](auto x) { return relu(x[0]); }, {noncontiguous(spread)});
    cases.add_grad("gelu", "exact", [](auto x) { return gelu(x[0] * 3.0); }, {a});
    cases.add_grad("gelu", "tanh approximation", [](auto x) { return gelu(x[0] * 3.0, true); }, {a});
    cases.add_grad("softplus", "default beta and threshold", [](auto x) { return softplus(x[0] * 3.0); }, {a});
    // spread is +-0.05, +-0.15, ..., +-0.55: beta x > 0.6 for 0.35, 0.45, 0.55, both branches, none at the seam
    cases.add_grad("softplus", "beta 2, threshold 0.6", [](auto x) { return softplus(x[0], 2.0, 0.6); }, {spread});
    cases.add_grad("softplus", "negative beta", [](auto x) { return softplus(x[0], -1.5); }, {a});
}

namespace {

Tensor values_f64() { return Tensor::from(std::vector<double>{-2.0, -0.5, 0.0, 1.0, 3.0}, Shape{5}); }

}  // namespace

TEST_CASE("unary values", "[unary]") {
    Tape tape;
    Var x = tape.input(values_f64());
    Var p = tape.input(Tensor::from(std::vector<double>{0.25, 1.0, 4.0}, Shape{3}));
    require_close(exp(x).value(), {std::exp(-2.0), std::exp(-0.5), 1.0, std::exp(1.0), std::exp(3.0)});
    require_close(log(p).value(), {std::log(0.25), 0.0, std::log(4.0)});
    require_close(sqrt(p).value(), {0.5, 1.0, 2.0});
    require_close(abs(x).value(), {2.0, 0.5, 0.0, 1.0, 3.0});
    require_close(tanh(x).value(), {std::tanh(-2.0), std::tanh(-0.5), 0.0, std::tanh(1.0), std::tanh(3.0)});
    require_close(relu(x).value(), {0.0, 0.0, 0.0, 1.0, 3.0});
}

TEST_CASE("sigmoid, gelu and softplus match PyTorch 1.13", "[unary]") {
    Tape tape;
    Var x = tape.input(values_f64());
    require_close(sigmoid(x).value(), {0.11920292202211755, 0.3775406687981454, 0.5, 0.7310585786300049, 0.9525741268224334});
    require_close(gelu(x).value(), {-0.04550026389635842, -0.15426876936299344, 0.0, 0.841344746068543, 2.99595030590511});
    require_close(gelu(x, true).value(),
                  {-0.04540230591222494, -0.15428599017485606, 0.0, 0.8411919906082768, 2.996362607918227});
    require_close(softplus(x).value(), {0.1269280110429725, 0.4740769841801067, 0.6931471805599453, 1.3132616875182228,
                                        3.048587351573742});
    // torch.nn.functional.softplus(x, beta=2, threshold=1): 1 and 3 are above the threshold
    require_close(softplus(x, 2.0, 1.0).value(),
                  {0.009074963958904869, 0.15663084375911143, 0.34657359027997264, 1.0, 3.0});
}

TEST_CASE("sigmoid and softplus stay finite for large |x| in f32", "[unary]") {
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<float>{-1e4f, -100.0f, 100.0f, 1e4f}, Shape{4}));
    Var y = sigmoid(x);
    require_close(y.value(), {0.0, std::exp(-100.0), 1.0, 1.0}, 1e-12);
    tape.backward(sum(y));
    require_close(x.grad(), {0.0, 0.0, 0.0, 0.0}, 1e-12);
    require_close(softplus(x).value(), {0.0, std::exp(-100.0), 100.0, 1e4}, 1e-12);
    // no threshold: log(1 + e^(x)) computed without overflow
    require_close(softplus(x, 1.0, 1e30).value(), {0.0, std::exp(-100.0), 100.0, 1e4}, 1e-12);
}

namespace {

// An f32 op computed in double and rounded once to float (Note [Vector math]): each element of
// `op` over `xs` and 100000 uniform values in [-30, 30] is `reference` (in double) rounded to
// float, or one ulp from it at a near-halfway case; the contiguous (vectorised) path, a strided
// view and another thread count give the same bits. Returns the contiguous path's values, in
// the order of `xs` first.
std::vector<double> check_rounded_once(Var (*op)(Var), double (*reference)(double), std::vector<float> xs) {
    Generator gen(11);
    Tensor spread = Tensor::empty(Shape{100000}, DType::f32);
    gen.fill_uniform(spread, -30.0, 30.0);
    for (double v : spread.to_doubles()) xs.push_back(static_cast<float>(v));
    const std::int64_t n = static_cast<std::int64_t>(xs.size());
    Tensor x = Tensor::from(xs, Shape{n});
    Tape tape;
    const std::vector<double> got = op(tape.input(x)).value().to_doubles();
    std::int64_t far = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const float want = static_cast<float>(reference(xs[static_cast<std::size_t>(i)]));
        const float g = static_cast<float>(got[static_cast<std::size_t>(i)]);
        const bool same = g == want || (std::isnan(g) && std::isnan(want));
        if (!same && g != std::nextafter(want, 0.0f) && g != std::nextafter(want, 2 * want)) {
            // the first few, with their values, shown with the check below
            if (++far <= 3) UNSCOPED_INFO("x = " << xs[static_cast<std::size_t>(i)] << ": got " << g << ", want " << want);
        }
    }
    CHECK(far == 0);
    Tensor two = Tensor::empty(Shape{n, 2}, DType::f32);
    two.select(1, 0).copy_from(x);
    two.select(1, 1).copy_from(x);
    const std::vector<double> strided = op(tape.input(two.select(1, 1))).value().to_doubles();
    const int threads = max_threads();
    set_num_threads(threads == 1 ? 2 : 1);
    const std::vector<double> other_threads = op(tape.input(x)).value().to_doubles();
    set_num_threads(threads);
    auto same_bits = [](const std::vector<double>& a, const std::vector<double>& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (std::bit_cast<std::uint64_t>(a[i]) != std::bit_cast<std::uint64_t>(b[i])) return false;
        }
        return true;
    };
    CHECK(same_bits(strided, got));
    CHECK(same_bits(other_threads, got));
    return got;
}

}  // namespace

TEST_CASE("sigmoid in f32 is the correctly rounded value, with the same bits on every path and thread count", "[unary]") {
    // Note [sigmoid in f32]: 0, +-inf, NaN, values past the clamp and ones whose sigmoid is a
    // float denormal included
    std::vector<float> xs = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, 0.5f, -0.5f, 1.0f, -1.0f, 16.6f, 17.0f, -87.0f,
                             -88.7f, -100.0f, -103.0f, -104.0f, -110.0f, 88.7f, 700.0f, -700.0f, 701.0f, -701.0f,
                             1e4f, -1e4f, INFINITY, -INFINITY, 3.4e38f, -3.4e38f, std::nanf("")};
    auto sigmoid_of = [](double v) { return v >= 0 ? 1 / (1 + std::exp(-v)) : std::exp(v) / (1 + std::exp(v)); };
    const std::vector<double> got = check_rounded_once(&sigmoid, sigmoid_of, xs);
    CHECK(got[24] == 1.0);   // inf
    CHECK(got[25] == 0.0);   // -inf
    CHECK(std::isnan(got[28]));
    Tape tape;
    Tensor with_nan = Tensor::from(std::vector<float>{0.5f, std::nanf(""), -2.0f}, Shape{3});
    const std::vector<double> nan_out = sigmoid(tape.input(with_nan)).value().to_doubles();
    CHECK(std::isnan(nan_out[1]));
    CHECK(std::abs(nan_out[2] - 0.11920292202211755) < 1e-7);
}

TEST_CASE("exp in f32 is the correctly rounded value, overflows and underflows as expf, with the same bits on every path",
          "[unary]") {
    // Note [exp in f32]: around the overflow (log(FLT_MAX) = 88.7228) and the subnormal range
    // (e^-87.34 is FLT_MIN, e^-103.97 the smallest subnormal), past the clamp, signed zeros,
    // infinities and NaN
    std::vector<float> xs = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, 0.5f, -0.5f, 1.0f, -1.0f, 10.0f, 88.72f, 88.7228f,
                             88.73f, 89.0f, -87.33f, -87.34f, -90.0f, -100.0f, -103.9f, -103.97f, -104.0f, -110.0f,
                             700.0f, -700.0f, 701.0f, -701.0f, 1e4f, -1e4f, INFINITY, -INFINITY, std::nanf("")};
    const std::vector<double> got = check_rounded_once(&exp, [](double v) { return std::exp(v); }, xs);
    CHECK(got[0] == 1.0);
    CHECK(got[13] == INFINITY);     // 89: past FLT_MAX, as expf
    CHECK(got[21] == 0.0);          // -110: below the smallest subnormal
    CHECK(got[18] > 0.0);           // -103.9: a subnormal
    CHECK(got[28] == INFINITY);
    CHECK(got[29] == 0.0);
    CHECK(std::isnan(got[30]));
    // and glibc's expf agrees to an ulp everywhere on the way
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const float libm = std::exp(xs[i]), g = static_cast<float>(got[i]);
        if (std::isnan(libm)) continue;
        INFO("x = " << xs[i]);
        CHECK((g == libm || g == std::nextafter(libm, 0.0f) || g == std::nextafter(libm, INFINITY)));
    }
}

TEST_CASE("abs and relu send no gradient at exactly 0", "[unary]") {
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<double>{-1.0, 0.0, 2.0}, Shape{3}));
    tape.backward(sum(abs(x) + relu(x)));
    require_close(x.grad(), {-1.0, 0.0, 2.0});
}

TEST_CASE("NaN propagates through relu and abs, in f64 and in f32's vector loops (Note [NaN propagates])", "[unary][nan]") {
    const double nan = std::nan(""), inf = INFINITY;
    Tape tape;
    Var x = tape.leaf(Tensor::from(std::vector<double>{nan, 1.0, -1.0, inf, -inf, 0.0}, Shape{6}));
    Var r = relu(x);
    require_close(r.value(), {nan, 1, 0, inf, 0, 0});
    require_close(abs(x).value(), {nan, 1, 1, inf, inf, 0});
    // PyTorch's threshold_backward passes the gradient where not y <= 0, so at NaN too
    tape.backward(sum(r));
    require_close(x.grad(), {1, 1, 0, 1, 0, 0});
    // long enough for the vectorised body and its tail: NaN at every seventh element
    std::vector<float> values(45), expected(45);
    for (std::size_t i = 0; i < values.size(); ++i) {
        values[i] = i % 7 == 3 ? std::nanf("") : (i % 2 == 0 ? 1.0f : -1.0f) * static_cast<float>(i);
        expected[i] = i % 7 == 3 ? std::nanf("") : std::max(values[i], 0.0f);
    }
    Var xf = tape.input(Tensor::from(values, Shape{45}));
    require_close(relu(xf).value(), std::vector<double>(expected.begin(), expected.end()), 0.0);
}

TEST_CASE("unary errors", "[unary]") {
    Tape tape;
    Var x = tape.input(values_f64());
    Var labels = tape.input(Tensor::from(std::vector<std::int64_t>{1, 2}, Shape{2}));
    CHECK_THROWS_WITH(log(labels), "log: expected a floating tensor (f32 or f64), got i64");
    CHECK_THROWS_WITH(softplus(x, 0.0), "softplus: beta must not be zero (x [5])");
    const OpSchema& op = registry().get("gelu");
    CHECK(op.signature() == "gelu(x, approximate=\"none\")");
    require_close(op.call(Args({x, std::string("tanh")})).value(), gelu(x, true).value().to_doubles(), 0.0);
    CHECK_THROWS_WITH(op.call(Args({x, std::string("erf")})), "gelu: unknown approximate 'erf'; expected \"none\" or \"tanh\"");
}

}  // namespace wengert::test
