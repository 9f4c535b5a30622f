// Losses: gradient checks, PyTorch's values (torch 1.13, torch.nn.functional, f64), and the
// fused cross-entropy against its unfused composition.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cases.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

Tensor labels(std::vector<std::int64_t> values, const Shape& shape) { return Tensor::from(values, shape); }

Tensor f64(std::vector<double> values, const Shape& shape) { return Tensor::from(values, shape); }

// The smoothed target PyTorch uses: (1 - eps) one_hot(labels) + eps / C, rows of C classes.
Tensor smoothed_one_hot(const std::vector<std::int64_t>& ys, std::int64_t n_classes, double eps) {
    std::vector<double> q;
    for (auto y : ys) {
        for (std::int64_t c = 0; c < n_classes; ++c) q.push_back((c == y ? 1 - eps : 0.0) + eps / static_cast<double>(n_classes));
    }
    return f64(q, Shape{static_cast<std::int64_t>(ys.size()), n_classes});
}

// cross-entropy from existing ops: -mean(sum(q * (z - logsumexp(z)), -1))
Var unfused_cross_entropy(Var logits, Var q) {
    Var log_probs = sub(logits, logsumexp(logits, {-1}, true));
    return mean(neg(sum(mul(q, log_probs), {-1})));
}

}  // namespace

WG_CASES(loss_cases) {
    auto z = random_tensor(Shape{4, 5}, 21, -2.0, 2.0);
    auto y = labels({0, 4, 2, 2}, Shape{4});
    cases.add_grad("cross_entropy", "class indices, mean", [y](auto x) {
        return cross_entropy(x[0], Tape::current().input(y));
    }, {z});
    cases.add_grad("cross_entropy", "class indices, label smoothing 0.2, sum", [y](auto x) {
        return cross_entropy(x[0], Tape::current().input(y), 0.2, Reduction::sum);
    }, {z});
    cases.add_grad("cross_entropy", "class indices, none, non-contiguous logits", [y](auto x) {
        return cross_entropy(x[0], Tape::current().input(y), 0.0, Reduction::none);
    }, {noncontiguous(z)});
    cases.add_grad("cross_entropy", "rank 3 logits (2, 3, 4), labels (2, 3)", [](auto x) {
        return cross_entropy(x[0], Tape::current().input(labels({3, 0, 1, 1, 2, 3}, Shape{2, 3})), 0.1);
    }, {random_tensor(Shape{2, 3, 4}, 22, -2.0, 2.0)});
    cases.add_grad("cross_entropy", "rank 1 logits, scalar label", [](auto x) {
        return cross_entropy(x[0], Tape::current().input(labels({1}, Shape{})));
    }, {random_tensor(Shape{3}, 23)});
    cases.add_grad("cross_entropy", "logits around +-300", [y](auto x) {
        return cross_entropy(x[0] * 150.0, Tape::current().input(y), 0.1);
    }, {z});
    auto probs = random_tensor(Shape{4, 5}, 24, 0.0, 0.4);
    cases.add_grad("cross_entropy", "probability target, gradient to both, smoothing 0.3", [](auto x) {
        return cross_entropy(x[0], x[1], 0.3);
    }, {z, probs});
    cases.add_grad("cross_entropy", "probability target, none", [](auto x) {
        return cross_entropy(x[0], x[1], 0.0, Reduction::none);
    }, {z, probs});

    auto log_probs = random_tensor(Shape{4, 5}, 25, -3.0, 0.0);
    cases.add_grad("nll", "mean", [y](auto x) { return nll(x[0], Tape::current().input(y)); }, {log_probs});
    cases.add_grad("nll", "none, non-contiguous", [y](auto x) {
        return nll(x[0], Tape::current().input(y), Reduction::none);
    }, {noncontiguous(log_probs)});

    auto p = random_tensor(Shape{3, 4}, 26, 0.1, 0.9);
    auto target = random_tensor(Shape{3, 4}, 27, 0.0, 1.0);
    cases.add_grad("bce", "mean, gradient to both", [](auto x) { return bce(x[0], x[1]); }, {p, target});
    cases.add_grad("bce", "none, non-contiguous", [](auto x) { return bce(x[0], x[1], Reduction::none); },
                   {noncontiguous(p), target});
    auto logits = random_tensor(Shape{3, 4}, 28, -4.0, 4.0);
    cases.add_grad("bce_with_logits", "sum, gradient to both", [](auto x) {
        return bce_with_logits(x[0], x[1], Reduction::sum);
    }, {logits, target});
    cases.add_grad("bce_with_logits", "logits around +-40", [](auto x) {
        return bce_with_logits(x[0] * 10.0, x[1]);
    }, {logits, target});
    cases.add_grad("mse", "mean, gradient to both", [](auto x) { return mse(x[0], x[1]); }, {p, target});
    cases.add_grad("mse", "none, non-contiguous", [](auto x) { return mse(x[0], x[1], Reduction::none); },
                   {noncontiguous(p), target});
    cases.add_forward("accuracy", "rows whose argmax is the label, first on ties, any leading shape, no gradient", [] {
        Tape tape;
        // argmax per row: 1, 0 (a tie of 0 and 2), 2, 1
        Var logits = tape.leaf(Tensor::from(std::vector<double>{0, 3, 1, 5, 2, 5, -1, 0, 4, 1, 2, 0}, Shape{4, 3}));
        Var hits = accuracy(logits, tape.input(labels({1, 2, 2, 0}, Shape{4})));
        CHECK(hits.shape() == Shape{});
        CHECK(hits.dtype() == DType::f32);
        CHECK_FALSE(hits.requires_grad());
        require_close(hits.value(), {0.5});
        Var sequences = tape.input(Tensor::from(std::vector<double>{0, 3, 1, 5, 2, 5, -1, 0, 4, 1, 2, 0}, Shape{2, 2, 3}));
        require_close(accuracy(sequences, tape.input(labels({1, 0, 2, 1}, Shape{2, 2})), DType::f64).value(), {1.0});
        CHECK_THROWS_WITH(accuracy(logits, tape.input(labels({1, 2, 2, 0}, Shape{4, 1}))),
                          "accuracy: expects logits (..., C) and i64 labels (...) of the same leading shape, got f64 [4, 3] "
                          "and i64 [4, 1]");
    });
}

TEST_CASE("cross_entropy matches PyTorch with class indices and label smoothing", "[loss]") {
    Tape tape;
    Var z = tape.leaf(f64({1, 2, 3, 1, -1, 0.5}, Shape{2, 3}));
    Var y = tape.input(labels({2, 0}, Shape{2}));
    require_close(cross_entropy(z, y, 0.0, Reduction::none).value(), {0.4076059644443804, 0.5549569196419907}, 1e-12);
    require_close(cross_entropy(z, y).value(), {0.48128144204318557}, 1e-12);
    require_close(cross_entropy(z, y, 0.0, Reduction::sum).value(), {0.9625628840863711}, 1e-12);
    require_close(cross_entropy(z, y, 0.1, Reduction::none).value(), {0.5076059644443804, 0.638290252975324}, 1e-12);
    require_close(cross_entropy(z, y, 0.1, Reduction::sum).value(), {1.1458962174197045}, 1e-12);
    Var loss = cross_entropy(z, y, 0.1);
    require_close(loss.value(), {0.5729481087098522}, 1e-12);
    tape.backward(loss);
    require_close(z.grad(), {0.02834861991852355, 0.10569756886073216, -0.13404618877925578, -0.1796181701828194,
                             0.02218112290761862, 0.15743704727520075}, 1e-12);
}

TEST_CASE("cross_entropy matches PyTorch with probability targets", "[loss]") {
    Tape tape;
    Var z = tape.leaf(f64({1, 2, 3, 1, -1, 0.5}, Shape{2, 3}));
    Var t = tape.leaf(f64({0.2, 0.3, 0.5, 1, 0, 0}, Shape{2, 3}));
    require_close(cross_entropy(z, t, 0.0, Reduction::none).value(), {1.1076059644443805, 0.5549569196419907}, 1e-12);
    Var loss = cross_entropy(z, t, 0.25, Reduction::sum);
    require_close(loss.value(), {1.1826059644443805 + 0.763290252975324}, 1e-12);
    tape.backward(loss);
    require_close(z.grad(), {-0.1433027601629529, -0.06360486227853565, 0.20690762244148847, -0.2592363403656388,
                             -0.0056377541847627555, 0.2648740945504015}, 1e-12);
    require_close(t.grad(), {1.8057044733332854, 1.0557044733332852, 0.3057044733332853, 0.416217689731493,
                             1.916217689731493, 0.7912176897314931}, 1e-12);
}

TEST_CASE("fused cross_entropy equals the unfused composition in value and gradient", "[loss]") {
    const std::vector<std::int64_t> ys{3, 0, 4, 4, 1, 2};
    for (double eps : {0.0, 0.15}) {
        INFO("label smoothing " << eps);
        Tensor z = random_tensor(Shape{6, 5}, 31, -3.0, 3.0);
        Tape fused_tape;
        Var zf = fused_tape.leaf(z);
        Var fused = cross_entropy(zf, fused_tape.input(labels(ys, Shape{6})), eps);
        fused_tape.backward(fused);
        Tape unfused_tape;
        Var zu = unfused_tape.leaf(z);
        Var unfused = unfused_cross_entropy(zu, unfused_tape.input(smoothed_one_hot(ys, 5, eps)));
        unfused_tape.backward(unfused);
        require_close(fused.value(), unfused.value().to_doubles(), 1e-12);
        require_close(zf.grad(), zu.grad().to_doubles(), 1e-12);
    }
}

TEST_CASE("fused cross_entropy stays finite where exp overflows", "[loss]") {
    // f32 logits of +-1000: exp(1000) is inf in f32, so log(sum(exp(z))) computed naively is too.
    Tape tape;
    Var z = tape.leaf(Tensor::from(std::vector<float>{1000, 0, -1000, 999}, Shape{1, 4}));
    Var loss = cross_entropy(z, tape.input(labels({3}, Shape{1})));
    tape.backward(loss);
    // lse = 1000 + log(1 + e^-1) (the other terms vanish); loss = lse - 999
    require_close(loss.value(), {1.0 + std::log1p(std::exp(-1.0))}, 1e-5);
    const double s0 = 1.0 / (1.0 + std::exp(-1.0));
    require_close(z.grad(), {s0, 0, 0, (1 - s0) - 1}, 1e-4);
}

TEST_CASE("cross_entropy gives the same bits at any thread count", "[loss]") {
    Tensor z = random_tensor(Shape{2048, 40}, 32, -5.0, 5.0, DType::f32);
    std::vector<std::int64_t> ys;
    for (std::int64_t i = 0; i < 2048; ++i) ys.push_back((i * 7) % 40);
    auto run = [&](int threads) {
        set_num_threads(threads);
        Tape tape;
        Var zv = tape.leaf(z);
        Var loss = cross_entropy(zv, tape.input(labels(ys, Shape{2048})), 0.1);
        tape.backward(loss);
        return std::pair{loss.value().to_doubles(), zv.grad().to_doubles()};
    };
    int before = max_threads();
    auto one = run(1);
    auto two = run(2);
    set_num_threads(before);
    CHECK(one.first == two.first);
    CHECK(one.second == two.second);
}

TEST_CASE("nll matches PyTorch", "[loss]") {
    Tape tape;
    Var lp = tape.input(f64({-0.5, -1.2, -2, -0.1, -3, -4}, Shape{2, 3}));
    Var y = tape.input(labels({1, 0}, Shape{2}));
    require_close(nll(lp, y, Reduction::none).value(), {1.2, 0.1}, 1e-12);
    require_close(nll(lp, y).value(), {0.65}, 1e-12);
}

TEST_CASE("bce: SPEC values, clamped logs and PyTorch's numbers", "[loss]") {
    Tape tape;
    // SPEC.md section 6: BCE(0.5, any target) = ln 2 per element.
    Var half = tape.input(Tensor::full(Shape{3}, 0.5, DType::f64));
    Var any = tape.input(f64({0, 0.3, 1}, Shape{3}));
    require_close(bce(half, any, Reduction::none).value(), {0.693147, 0.693147, 0.693147}, 1e-6);
    require_close(bce(half, any, Reduction::sum).value(), {3 * 0.693147180559945}, 1e-12);
    // p = 0 and p = 1: log terms clamped at -100, so finite.
    Var p = tape.leaf(f64({0.5, 0, 1, 0.2, 0.9}, Shape{5}));
    Var t = tape.input(f64({0.3, 1, 0, 1, 0.25}, Shape{5}));
    Var losses = bce(p, t, Reduction::none);
    require_close(losses.value(), {0.6931471805599453, 100, 100, 1.6094379124341003, 1.753278948659991}, 1e-12);
    tape.backward(sum(losses));
    auto g = p.grad().to_doubles();
    CHECK(std::abs(g[0] - 0.8) < 1e-12);
    CHECK(std::isfinite(g[1]));
    CHECK(std::isfinite(g[2]));
    CHECK(std::abs(g[3] + 5.0) < 1e-12);
    CHECK(std::abs(g[4] - 7.222222222222224) < 1e-12);
    Var f32_edges = tape.input(Tensor::from(std::vector<float>{0, 1}, Shape{2}));
    Var f32_targets = tape.input(Tensor::from(std::vector<float>{1, 0}, Shape{2}));
    require_close(bce(f32_edges, f32_targets, Reduction::none).value(), {100, 100}, 1e-4);
}

TEST_CASE("bce in f32: its logarithms round as the f64 ones do, on every path and thread count", "[loss]") {
    // Note [bce's logarithms]: f32 takes log p and log(1 - p) from a polynomial in double. Each
    // loss is within a float rounding or two of the f64 formula (std::log, std::log1p), for p at
    // 0, -0, 1, denormal, tiny, near 1, and spread over (0, 1); NaN stays NaN; the contiguous
    // (vectorised) path and the strided one give the same bits, at 1 thread and at several.
    std::vector<float> ps = {0.0f, -0.0f, 1.0f, 1e-45f, 1e-38f, 1e-30f, 1e-12f, 1e-7f, 0.5f, 0.70710677f, 0.70710683f,
                             1.0f - 6e-8f, 1.0f - 1e-6f, 0.999f, 0.25f, 0.75f, 1.0f / 3};
    Generator gen(7);
    Tensor spread = Tensor::empty(Shape{100000}, DType::f32);
    gen.fill_uniform(spread, 0.0, 1.0);
    for (float v : spread.to_doubles()) ps.push_back(v);
    const std::int64_t n = static_cast<std::int64_t>(ps.size());
    std::vector<float> ts(ps.size());
    for (std::size_t i = 0; i < ts.size(); ++i) ts[i] = static_cast<float>(i % 7) / 6.0f;
    Tensor p = Tensor::from(ps, Shape{n}), t = Tensor::from(ts, Shape{n});
    Tape tape;
    const std::vector<double> got = bce(tape.input(p), tape.input(t), Reduction::none).value().to_doubles();
    std::int64_t far = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const double pd = ps[static_cast<std::size_t>(i)], td = ts[static_cast<std::size_t>(i)];
        const double want = (td - 1) * std::max(std::log1p(-pd), -100.0) - td * std::max(std::log(pd), -100.0);
        if (std::abs(got[static_cast<std::size_t>(i)] - want) > 4e-7 * std::max(1.0, std::abs(want))) ++far;
    }
    CHECK(far == 0);
    // a strided view of the same values runs the scalar loop; 1 thread against 2
    Tensor p2 = Tensor::empty(Shape{n, 2}, DType::f32), t2 = Tensor::empty(Shape{n, 2}, DType::f32);
    p2.select(1, 0).copy_from(p);
    p2.select(1, 1).copy_from(p);
    t2.select(1, 0).copy_from(t);
    t2.select(1, 1).copy_from(t);
    const std::vector<double> strided = bce(tape.input(p2.select(1, 0)), tape.input(t2.select(1, 0)), Reduction::none).value().to_doubles();
    const int threads = max_threads();
    set_num_threads(threads == 1 ? 2 : 1);
    const std::vector<double> other_threads = bce(tape.input(p), tape.input(t), Reduction::none).value().to_doubles();
    set_num_threads(threads);
    CHECK(strided == got);
    CHECK(other_threads == got);
    Tensor nan = Tensor::from(std::vector<float>{0.5f, std::nanf(""), 0.25f}, Shape{3});
    const std::vector<double> with_nan =
        bce(tape.input(nan), tape.input(Tensor::from(std::vector<float>{1, 1, 0}, Shape{3})), Reduction::none).value().to_doubles();
    CHECK(std::isnan(with_nan[1]));
    CHECK(std::abs(with_nan[0] - 0.6931471805599453) < 1e-6);
}

TEST_CASE("bce in f32 finds a probability outside [0, 1] in the same pass, anywhere in the tensor", "[loss]") {
    // the contiguous f32 kernel checks the range as it goes, chunk by chunk over threads; the
    // message gives the whole tensor's range, as the f64 and strided paths do
    const std::int64_t n = 200000;   // several chunks at any thread count
    Tensor t = Tensor::zeros(Shape{n}, DType::f32);
    for (std::int64_t at : {std::int64_t{0}, n / 2 + 3, n - 1}) {
        for (float bad : {-0.25f, 1.5f}) {
            INFO("p = " << bad << " at " << at);
            std::vector<float> ps(static_cast<std::size_t>(n), 0.5f);
            ps[static_cast<std::size_t>(at)] = bad;
            Tensor p = Tensor::from(ps, Shape{n});
            Tape tape;
            const std::string range = bad < 0 ? "[-0.25, 0.5]" : "[0.5, 1.5]";
            CHECK_THROWS_WITH(bce(tape.input(p), tape.input(t)),
                              "bce: probabilities must lie in [0, 1]; probs [200000] has values in " + range);
            Tensor strided = Tensor::empty(Shape{n, 2}, DType::f32);
            strided.select(1, 0).copy_from(p);
            strided.select(1, 1).copy_from(p);
            CHECK_THROWS_WITH(bce(tape.input(strided.select(1, 1)), tape.input(t)),
                              "bce: probabilities must lie in [0, 1]; probs [200000] has values in " + range);
        }
    }
    // -0 and both ends are inside
    Tape tape;
    Tensor edges = Tensor::from(std::vector<float>{-0.0f, 0.0f, 1.0f, 0.5f}, Shape{4});
    CHECK_NOTHROW(bce(tape.input(edges), tape.input(Tensor::zeros(Shape{4}, DType::f32))));
}

TEST_CASE("bce_with_logits and mse match PyTorch", "[loss]") {
    Tape tape;
    Var x = tape.input(f64({-30, -1, 0, 2, 40}, Shape{5}));
    Var t = tape.input(f64({0.3, 1, 0, 1, 0.25}, Shape{5}));
    require_close(bce_with_logits(x, t, Reduction::none).value(),
                  {9.000000000000094, 1.3132616875182228, 0.6931471805599453, 0.1269280110429726, 30.0}, 1e-12);
    Var p = tape.input(f64({0.5, 0, 1, 0.2, 0.9}, Shape{5}));
    require_close(mse(p, t).value(), {0.6205}, 1e-12);
    require_close(mse(p, t, Reduction::sum).value(), {3.1025}, 1e-12);
}

TEST_CASE("loss errors name the operands", "[loss]") {
    Tape tape;
    Var z = tape.input(f64({1, 2, 3, 4, 5, 6}, Shape{2, 3}));
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(labels({0, 3}, Shape{2}))),
                      "cross_entropy: label 3 at index 1 is out of range for 3 classes (logits [2, 3], target [2])");
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(labels({-1, 0}, Shape{2}))),
                      "cross_entropy: label -1 at index 0 is out of range for 3 classes (logits [2, 3], target [2])");
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(labels({0, 1, 2}, Shape{3}))),
                      "cross_entropy: class indices must have the logits shape without the class axis: logits [2, 3], "
                      "target [3]");
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(Tensor::zeros(Shape{3, 2}, DType::f64))),
                      "cross_entropy: target must be i64 class indices of shape [2] or f64 probabilities of shape [2, 3]; "
                      "got f64 [3, 2]");
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(labels({0, 1}, Shape{2})), 1.5),
                      "cross_entropy: label_smoothing must be in [0, 1], got 1.5");
    CHECK_THROWS_WITH(nll(z, tape.input(labels({5, 0}, Shape{2}))),
                      "nll: label 5 at index 0 is out of range for 3 classes (log_probs [2, 3], target [2])");
    CHECK_THROWS_WITH(nll(z, tape.input(f64({0, 1}, Shape{2}))), "nll: labels must be i64 class indices, got f64 [2]");
    CHECK_THROWS_WITH(bce(tape.input(f64({0.5, 1.5}, Shape{2})), tape.input(f64({0, 1}, Shape{2}))),
                      "bce: probabilities must lie in [0, 1]; probs [2] has values in [0.5, 1.5]");
    CHECK_THROWS_WITH(mse(z, tape.input(Tensor::zeros(Shape{3}, DType::f64))),
                      "mse: prediction and target must have the same shape and floating dtype: prediction f64 [2, 3], "
                      "target f64 [3]");
    CHECK_THROWS_WITH(cross_entropy(z, tape.input(labels({0, 1}, Shape{2})), 0.0, parse_reduction("avg", "cross_entropy")),
                      "cross_entropy: unknown reduction 'avg'; expected mean, sum or none");
}

}  // namespace wengert::test
