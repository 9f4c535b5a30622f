// conv2d and pooling: every case against a direct loop over the definition (kept here, in the
// tests only: values, dx, dw and db), f64 gradient checks for the registry sweep, results equal
// at 1 and 2 threads, and PyTorch's own numbers for the pools' ties, NaN and divisors.
#include <cmath>
#include <limits>

#include "cases.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

// The convolution's settings with its padding spelled out per side, for the direct loops.
struct Spec {
    std::int64_t sh = 1, sw = 1, top = 0, bottom = 0, left = 0, right = 0, dh = 1, dw = 1, groups = 1;
    bool relu = false;
    bool same = false;   // passed to conv2d as "same"; top..right must then be TensorFlow's split
};

Conv2dOptions options_of(const Spec& s) {
    Conv2dOptions o;
    o.stride_h = s.sh;
    o.stride_w = s.sw;
    o.padding = s.same ? Padding2d{true} : Padding2d{false, s.top, s.bottom, s.left, s.right};
    o.dilation_h = s.dh;
    o.dilation_w = s.dw;
    o.groups = s.groups;
    o.activation = s.relu ? Activation::relu : Activation::none;
    return o;
}

struct Direct {
    Shape y_shape;
    std::vector<double> y, dx, dw, db;
};

// y = act(conv(x, w) + b) by its definition, and, for the cotangent `g` of y, dx, dw and db.
Direct direct_conv(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Spec& s, const Tensor& gt) {
    const auto x = xt.to_doubles(), w = wt.to_doubles(), b = bt.defined() ? bt.to_doubles() : std::vector<double>{};
    const std::int64_t n = xt.shape()[0], h = xt.shape()[1], wd = xt.shape()[2], c = xt.shape()[3];
    const std::int64_t kh = wt.shape()[0], kw = wt.shape()[1], cg = wt.shape()[2], f = wt.shape()[3], fg = f / s.groups;
    const std::int64_t oh = (h + s.top + s.bottom - s.dh * (kh - 1) - 1) / s.sh + 1;
    const std::int64_t ow = (wd + s.left + s.right - s.dw * (kw - 1) - 1) / s.sw + 1;
    Direct d{Shape{n, oh, ow, f}, std::vector<double>(static_cast<std::size_t>(n * oh * ow * f), 0.0),
             std::vector<double>(x.size(), 0.0), std::vector<double>(w.size(), 0.0), std::vector<double>(static_cast<std::size_t>(f), 0.0)};
    auto xi = [&](std::int64_t a, std::int64_t i, std::int64_t j, std::int64_t ch) { return static_cast<std::size_t>(((a * h + i) * wd + j) * c + ch); };
    auto wi = [&](std::int64_t i, std::int64_t j, std::int64_t ch, std::int64_t k) { return static_cast<std::size_t>(((i * kw + j) * cg + ch) * f + k); };
    auto yi = [&](std::int64_t a, std::int64_t i, std::int64_t j, std::int64_t k) { return static_cast<std::size_t>(((a * oh + i) * ow + j) * f + k); };
    // visits every (output element, tap, input element) of the definition
    auto each = [&](auto&& visit) {
        for (std::int64_t a = 0; a < n; ++a)
            for (std::int64_t oy = 0; oy < oh; ++oy)
                for (std::int64_t ox = 0; ox < ow; ++ox)
                    for (std::int64_t k = 0; k < f; ++k)
                        for (std::int64_t i = 0; i < kh; ++i)
                            for (std::int64_t j = 0; j < kw; ++j)
                                for (std::int64_t ch = 0; ch < cg; ++ch) {
                                    std::int64_t u = oy * s.sh - s.top + i * s.dh, v = ox * s.sw - s.left + j * s.dw;
                                    if (u < 0 || u >= h || v < 0 || v >= wd) continue;
                                    visit(yi(a, oy, ox, k), xi(a, u, v, (k / fg) * cg + ch), wi(i, j, ch, k));
                                }
    };
    each([&](std::size_t yk, std::size_t xk, std::size_t wk) { d.y[yk] += x[xk] * w[wk]; });
    for (std::size_t e = 0; e < d.y.size(); ++e) {
        if (!b.empty()) d.y[e] += b[e % static_cast<std::size_t>(f)];
        if (s.relu) d.y[e] = std::max(d.y[e], 0.0);
    }
    std::vector<double> g = gt.to_doubles();
    for (std::size_t e = 0; e < g.size(); ++e) {
        if (s.relu && d.y[e] <= 0.0) g[e] = 0.0;
        d.db[e % static_cast<std::size_t>(f)] += g[e];
    }
    each([&](std::size_t yk, std::size_t xk, std::size_t wk) {
        d.dx[xk] += g[yk] * w[wk];
        d.dw[wk] += g[yk] * x[xk];
    });
    return d;
}

// conv2d's value and gradients for the cotangent g: y, dx, dw (and db).
std::vector<std::vector<double>> engine_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Spec& s, const Tensor& g) {
    Tape tape;
    Var xv = tape.leaf(x), wv = tape.leaf(w);
    std::optional<Var> bv;
    if (b.defined()) bv = tape.leaf(b);
    Var y = conv2d(xv, wv, bv, options_of(s));
    tape.backward(sum(y * tape.input(g)));
    std::vector<std::vector<double>> out{y.value().to_doubles(), xv.grad().to_doubles(), wv.grad().to_doubles()};
    if (bv) out.push_back(bv->grad().to_doubles());
    return out;
}

struct ConvCase {
    const char* label;
    Shape x, w;
    Spec spec;
    bool bias = true;
};

// Strides, padding of each kind, dilation, groups, depthwise, odd sizes, batch 1.
const std::vector<ConvCase>& conv_cases() {
    static const std::vector<ConvCase> cases = {
        {"3x3 valid", Shape{2, 5, 5, 3}, Shape{3, 3, 3, 4}, {}},
        {"relu fused", Shape{2, 5, 4, 2}, Shape{3, 3, 2, 3}, {.relu = true}},
        {"no bias", Shape{1, 4, 4, 2}, Shape{2, 2, 2, 3}, {}, false},
        {"stride (2, 1), \"same\", odd sizes", Shape{1, 7, 6, 2}, Shape{3, 2, 2, 3}, {.sh = 2, .top = 1, .bottom = 1, .right = 1, .same = true}},
        {"stride 3 with padding", Shape{2, 8, 7, 1}, Shape{3, 3, 1, 2}, {.sh = 3, .sw = 3, .top = 1, .bottom = 1, .left = 1, .right = 1}},
        {"explicit padding per side, dilation 2", Shape{2, 6, 7, 2}, Shape{2, 3, 2, 2}, {.top = 1, .bottom = 0, .left = 2, .right = 1, .dh = 2, .dw = 2}},
        {"padding larger than the span", Shape{1, 3, 3, 1}, Shape{2, 2, 1, 2}, {.top = 2, .bottom = 2, .left = 3, .right = 1}},
        {"groups 2", Shape{1, 5, 5, 4}, Shape{3, 3, 2, 6}, {.groups = 2}},
        {"depthwise, 2 filters per channel", Shape{2, 5, 6, 3}, Shape{3, 3, 1, 6}, {.top = 1, .bottom = 1, .left = 1, .right = 1, .groups = 3}},
        {"1x1 kernel, batch 1", Shape{1, 3, 5, 4}, Shape{1, 1, 4, 5}, {}},
    };
    return cases;
}

// A cotangent for y.
Tensor cotangent(const Shape& y, DType dtype) { return random_tensor(y, 99, -1.0, 1.0, dtype); }

Shape conv_shape(const ConvCase& c) {
    Tape tape;
    return conv2d(tape.input(random_tensor(c.x, 1)), tape.input(random_tensor(c.w, 2)), std::nullopt, options_of(c.spec)).shape();
}

}  // namespace

WG_CASES(conv_cases_sweep) {
    for (const ConvCase& c : conv_cases()) {
        Spec spec = c.spec;
        Tensor x = random_tensor(c.x, 1), w = random_tensor(c.w, 2), b = random_tensor(Shape{c.w[3]}, 3);
        if (c.bias) {
            cases.add_grad("conv2d", c.label, [spec](std::span<const Var> v) { return conv2d(v[0], v[1], v[2], options_of(spec)); }, {x, w, b});
        } else {
            cases.add_grad("conv2d", c.label, [spec](std::span<const Var> v) { return conv2d(v[0], v[1], std::nullopt, options_of(spec)); }, {x, w});
        }
    }
    cases.add_grad("conv2d", "non-contiguous x, only w and b need gradients",
                   [](std::span<const Var> v) { return conv2d(v[0], v[1], v[2], options_of({.sh = 2, .sw = 2})); },
                   {noncontiguous(random_tensor(Shape{2, 5, 5, 2}, 4)), random_tensor(Shape{3, 3, 2, 3}, 5), random_tensor(Shape{3}, 6)},
                   {false, true, true});

    Pool2dOptions overlapping;
    overlapping.kernel_h = 3;
    overlapping.kernel_w = 2;
    overlapping.stride_h = 2;
    overlapping.stride_w = 1;
    overlapping.padding = {false, 1, 1, 1, 0};
    Tensor img = spread_tensor(Shape{2, 5, 4, 3}, 7);
    cases.add_grad("max_pool2d", "2x2", [](std::span<const Var> v) { return max_pool2d(v[0]); }, {img});
    cases.add_grad("max_pool2d", "overlapping windows with padding", [overlapping](std::span<const Var> v) { return max_pool2d(v[0], overlapping); }, {img});
    Pool2dOptions ceil = overlapping;
    ceil.ceil_mode = true;
    cases.add_grad("avg_pool2d", "2x2", [](std::span<const Var> v) { return avg_pool2d(v[0]); }, {img});
    cases.add_grad("avg_pool2d", "overlapping, padded, ceil_mode", [ceil](std::span<const Var> v) { return avg_pool2d(v[0], ceil); }, {img});
    Pool2dOptions uncounted = ceil;
    uncounted.count_include_pad = false;
    cases.add_grad("avg_pool2d", "count_include_pad = false", [uncounted](std::span<const Var> v) { return avg_pool2d(v[0], uncounted); }, {img});
    cases.add_grad("global_avg_pool2d", "(2, 5, 4, 3)", [](std::span<const Var> v) { return global_avg_pool2d(v[0]); }, {img});
}

TEST_CASE("conv2d equals the direct loop over its definition: values, dx, dw and db", "[conv]") {
    for (DType dtype : {DType::f64, DType::f32}) {
        for (const ConvCase& c : conv_cases()) {
            INFO(dtype_name(dtype) << " " << c.label);
            Tensor x = random_tensor(c.x, 1, -1.0, 1.0, dtype), w = random_tensor(c.w, 2, -1.0, 1.0, dtype);
            Tensor b = c.bias ? random_tensor(Shape{c.w[3]}, 3, -1.0, 1.0, dtype) : Tensor();
            Shape y_shape = conv_shape(c);
            Tensor g = cotangent(y_shape, dtype);
            Direct d = direct_conv(x, w, b, c.spec, g);
            REQUIRE(d.y_shape == y_shape);
            auto got = engine_conv(x, w, b, c.spec, g);
            double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
            require_close(Tensor::from_doubles(got[0], y_shape, DType::f64), d.y, tol);
            require_close(Tensor::from_doubles(got[1], c.x, DType::f64), d.dx, tol);
            require_close(Tensor::from_doubles(got[2], c.w, DType::f64), d.dw, tol);
            if (c.bias) require_close(Tensor::from_doubles(got[3], Shape{c.w[3]}, DType::f64), d.db, tol);
        }
    }
}

TEST_CASE("conv2d's shapes: valid, same, strides and the keras-io convnet's", "[conv]") {
    Tape tape;
    auto shape_of = [&](Shape x, Shape w, Conv2dOptions o) { return conv2d(tape.input(Tensor::zeros(x)), tape.input(Tensor::zeros(w)), std::nullopt, o).shape(); };
    CHECK(shape_of({2, 28, 28, 1}, {3, 3, 1, 32}, {}) == Shape{2, 26, 26, 32});
    CHECK(shape_of({2, 13, 13, 32}, {3, 3, 32, 64}, {}) == Shape{2, 11, 11, 64});
    Conv2dOptions same;
    same.padding = {true};
    same.stride_h = same.stride_w = 2;
    CHECK(shape_of({1, 7, 8, 1}, {3, 3, 1, 1}, same) == Shape{1, 4, 4, 1});
    Pool2dOptions two;
    CHECK(max_pool2d(tape.input(Tensor::zeros(Shape{2, 26, 26, 32})), two).shape() == Shape{2, 13, 13, 32});
    CHECK(max_pool2d(tape.input(Tensor::zeros(Shape{2, 11, 11, 64})), two).shape() == Shape{2, 5, 5, 64});
}

TEST_CASE("conv2d's shape errors name the rule and every operand", "[conv]") {
    Tape tape;
    auto x = tape.input(Tensor::zeros(Shape{2, 5, 5, 3}));
    auto message = [&](Shape w, Conv2dOptions o) -> std::string {
        try {
            conv2d(x, tape.input(Tensor::zeros(w)), std::nullopt, o);
        } catch (const ShapeError& e) {
            return e.what();
        }
        return "no error";
    };
    CHECK(message({7, 3, 3, 4}, {}) ==
          "conv2d: the kernel is larger than the input: its height spans 7 (kernel 7, dilation 1) where the padded input has 5: x [2, 5, 5, 3], "
          "w [7, 3, 3, 4], stride (1, 1), padding (0, 0, 0, 0), dilation (1, 1), groups 1");
    CHECK(message({3, 3, 2, 4}, {}) ==
          "conv2d: x has 3 channels but w takes 2 per group x 1 group = 2: x [2, 5, 5, 3], w [3, 3, 2, 4], stride (1, 1), padding (0, 0, 0, 0), "
          "dilation (1, 1), groups 1");
    Conv2dOptions grouped;
    grouped.groups = 2;
    CHECK(message({3, 3, 1, 4}, grouped) ==
          "conv2d: groups must divide the channels 3 and the filters 4: x [2, 5, 5, 3], w [3, 3, 1, 4], stride (1, 1), padding (0, 0, 0, 0), "
          "dilation (1, 1), groups 2");
}

TEST_CASE("conv2d and the pools give the same bits at 1 and 2 threads, on every kernel set", "[conv][threads]") {
    // large enough that the blocks of Note [Blocked im2col] and the pools' images run in parallel
    Tensor x = random_tensor(Shape{16, 13, 13, 32}, 1, -1.0, 1.0, DType::f32), w = random_tensor(Shape{3, 3, 32, 64}, 2, -1.0, 1.0, DType::f32);
    Tensor b = random_tensor(Shape{64}, 3, -1.0, 1.0, DType::f32);
    const int before = max_threads();
    auto run = [&](int threads) {
        set_num_threads(threads);
        Tape tape;
        Var xv = tape.leaf(x), wv = tape.leaf(w), bv = tape.leaf(b);
        Var y = max_pool2d(conv2d(xv, wv, bv, options_of({.relu = true})));
        tape.backward(sum(y * tape.input(cotangent(y.shape(), DType::f32))));
        return std::vector<std::vector<double>>{y.value().to_doubles(), xv.grad().to_doubles(), wv.grad().to_doubles(), bv.grad().to_doubles()};
    };
    for (const std::string& set : kern::gemm_kernel_sets()) {
        kern::set_gemm_kernels(set);
        INFO("kernels " << set << " (" << kern::gemm_kernels() << ")");
        auto one = run(1), two = run(2);
        CHECK(one == two);
    }
    kern::set_gemm_kernels(default_gemm_kernels());
    set_num_threads(before);
}

TEST_CASE("max_pool2d follows PyTorch: the first of tied values, the last NaN, no padding wins", "[conv][nan]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto pool = [](std::vector<double> values, Shape shape, Pool2dOptions o) {
        Tape tape;
        Var x = tape.leaf(Tensor::from_doubles(values, shape, DType::f64));
        Var y = max_pool2d(x, o);
        tape.backward(sum(y));
        return std::pair{y.value().to_doubles(), x.grad().to_doubles()};
    };
    // torch.nn.functional.max_pool2d(x, 2) on one channel, and x.grad after y.sum().backward()
    auto [tied, tied_grad] = pool({3, 3, 1, 3}, Shape{1, 2, 2, 1}, {});
    CHECK(tied == std::vector<double>{3});
    CHECK(tied_grad == std::vector<double>{1, 0, 0, 0});
    auto [with_nan, nan_grad] = pool({nan, 1, nan, 2}, Shape{1, 2, 2, 1}, {});
    CHECK(std::isnan(with_nan[0]));
    CHECK(nan_grad == std::vector<double>{0, 0, 1, 0});
    // all-negative values beside the padding: padding is not a value
    Pool2dOptions padded;
    padded.padding = {false, 1, 1, 1, 1};
    auto [negative, negative_grad] = pool({-5, -6, -7, -8}, Shape{1, 2, 2, 1}, padded);
    CHECK(negative == std::vector<double>{-5, -6, -7, -8});
    // torch max_pool2d(arange(25).reshape(1, 1, 5, 5), 2, stride=2, ceil_mode=True)
    std::vector<double> ramp;
    for (int i = 0; i < 25; ++i) ramp.push_back(i);
    Pool2dOptions ceil;
    ceil.ceil_mode = true;
    CHECK(pool(ramp, Shape{1, 5, 5, 1}, ceil).first == std::vector<double>{6, 8, 9, 16, 18, 19, 21, 23, 24});
}

TEST_CASE("avg_pool2d divides as PyTorch does, with and without the padding counted", "[conv]") {
    std::vector<double> ramp;
    for (int i = 0; i < 25; ++i) ramp.push_back(i);
    Tape tape;
    Var x = tape.input(Tensor::from_doubles(ramp, Shape{1, 5, 5, 1}, DType::f64));
    Pool2dOptions o;
    o.kernel_h = o.kernel_w = 3;
    o.stride_h = o.stride_w = 2;
    o.padding = {false, 1, 1, 1, 1};
    o.ceil_mode = true;
    // torch.nn.functional.avg_pool2d(arange(25.).reshape(1, 1, 5, 5), 3, stride=2, padding=1, ceil_mode=True)
    require_close(avg_pool2d(x, o).value(), {12.0 / 9, 3, 24.0 / 9, 7, 12, 9, 8, 13, 84.0 / 9}, 1e-12);
    o.count_include_pad = false;
    require_close(avg_pool2d(x, o).value(), {3, 4.5, 6, 10.5, 12, 13.5, 18, 19.5, 21}, 1e-12);
}

TEST_CASE("conv2d, max_pool2d and flatten take the keras-io convnet's image to 1600 features", "[conv]") {
    Tape tape;
    Var x = tape.input(Tensor::zeros(Shape{1, 28, 28, 1}));
    Var h = max_pool2d(conv2d(x, tape.input(Tensor::zeros(Shape{3, 3, 1, 32})), tape.input(Tensor::zeros(Shape{32})), options_of({.relu = true})));
    h = max_pool2d(conv2d(h, tape.input(Tensor::zeros(Shape{3, 3, 32, 64})), tape.input(Tensor::zeros(Shape{64})), options_of({.relu = true})));
    CHECK(flatten(h).shape() == Shape{1, 1600});
}

}  // namespace wengert::test
