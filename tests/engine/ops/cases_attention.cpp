// Attention family: f64 gradient checks of pure_attention (masks, dropout, biases, non-square)
// and penalize_weights; forward cases for the constant biases (distance_penalty, ALiBi).
#include <cmath>

#include "cases.hpp"

namespace wengert::test {

namespace {

Tensor u8(std::vector<std::uint8_t> values, const Shape& shape) { return Tensor::from(values, shape); }

// x[0..2] = q, k, v; x[3] the mask where there is one
auto attention(std::int64_t n_heads, bool with_mask, double dropout = 0.0) {
    return [=](std::span<const Var> x) {
        return pure_attention(x[0], x[1], x[2], with_mask ? std::optional(x[3]) : std::nullopt, n_heads, dropout);
    };
}

}  // namespace

WG_CASES(attention_cases) {
    // B = 2, d = 4: q (2, 3, 4), k and v (2, 3, 4) square, (2, 5, 4) non-square
    auto q = random_tensor(Shape{2, 3, 4}, 61, -1.5, 1.5);
    auto k = random_tensor(Shape{2, 3, 4}, 62, -1.5, 1.5);
    auto v = random_tensor(Shape{2, 3, 4}, 63);
    auto k5 = random_tensor(Shape{2, 5, 4}, 64, -1.5, 1.5);
    auto v5 = random_tensor(Shape{2, 5, 4}, 65);
    cases.add_grad("pure_attention", "one head, square", attention(1, false), {q, k, v});
    cases.add_grad("pure_attention", "two heads, square", attention(2, false), {q, k, v});
    cases.add_grad("pure_attention", "four heads, Lq 3 != Lk 5", attention(4, false), {q, k5, v5});
    cases.add_grad("pure_attention", "two heads, non-contiguous q and v", attention(2, false),
                   {noncontiguous(q), k5, noncontiguous(v5)});
    // padding (B, 1, 1, Lk): batch 0 sees keys 0..2, batch 1 keys 0, 1, 3
    auto padding = u8({1, 1, 1, 0, 0, 1, 1, 0, 1, 0}, Shape{2, 1, 1, 5});
    cases.add_grad("pure_attention", "padding mask (B, 1, 1, Lk), non-square", attention(2, true), {q, k5, v5, padding});
    // per query (B, 1, Lq, Lk), with a fully masked row (batch 1, query 2): uniform weights
    auto per_query = u8({1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0}, Shape{2, 1, 3, 3});
    cases.add_grad("pure_attention", "per-query mask (B, 1, Lq, Lk) with a fully masked row", attention(2, true),
                   {q, k, v, per_query});
    // causal (Lq, Lk) = tril(ones(3, 5))
    auto causal = u8({1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0}, Shape{3, 5});
    cases.add_grad("pure_attention", "causal mask (Lq, Lk), non-square", attention(1, true), {q, k5, v5, causal});
    // Every evaluation reseeds, so the finite differences see the dropout mask the tape saw.
    cases.add_grad("pure_attention", "dropout 0.3 in train mode", [](auto x) {
        manual_seed(21);
        return pure_attention(x[0], x[1], x[2], std::nullopt, 2, 0.3);
    }, {q, k5, v5});
    cases.add_grad("pure_attention", "dropout 0.5 with a padding mask", [](auto x) {
        manual_seed(22);
        return pure_attention(x[0], x[1], x[2], x[3], 4, 0.5);
    }, {q, k5, v5, padding});
    // biases: learned (gradient summed over batch and heads), and each penalty as a constant
    auto learned = random_tensor(Shape{3, 5}, 66);
    cases.add_grad("pure_attention", "learned bias (Lq, Lk) with a causal mask", [](auto x) {
        return pure_attention(x[0], x[1], x[2], x[4], 2, 0.0, x[3]);
    }, {q, k5, v5, learned, causal});
    cases.add_grad("pure_attention", "learned bias (B, 1, Lq, Lk)", [](auto x) {
        return pure_attention(x[0], x[1], x[2], std::nullopt, 2, 0.0, x[3]);
    }, {q, k5, v5, random_tensor(Shape{2, 1, 3, 5}, 67)});
    for (auto align : {Alignment::top_left, Alignment::bottom_right, Alignment::proportional}) {
        cases.add_grad("pure_attention", "distance_penalty bias, width 1, clip 3, non-square", [align](auto x) {
            return pure_attention(x[0], x[1], x[2], std::nullopt, 2, 0.0,
                                  distance_penalty(3, 5, 0.7, 1.0, 3.0, align, DType::f64));
        }, {q, k5, v5});
    }
    cases.add_grad("pure_attention", "alibi_bias (h, Lq, Lk) with dropout", [](auto x) {
        manual_seed(23);
        return pure_attention(x[0], x[1], x[2], std::nullopt, 4, 0.2, alibi_bias(4, 3, 5, false, DType::f64));
    }, {q, k5, v5});
    cases.add_grad("pure_attention", "causal alibi_bias without a mask", [](auto x) {
        return pure_attention(x[0], x[1], x[2], std::nullopt, 2, 0.0, alibi_bias(2, 3, 3, true, DType::f64));
    }, {q, k, v});
    cases.add_grad("pure_attention", "causal alibi_bias with its causal mask", [](auto x) {
        return pure_attention(x[0], x[1], x[2], x[3], 2, 0.0, alibi_bias(2, 3, 3, true, DType::f64));
    }, {q, k, v, u8({1, 0, 0, 1, 1, 0, 1, 1, 1}, Shape{3, 3})});

    // Weights in [0.05, 1) against penalties in [-0.3, 0): some sums clamp to 0, none lies
    // within the finite-difference step of the kink, every row keeps some mass.
    auto weights = random_tensor(Shape{2, 3, 4}, 68, 0.05, 1.0);
    cases.add_grad("penalize_weights", "penalty (Lq, Lk) broadcast over the batch",
                   [](auto x) { return penalize_weights(x[0], x[1]); }, {weights, random_tensor(Shape{3, 4}, 69, -0.3, 0.0)});
    cases.add_grad("penalize_weights", "constant distance penalty, non-contiguous weights", [](auto x) {
        return penalize_weights(x[0], distance_penalty(3, 4, 0.1, 0.0, 0.0, Alignment::top_left, DType::f64));
    }, {noncontiguous(weights)});

    cases.add_forward("distance_penalty", "square, free band and clip", [] {
        Tape tape;
        Var plain = distance_penalty(3, 3, 0.5, 0.0, 0.0, Alignment::top_left, DType::f64);
        CHECK(plain.shape() == Shape{3, 3});
        CHECK_FALSE(plain.requires_grad());
        require_close(plain.value(), {0, -0.5, -1, -0.5, 0, -0.5, -1, -0.5, 0});
        require_close(distance_penalty(4, 4, 1.0, 1.0).value(), {0, 0, -1, -2, 0, 0, 0, -1, -1, 0, 0, 0, -2, -1, 0, 0});
        require_close(distance_penalty(1, 5, 2.0, 0.0, 2.0).value(), {0, -2, -4, -4, -4});
        require_close(distance_penalty(1, 6, 1.0, 1.0, 2.0).value(), {0, 0, -1, -2, -2, -2});
    });
    cases.add_forward("alibi_slopes", "SPEC.md's lists for 8 and 12 heads, and 3", [] {
        Tape tape;
        Var eight = alibi_slopes(8, DType::f64);
        CHECK(eight.shape() == Shape{8});
        CHECK_FALSE(eight.requires_grad());
        require_close(eight.value(), {std::exp2(-1), std::exp2(-2), std::exp2(-3), std::exp2(-4), std::exp2(-5),
                                      std::exp2(-6), std::exp2(-7), std::exp2(-8)}, 1e-15);
        require_close(alibi_slopes(12, DType::f64).value(),
                      {std::exp2(-1), std::exp2(-2), std::exp2(-3), std::exp2(-4), std::exp2(-5), std::exp2(-6),
                       std::exp2(-7), std::exp2(-8), std::exp2(-0.5), std::exp2(-1.5), std::exp2(-2.5), std::exp2(-3.5)},
                      1e-15);
        // c = 2: slopes(2) = 2^-4, 2^-8, then the first of 2^-2, 2^-6 (every other of slopes(4))
        require_close(alibi_slopes(3, DType::f64).value(), {std::exp2(-4), std::exp2(-8), std::exp2(-2)}, 1e-15);
        require_close(alibi_slopes(1).value(), {std::exp2(-8)});
    });
    cases.add_forward("alibi_bias", "bidirectional and causal, 2 heads, Lq 2, Lk 3", [] {
        Tape tape;
        Var both = alibi_bias(2, 2, 3, false, DType::f64);
        CHECK(both.shape() == Shape{2, 2, 3});
        CHECK_FALSE(both.requires_grad());
        const double m0 = 1.0 / 16, m1 = 1.0 / 256;
        require_close(both.value(), {0, -m0, -2 * m0, -m0, 0, -m0, 0, -m1, -2 * m1, -m1, 0, -m1}, 1e-15);
        // causal: the masked logit above the diagonal, so the bias hides the future by itself
        const double hidden = -1e9;
        require_close(alibi_bias(2, 2, 3, true, DType::f64).value(),
                      {0, hidden, hidden, -m0, 0, hidden, 0, hidden, hidden, -m1, 0, hidden}, 1e-15);
    });
}

}  // namespace wengert::test
