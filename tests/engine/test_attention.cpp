// pure_attention: SPEC.md's numbers, the head split, the fused kernel against the composition
// of primitive ops it replaces (values and gradients, f64, 1e-10), modes, thread counts and
// errors; the distance penalties against the seed's band_part construction and SPEC.md
// section 3's identity.
#include <fmt/format.h>

#include <cmath>

#include "ops/cases.hpp"
#include "wengert/threading.hpp"

using namespace wengert;
using namespace wengert::test;

namespace {

Tensor f64(std::vector<double> values, const Shape& shape) { return Tensor::from(values, shape); }
Tensor u8(std::vector<std::uint8_t> values, const Shape& shape) { return Tensor::from(values, shape); }

// The composition pure_attention replaces, op by op (SPEC.md section 1).
Var unfused_attention(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double p,
                      std::optional<Var> bias) {
    const std::int64_t batch = q.size(0), lq = q.size(1), d = q.size(2), d_head = d / n_heads;
    auto split_heads = [&](Var x) { return permute(reshape(x, Shape{batch, x.size(1), n_heads, d_head}), {0, 2, 1, 3}); };
    Var logits = matmul(split_heads(q), transpose(split_heads(k), -2, -1)) / std::sqrt(static_cast<double>(d_head));
    if (bias) logits = logits + *bias;
    if (mask) logits = where(*mask, logits, full(Shape{}, -1e9, q.dtype()));
    Var weights = dropout(softmax(logits, -1), p);
    return reshape(permute(matmul(weights, split_heads(v)), {0, 2, 1, 3}), Shape{batch, lq, d});
}

enum class MaskKind { none, padding, per_query, causal };
enum class BiasKind { none, learned, alibi };

const char* mask_name(MaskKind m) {
    switch (m) {
        case MaskKind::none: return "no mask";
        case MaskKind::padding: return "padding mask (B, 1, 1, Lk)";
        case MaskKind::per_query: return "per-query mask (B, 1, Lq, Lk) with a fully masked row";
        case MaskKind::causal: return "causal mask (Lq, Lk)";
    }
    return "?";
}

const char* bias_name(BiasKind b) {
    switch (b) {
        case BiasKind::none: return "no bias";
        case BiasKind::learned: return "learned bias (Lq, Lk)";
        case BiasKind::alibi: return "alibi bias (h, Lq, Lk)";
    }
    return "?";
}

Tensor make_mask(MaskKind kind, std::int64_t batch, std::int64_t lq, std::int64_t lk) {
    std::vector<std::uint8_t> keep;
    switch (kind) {
        case MaskKind::none: return Tensor();
        case MaskKind::padding:   // batch b drops its last b + 1 keys
            for (std::int64_t b = 0; b < batch; ++b) {
                for (std::int64_t j = 0; j < lk; ++j) keep.push_back(j < lk - 1 - b % (lk - 1) ? 1 : 0);
            }
            return u8(keep, Shape{batch, 1, 1, lk});
        case MaskKind::per_query:   // a checkerboard, and the last query of the last batch sees nothing
            for (std::int64_t b = 0; b < batch; ++b) {
                for (std::int64_t i = 0; i < lq; ++i) {
                    for (std::int64_t j = 0; j < lk; ++j) {
                        keep.push_back(b == batch - 1 && i == lq - 1 ? 0 : (i + j + b) % 2 == 0);
                    }
                }
            }
            return u8(keep, Shape{batch, 1, lq, lk});
        case MaskKind::causal:
            for (std::int64_t i = 0; i < lq; ++i) {
                for (std::int64_t j = 0; j < lk; ++j) keep.push_back(j <= i ? 1 : 0);
            }
            return u8(keep, Shape{lq, lk});
    }
    return Tensor();
}

struct Run {
    Tensor y, dq, dk, dv, dbias;
};

struct Problem {
    Tensor q, k, v, mask, bias, cotangent;
    std::int64_t n_heads;
    double dropout;
    BiasKind bias_kind;

    // One forward and backward, fused or through the composition, from the same seed.
    Run run(bool fused) const {
        Tape tape;
        Var qv = tape.leaf(q), kv = tape.leaf(k), vv = tape.leaf(v);
        std::optional<Var> mv = mask.defined() ? std::optional(tape.input(mask)) : std::nullopt;
        std::optional<Var> bv;
        if (bias_kind == BiasKind::learned) bv = tape.leaf(bias);
        if (bias_kind == BiasKind::alibi) bv = alibi_bias(n_heads, q.size(1), k.size(1), false, q.dtype());
        manual_seed(31);
        Var y = fused ? pure_attention(qv, kv, vv, mv, n_heads, dropout, bv)
                      : unfused_attention(qv, kv, vv, mv, n_heads, dropout, bv);
        tape.backward(y, cotangent);
        return {y.value(), qv.grad(), kv.grad(), vv.grad(), bias_kind == BiasKind::learned ? bv->grad() : Tensor()};
    }
};

Problem make_problem(std::int64_t batch, std::int64_t n_heads, std::int64_t lq, std::int64_t lk, std::int64_t d,
                     MaskKind mask, double dropout, BiasKind bias, std::uint64_t seed) {
    return {random_tensor(Shape{batch, lq, d}, seed, -2.0, 2.0),
            random_tensor(Shape{batch, lk, d}, seed + 1, -2.0, 2.0),
            random_tensor(Shape{batch, lk, d}, seed + 2),
            make_mask(mask, batch, lq, lk),
            random_tensor(Shape{lq, lk}, seed + 3),
            random_tensor(Shape{batch, lq, d}, seed + 4),
            n_heads,
            dropout,
            bias};
}

void require_same(const Run& a, const Run& b, double tol) {
    const std::vector<std::pair<const char*, std::pair<Tensor, Tensor>>> pairs = {
        {"y", {a.y, b.y}}, {"dq", {a.dq, b.dq}}, {"dk", {a.dk, b.dk}}, {"dv", {a.dv, b.dv}}, {"dbias", {a.dbias, b.dbias}}};
    for (const auto& [name, t] : pairs) {
        INFO(name);
        REQUIRE(t.first.defined() == t.second.defined());
        if (t.first.defined()) require_close(t.first, t.second.to_doubles(), tol);
    }
}

}  // namespace

TEST_CASE("pure_attention reproduces SPEC.md's one-head example", "[attention]") {
    Tape tape;
    Var q = tape.input(f64({1, 0, 0, 1}, Shape{1, 2, 2}));
    Var v = tape.input(f64({1, 2, 3, 4}, Shape{1, 2, 2}));
    // with v = I the output is the weights
    require_close(pure_attention(q, q, q).value().slice(1, 0, 1), {0.669762, 0.330238});
    require_close(pure_attention(q, q, v).value().slice(1, 0, 1), {1.660477, 2.660477});
    Var first_key = tape.input(u8({1, 0}, Shape{1, 1, 1, 2}));
    require_close(pure_attention(q, q, v, first_key).value(), {1, 2, 1, 2});
    Var nothing = tape.input(u8({0, 0}, Shape{1, 1, 1, 2}));
    require_close(pure_attention(q, q, q, nothing).value(), {0.5, 0.5, 0.5, 0.5});
    require_close(pure_attention(q, q, v, nothing).value(), {2, 3, 2, 3});
}

TEST_CASE("pure_attention splits heads into contiguous feature blocks", "[attention]") {
    // head h of 2 owns features [2h, 2h + 2): the same as one-head attention on those columns
    Tape tape;
    Var q = tape.input(random_tensor(Shape{2, 3, 4}, 71, -2.0, 2.0));
    Var k = tape.input(random_tensor(Shape{2, 5, 4}, 72, -2.0, 2.0));
    Var v = tape.input(random_tensor(Shape{2, 5, 4}, 73));
    Tensor y = pure_attention(q, k, v, std::nullopt, 2).value();
    for (std::int64_t h = 0; h < 2; ++h) {
        INFO("head " << h);
        Var head = pure_attention(slice(q, 2, 2 * h, 2 * h + 2), slice(k, 2, 2 * h, 2 * h + 2),
                                  slice(v, 2, 2 * h, 2 * h + 2));
        require_close(y.slice(2, 2 * h, 2 * h + 2), head.value().to_doubles(), 1e-14);
    }
    // interleaved heads (feature f to head f % 2) would differ
    Var even = pure_attention(slice(q, 2, 0, 4, 2), slice(k, 2, 0, 4, 2), slice(v, 2, 0, 4, 2));
    auto interleaved = even.value().to_doubles();
    auto ours = y.slice(2, 0, 4, 2).to_doubles();
    double largest = 0;
    for (std::size_t i = 0; i < ours.size(); ++i) largest = std::max(largest, std::abs(ours[i] - interleaved[i]));
    CHECK(largest > 1e-3);
}

TEST_CASE("fused pure_attention equals the composition of primitive ops, values and gradients", "[attention]") {
    for (std::int64_t lk : {3, 5}) {
        for (MaskKind mask : {MaskKind::none, MaskKind::padding, MaskKind::per_query, MaskKind::causal}) {
            for (double p : {0.0, 0.3}) {
                for (BiasKind bias : {BiasKind::none, BiasKind::learned, BiasKind::alibi}) {
                    INFO(fmt::format("Lq 3, Lk {}, {}, dropout {}, {}", lk, mask_name(mask), p, bias_name(bias)));
                    Problem problem = make_problem(2, 2, 3, lk, 8, mask, p, bias, 80);
                    require_same(problem.run(true), problem.run(false), 1e-10);
                }
            }
        }
    }
}

TEST_CASE("fused pure_attention equals the composition at sizes that run in parallel", "[attention]") {
    // 8 pairs of 48 x 64 maps: split over TBB; one pair of 96 x 128: BLIS threaded
    Problem many = make_problem(2, 4, 48, 64, 64, MaskKind::padding, 0.1, BiasKind::learned, 90);
    require_same(many.run(true), many.run(false), 1e-10);
    Problem one = make_problem(1, 1, 96, 128, 32, MaskKind::causal, 0.2, BiasKind::alibi, 91);
    require_same(one.run(true), one.run(false), 1e-10);
    // the sort model's shape: 64 pairs of 16 x 16 maps, d_head 16, over TBB
    Problem small_maps = make_problem(16, 4, 16, 16, 64, MaskKind::padding, 0.1, BiasKind::learned, 94);
    require_same(small_maps.run(true), small_maps.run(false), 1e-10);
}

TEST_CASE("pure_attention gives identical results at any thread count", "[attention]") {
    const int before = max_threads();
    for (const Problem& problem : {make_problem(2, 4, 48, 64, 64, MaskKind::per_query, 0.1, BiasKind::learned, 92),
                                   make_problem(1, 1, 96, 128, 32, MaskKind::padding, 0.1, BiasKind::none, 93),
                                   make_problem(16, 4, 16, 16, 64, MaskKind::padding, 0.1, BiasKind::learned, 95)}) {
        set_num_threads(1);
        Run one = problem.run(true);
        set_num_threads(2);
        Run two = problem.run(true);
        require_same(one, two, 0.0);
    }
    set_num_threads(before);
}

TEST_CASE("pure_attention without gradients computes the same values", "[attention]") {
    Problem problem = make_problem(2, 2, 4, 6, 8, MaskKind::padding, 0.3, BiasKind::learned, 94);
    Run with_grad = problem.run(true);
    Tape tape;
    NoGrad no_grad;
    manual_seed(31);
    Var y = pure_attention(tape.input(problem.q), tape.input(problem.k), tape.input(problem.v), tape.input(problem.mask),
                           2, 0.3, tape.input(problem.bias));
    CHECK_FALSE(y.requires_grad());
    require_close(y.value(), with_grad.y.to_doubles(), 0.0);
}

TEST_CASE("pure_attention drops weights only in train mode", "[attention]") {
    Tape tape;
    Var q = tape.leaf(random_tensor(Shape{2, 4, 8}, 95, -2.0, 2.0));
    Var k = tape.leaf(random_tensor(Shape{2, 6, 8}, 96, -2.0, 2.0));
    Var v = tape.leaf(random_tensor(Shape{2, 6, 8}, 97));
    const auto without = pure_attention(q, k, v, std::nullopt, 2, 0.0).value().to_doubles();
    for (Mode mode : {Mode::eval, Mode::predict}) {
        INFO(mode_name(mode));
        ModeGuard guard(mode);
        const std::uint64_t offset = default_generator().offset();
        CHECK(pure_attention(q, k, v, std::nullopt, 2, 0.5).value().to_doubles() == without);
        CHECK(pure_attention(q, k, v, std::nullopt, 2, 0.5).value().to_doubles() == without);
        CHECK(default_generator().offset() == offset);
    }
    manual_seed(3);
    const auto dropped = pure_attention(q, k, v, std::nullopt, 2, 0.5).value().to_doubles();
    CHECK(dropped != without);
    manual_seed(3);
    CHECK(pure_attention(q, k, v, std::nullopt, 2, 0.5).value().to_doubles() == dropped);
    CHECK(pure_attention(q, k, v, std::nullopt, 2, 0.5).value().to_doubles() != dropped);   // the generator moved on
}

TEST_CASE("pure_attention errors name every operand", "[attention]") {
    Tape tape;
    Var q = tape.input(Tensor::zeros(Shape{2, 3, 4}, DType::f64));
    Var k = tape.input(Tensor::zeros(Shape{2, 5, 4}, DType::f64));
    Var v = tape.input(Tensor::zeros(Shape{2, 5, 4}, DType::f64));
    const std::string qkv = "q [2, 3, 4], k [2, 5, 4], v [2, 5, 4]";
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 3), "pure_attention: d = 4 does not split into 3 heads: " + qkv);
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 0), "pure_attention: n_heads must be positive, got 0");
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 2, 1.0), "pure_attention: dropout must be in [0, 1), got 1");
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 2, -0.5), "pure_attention: dropout must be in [0, 1), got -0.5");
    CHECK_THROWS_WITH(pure_attention(q, tape.input(Tensor::zeros(Shape{3, 5, 4}, DType::f64)), v),
                      "pure_attention: expected q (B, Lq, d), k and v (B, Lk, d): q [2, 3, 4], k [3, 5, 4], v [2, 5, 4]");
    CHECK_THROWS_WITH(pure_attention(q, k, tape.input(Tensor::zeros(Shape{2, 4, 4}, DType::f64))),
                      "pure_attention: expected q (B, Lq, d), k and v (B, Lk, d): q [2, 3, 4], k [2, 5, 4], v [2, 4, 4]");
    CHECK_THROWS_WITH(pure_attention(q, tape.input(Tensor::zeros(Shape{2, 5, 6}, DType::f64)), v),
                      "pure_attention: expected q (B, Lq, d), k and v (B, Lk, d): q [2, 3, 4], k [2, 5, 6], v [2, 5, 4]");
    CHECK_THROWS_WITH(pure_attention(tape.input(Tensor::zeros(Shape{3, 4}, DType::f64)), k, v),
                      "pure_attention: q, k and v must be (B, L, d): q [3, 4], k [2, 5, 4], v [2, 5, 4]");
    CHECK_THROWS_WITH(pure_attention(q, tape.input(Tensor::zeros(Shape{2, 5, 4}, DType::f32)), v),
                      "pure_attention: q, k, v must share one dtype, f32 or f64, got f64 [2, 3, 4], f32 [2, 5, 4], f64 [2, 5, 4]");
    Var zero_keys = tape.input(Tensor::zeros(Shape{2, 0, 4}, DType::f64));
    CHECK_THROWS_WITH(pure_attention(q, zero_keys, zero_keys),
                      "pure_attention: there are no keys to attend to: q [2, 3, 4], k [2, 0, 4], v [2, 0, 4]");
    CHECK_THROWS_WITH(pure_attention(q, k, v, tape.input(Tensor::ones(Shape{2, 1, 1, 4}, DType::u8)), 2),
                      "pure_attention: mask does not broadcast to (B, n_heads, Lq, Lk) = [2, 2, 3, 5]: " + qkv +
                          ", mask [2, 1, 1, 4]");
    CHECK_THROWS_WITH(pure_attention(q, k, v, tape.input(Tensor::ones(Shape{1, 2, 1, 3, 5}, DType::u8)), 2),
                      "pure_attention: mask does not broadcast to (B, n_heads, Lq, Lk) = [2, 2, 3, 5]: " + qkv +
                          ", mask [1, 2, 1, 3, 5]");
    CHECK_THROWS_WITH(pure_attention(q, k, v, tape.input(Tensor::ones(Shape{3, 5}, DType::f64))),
                      "pure_attention: mask must be u8 (True = keep), got f64: " + qkv + ", mask [3, 5]");
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 2, 0.0, tape.input(Tensor::zeros(Shape{3, 3, 5}, DType::f64))),
                      "pure_attention: bias does not broadcast to (B, n_heads, Lq, Lk) = [2, 2, 3, 5]: " + qkv +
                          ", bias [3, 3, 5]");
    CHECK_THROWS_WITH(pure_attention(q, k, v, std::nullopt, 2, 0.0, tape.input(Tensor::zeros(Shape{3, 5}, DType::f32))),
                      "pure_attention: q, k, v and bias must share one dtype, f32 or f64, got f64 [2, 3, 4], f64 [2, 5, 4], "
                      "f64 [2, 5, 4], f32 [3, 5]");
}

TEST_CASE("pure_attention is reachable through the registry", "[attention]") {
    Tape tape;
    const OpSchema& op = registry().get("pure_attention");
    CHECK(op.signature() == "pure_attention(q, k, v, mask=none, n_heads=1, dropout=0, bias=none)");
    Var q = tape.input(f64({1, 0, 0, 1}, Shape{1, 2, 2}));
    Var v = tape.input(f64({1, 2, 3, 4}, Shape{1, 2, 2}));
    Var y = op.call(Args({q, q, v, std::monostate{}, std::int64_t{1}, 0.0, std::monostate{}}));
    require_close(y.value(), {1.660477, 2.660477, 2.339523, 3.339523});
}

TEST_CASE("a distance penalty in the logits reweights by exp(-scale D) and renormalises", "[attention]") {
    // SPEC.md section 3; with v = I (d = Lk) the output is the weights
    Tape tape;
    Var q = tape.input(random_tensor(Shape{1, 3, 4}, 98, -2.0, 2.0));
    Var k = tape.input(random_tensor(Shape{1, 4, 4}, 99, -2.0, 2.0));
    Var identity = tape.input(Tensor::eye(4, DType::f64).unsqueeze(0));
    Var penalty = distance_penalty(3, 4, 0.8, 0.0, 2.0, Alignment::proportional, DType::f64);
    Var penalized = pure_attention(q, k, identity, std::nullopt, 1, 0.0, penalty);
    Var reweighted = pure_attention(q, k, identity) * exp(penalty);
    require_close(penalized.value(), (reweighted / sum(reweighted, {-1}, true)).value().to_doubles(), 1e-14);
}

TEST_CASE("causal ALiBi hides the future by itself: with or without a causal mask, the same attention", "[attention]") {
    Tape tape;
    Var q = tape.input(random_tensor(Shape{2, 4, 6}, 101, -2.0, 2.0));
    Var k = tape.input(random_tensor(Shape{2, 4, 6}, 102, -2.0, 2.0));
    Var v = tape.input(random_tensor(Shape{2, 4, 6}, 103, -2.0, 2.0));
    Var causal = tape.input(Tensor::from(std::vector<std::uint8_t>{1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1}, Shape{4, 4}));
    Var bias = alibi_bias(2, 4, 4, true, DType::f64);
    Var alone = pure_attention(q, k, v, std::nullopt, 2, 0.0, bias);
    Var masked = pure_attention(q, k, v, causal, 2, 0.0, bias);
    require_close(alone.value(), masked.value().to_doubles(), 1e-15);
    // and the first query sees only the first key: its output is v's first row
    auto y = alone.value().to_doubles(), first = v.value().to_doubles();
    for (std::size_t c = 0; c < 6; ++c) CHECK(y[c] == Approx(first[c]).margin(1e-12));
}

TEST_CASE("a NaN logit makes its attention row NaN and leaves the other rows alone (Note [NaN propagates])", "[attention][nan]") {
    Tape tape;
    Var q = tape.input(random_tensor(Shape{1, 3, 4}, 104, -1.0, 1.0));
    Var k = tape.input(random_tensor(Shape{1, 3, 4}, 105, -1.0, 1.0));
    Var v = tape.input(random_tensor(Shape{1, 3, 4}, 106, -1.0, 1.0));
    std::vector<double> b(9, 0.0);
    b[3 * 1 + 2] = std::nan("");   // query 1, key 2
    Var y = pure_attention(q, k, v, std::nullopt, 1, 0.0, tape.input(Tensor::from(b, Shape{3, 3})));
    Var plain = pure_attention(q, k, v);
    auto got = y.value().to_doubles(), want = plain.value().to_doubles();
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        if (i / 4 == 1) CHECK(std::isnan(got[i]));
        else CHECK(got[i] == Approx(want[i]).margin(1e-15));
    }
}

TEST_CASE("fused pure_attention in f32 matches f64 to float rounding, -inf and NaN logits included", "[attention][nan]") {
    // f32's softmax takes e^x from exp_clamped in double (Note [Vector math]); values and
    // gradients stay within float rounding of the f64 op, a -inf logit gets weight exactly 0,
    // and a NaN logit makes its row NaN
    const Shape qs{2, 16, 32}, ks{2, 24, 32};
    Tensor q = random_tensor(qs, 120, -2.0, 2.0), k = random_tensor(ks, 121, -2.0, 2.0), v = random_tensor(ks, 122);
    Tensor g = random_tensor(qs, 123);
    Tensor mask = make_mask(MaskKind::padding, 2, 16, 24);
    auto run = [&](DType dtype) {
        Tape tape;
        Var qv = tape.leaf(q.to(dtype)), kv = tape.leaf(k.to(dtype)), vv = tape.leaf(v.to(dtype));
        Var y = pure_attention(qv, kv, vv, tape.input(mask), 4);
        tape.backward(y, g.to(dtype));
        return std::vector<Tensor>{y.value(), qv.grad(), kv.grad(), vv.grad()};
    };
    const std::vector<Tensor> f64 = run(DType::f64), f32 = run(DType::f32);
    for (std::size_t i = 0; i < f64.size(); ++i) {
        INFO("output " << i);
        require_close(f32[i], f64[i].to_doubles(), 2e-5);
    }
    // bias -inf on the last key of every query: the same as attention over the other keys
    Tape tape;
    Tensor q32 = q.to(DType::f32).slice(0, 0, 1), k32 = k.to(DType::f32).slice(0, 0, 1), v32 = v.to(DType::f32).slice(0, 0, 1);
    std::vector<float> bias(16 * 24, 0.0f);
    for (int i = 0; i < 16; ++i) bias[static_cast<std::size_t>(i * 24 + 23)] = -INFINITY;
    Var hidden = pure_attention(tape.input(q32), tape.input(k32), tape.input(v32), std::nullopt, 4, 0.0,
                                tape.input(Tensor::from(bias, Shape{16, 24})));
    Var fewer = pure_attention(tape.input(q32), tape.input(k32.slice(1, 0, 23).contiguous()),
                               tape.input(v32.slice(1, 0, 23).contiguous()), std::nullopt, 4);
    require_close(hidden.value(), fewer.value().to_doubles(), 1e-6);
    bias[5 * 24 + 3] = std::nanf("");   // query 5, key 3
    Var with_nan = pure_attention(tape.input(q32), tape.input(k32), tape.input(v32), std::nullopt, 4, 0.0,
                                  tape.input(Tensor::from(bias, Shape{16, 24})));
    const std::vector<double> got = with_nan.value().to_doubles(), plain = hidden.value().to_doubles();
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        if (i / 32 == 5) CHECK(std::isnan(got[i]));
        else CHECK(got[i] == plain[i]);
    }
}

TEST_CASE("distance_penalty equals the seed's band_part sum, built directly", "[attention]") {
    // The seed: sum over i = W - 1 .. L - 2 of (band_part(ones, i, i) - 1), with W the
    // penalty width, is -max(0, |m - n| - (W - 1)).
    Tape tape;
    const std::int64_t length = 6, seed_width = 2;
    Var all_ones = ones(Shape{length, length}, DType::f64);
    Var accum = zeros(Shape{length, length}, DType::f64);
    for (std::int64_t i = seed_width - 1; i < length - 1; ++i) accum = accum + (band_part(all_ones, i, i) - 1.0);
    require_close(distance_penalty(length, length, 1.0, static_cast<double>(seed_width - 1), 0.0, Alignment::top_left,
                                   DType::f64)
                      .value(),
                  accum.value().to_doubles(), 0.0);
}

TEST_CASE("distance_penalty aligns non-square maps three ways", "[attention]") {
    Tape tape;
    // Lq 2, Lk 4: top-left i' = i; bottom-right i' = i + 2; proportional i' = 2 i
    require_close(distance_penalty(2, 4).value(), {0, -1, -2, -3, -1, 0, -1, -2});
    require_close(distance_penalty(2, 4, 1.0, 0.0, 0.0, Alignment::bottom_right).value(), {-2, -1, 0, -1, -3, -2, -1, 0});
    require_close(distance_penalty(2, 4, 1.0, 0.0, 0.0, Alignment::proportional).value(), {0, -1, -2, -3, -2, -1, 0, -1});
    // Lq 4, Lk 2 proportional: i' = i / 2, real
    require_close(distance_penalty(4, 2, 2.0, 0.0, 0.0, Alignment::proportional).value(),
                  {0, -2, -1, -1, -2, 0, -3, -1});
    CHECK(distance_penalty(2, 3, 1.0, 0.0, 0.0, Alignment::top_left, DType::f64).dtype() == DType::f64);
    CHECK(distance_penalty(0, 3).shape() == Shape{0, 3});
}

TEST_CASE("distance penalty and ALiBi errors", "[attention]") {
    Tape tape;
    CHECK_THROWS_WITH(distance_penalty(-1, 3), "distance_penalty: lengths must not be negative, got Lq = -1, Lk = 3");
    CHECK_THROWS_WITH(distance_penalty(2, 3, 1.0, -1.0), "distance_penalty: width must not be negative, got -1");
    CHECK_THROWS_WITH(distance_penalty(2, 3, 1.0, 0.0, -2.0), "distance_penalty: clip must not be negative, got -2");
    CHECK_THROWS_WITH(distance_penalty(2, 3, 1.0, 0.0, 0.0, Alignment::top_left, DType::i64),
                      "distance_penalty: expected a floating tensor (f32 or f64), got i64");
    CHECK_THROWS_WITH(parse_alignment("diagonal", "distance_penalty"),
                      "distance_penalty: unknown alignment 'diagonal'; expected top_left, bottom_right or proportional");
    CHECK_THROWS_WITH(alibi_slopes(0), "alibi_slopes: n_heads must be positive, got 0");
    CHECK_THROWS_WITH(alibi_bias(2, 3, -1), "alibi_bias: lengths must not be negative, got Lq = 3, Lk = -1");
    const OpSchema& op = registry().get("distance_penalty");
    CHECK(op.signature() == "distance_penalty(lq, lk, scale=1, width=0, clip=0, align=\"top_left\", dtype=\"f32\")");
    Var p = op.call(Args({std::int64_t{1}, std::int64_t{3}, 1.0, 0.0, 0.0, std::string("bottom_right"), std::string("f64")}));
    require_close(p.value(), {-2, -1, 0});
}

TEST_CASE("penalize_weights adds, clamps at 0 and renormalises linearly", "[attention]") {
    Tape tape;
    Var weights = tape.input(f64({0.5, 0.3, 0.2, 0.25, 0.25, 0.5}, Shape{2, 3}));
    Var penalty = tape.input(f64({0, -0.1, -0.3}, Shape{3}));
    // row 0: [0.5, 0.2, 0] / 0.7; row 1: [0.25, 0.15, 0.2] / 0.6
    require_close(penalize_weights(weights, penalty).value(),
                  {0.714286, 0.285714, 0, 0.416667, 0.25, 0.333333});
    // a row the penalty empties has nothing to renormalise (Note [Penalties belong in the logits])
    auto emptied = penalize_weights(tape.input(f64({0.1, 0.1}, Shape{2})), tape.input(f64({-0.2, -0.2}, Shape{2})));
    for (double w : emptied.value().to_doubles()) CHECK(std::isnan(w));
    CHECK_THROWS_WITH(penalize_weights(weights, tape.input(f64({0, 0}, Shape{2}))),
                      "penalize_weights: penalty [2] does not broadcast to weights [2, 3]");
    CHECK_THROWS_WITH(penalize_weights(weights, tape.input(Tensor::zeros(Shape{3}, DType::f32))),
                      "penalize_weights: expected f32 or f64 weights with at least one axis and a penalty of the same "
                      "dtype, got f64 [2, 3] and f32 [3]");
}

TEST_CASE("penalized_attention: a penalty on the logits is pure_attention with its bias", "[attention][penalty]") {
    Tape tape;
    Var q = tape.input(random_tensor(Shape{2, 3, 4}, 111, -2.0, 2.0));
    Var k = tape.input(random_tensor(Shape{2, 5, 4}, 112, -2.0, 2.0));
    Var v = tape.input(random_tensor(Shape{2, 5, 4}, 113));
    Var learned = tape.input(random_tensor(Shape{3, 5}, 114));
    const DistancePenalty distance{.scale = 0.7, .width = 1.0, .clip = 3.0, .align = Alignment::bottom_right};
    Var by_penalty = penalized_attention(q, k, v, std::nullopt, 2, 0.0, distance, learned);
    Var by_bias = pure_attention(q, k, v, std::nullopt, 2, 0.0,
                                 learned + distance_penalty(3, 5, 0.7, 1.0, 3.0, Alignment::bottom_right, DType::f64));
    require_close(by_penalty.value(), by_bias.value().to_doubles(), 1e-15);
    Var alibi = penalized_attention(q, k, v, std::nullopt, 2, 0.0, AlibiPenalty{});
    require_close(alibi.value(), pure_attention(q, k, v, std::nullopt, 2, 0.0, alibi_bias(2, 3, 5, false, DType::f64)).value().to_doubles(),
                  1e-15);
    require_close(penalized_attention(q, k, v, std::nullopt, 2, 0.0, {}).value(), pure_attention(q, k, v, std::nullopt, 2).value().to_doubles(),
                  0.0);
}

TEST_CASE("penalized_attention on the weights averages v with the penalised weights of attention_weights", "[attention][penalty]") {
    // one head and v = I (d = Lk): the output is the weights
    Tape tape;
    Var q = tape.input(random_tensor(Shape{1, 3, 4}, 115, -2.0, 2.0));
    Var k = tape.input(random_tensor(Shape{1, 4, 4}, 116, -2.0, 2.0));
    Var identity = tape.input(Tensor::eye(4, DType::f64).unsqueeze(0));
    const DistancePenalty on_weights{.scale = 0.1, .on = PenaltyOn::weights};
    Var weights = attention_weights(q, k, std::nullopt, 1, std::nullopt, on_weights);
    require_close(penalized_attention(q, k, identity, std::nullopt, 1, 0.0, on_weights).value(),
                  reshape(weights, Shape{1, 3, 4}).value().to_doubles(), 1e-15);
    Var penalty = distance_penalty(3, 4, 0.1, 0.0, 0.0, Alignment::top_left, DType::f64);
    require_close(weights.value(), penalize_weights(attention_weights(q, k), penalty).value().to_doubles(), 1e-15);
    CHECK_THROWS_WITH(parse_penalty_on("values", "distance"), "distance: on must be \"logits\" or \"weights\", got \"values\"");
}

TEST_CASE("penalized_attention's gradients agree with finite differences in f64 for each penalty", "[attention][penalty][gradcheck]") {
    auto q = random_tensor(Shape{2, 3, 4}, 121, -1.5, 1.5);
    auto k = random_tensor(Shape{2, 5, 4}, 122, -1.5, 1.5);
    auto v = random_tensor(Shape{2, 5, 4}, 123);
    auto padding = u8({1, 1, 1, 0, 0, 1, 1, 0, 1, 0}, Shape{2, 1, 1, 5});
    const std::vector<std::pair<const char*, AttentionPenalty>> penalties = {
        {"distance on the logits", DistancePenalty{.scale = 0.7, .width = 1.0, .align = Alignment::proportional}},
        {"distance on the weights", DistancePenalty{.scale = 0.05, .clip = 2.0, .on = PenaltyOn::weights}},
        {"ALiBi", AlibiPenalty{}},
        {"causal ALiBi", AlibiPenalty{.causal = true}},
    };
    for (const auto& [name, penalty] : penalties) {
        DYNAMIC_SECTION(name) {
            auto f = [penalty = penalty](std::span<const Var> x) {
                manual_seed(31);   // the same dropout draws at every evaluation
                return penalized_attention(x[0], x[1], x[2], x[3], 2, 0.25, penalty);
            };
            GradCheckResult r = gradcheck(f, {q, k, v, padding});
            INFO(r.message);
            CHECK(r.ok);
        }
    }
}
