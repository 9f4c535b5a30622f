// wengert: differentiable ops on tape values. Each family lives in one file under
// engine/src/ops/ with its shape rule, forward and backward side by side, and registers its
// ops in the registry (registry.hpp).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "wengert/tape.hpp"

namespace wengert {

enum class Reduction { none, mean, sum };
Reduction parse_reduction(const std::string& name, const char* op);

// ---- elementwise arithmetic (ops/elementwise.cpp); NumPy broadcasting -----------------------
Var add(Var a, Var b);
Var sub(Var a, Var b);
Var mul(Var a, Var b);
Var div(Var a, Var b);
Var neg(Var x);
Var pow(Var x, Var exponent);          // x > 0 where exponent's gradient is needed
Var pow(Var x, double exponent);
Var maximum(Var a, Var b);             // gradient to a where a >= b
Var minimum(Var a, Var b);             // gradient to a where a <= b
Var clamp(Var x, std::optional<double> low, std::optional<double> high);
Var where(Var mask, Var a, Var b);     // mask u8, True picks a
// scalar forms: the scalar takes x's dtype
Var add(Var x, double s);
Var mul(Var x, double s);
Var rsub(double s, Var x);             // s - x
Var rdiv(double s, Var x);             // s / x

inline Var operator+(Var a, Var b) { return add(a, b); }
inline Var operator-(Var a, Var b) { return sub(a, b); }
inline Var operator*(Var a, Var b) { return mul(a, b); }
inline Var operator/(Var a, Var b) { return div(a, b); }
inline Var operator-(Var x) { return neg(x); }
inline Var operator+(Var x, double s) { return add(x, s); }
inline Var operator+(double s, Var x) { return add(x, s); }
inline Var operator-(Var x, double s) { return add(x, -s); }
inline Var operator-(double s, Var x) { return rsub(s, x); }
inline Var operator*(Var x, double s) { return mul(x, s); }
inline Var operator*(double s, Var x) { return mul(x, s); }
inline Var operator/(Var x, double s) { return mul(x, 1.0 / s); }
inline Var operator/(double s, Var x) { return rdiv(s, x); }

// comparisons: u8 results, no gradient
Var eq(Var a, Var b);
Var ne(Var a, Var b);
Var lt(Var a, Var b);
Var le(Var a, Var b);
Var gt(Var a, Var b);
Var ge(Var a, Var b);
Var logical_not(Var mask);
Var logical_and(Var a, Var b);
Var logical_or(Var a, Var b);
// Stops gradients: the same value, as a new node with no backward.
Var detach(Var x);
// Converts dtype (f32 <-> f64 differentiable; to/from i64 and u8 carry no gradient).
Var cast(Var x, DType dtype);

// ---- unary (ops/unary.cpp) ------------------------------------------------------------------
Var exp(Var x);
Var log(Var x);
Var sqrt(Var x);
Var abs(Var x);
Var tanh(Var x);
Var sigmoid(Var x);
Var relu(Var x);
Var gelu(Var x, bool tanh_approximation = false);   // exact erf form by default, as PyTorch
Var softplus(Var x, double beta = 1.0, double threshold = 20.0);

// ---- reductions (ops/reduce.cpp); empty axes = all ------------------------------------------
Var sum(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false);
Var mean(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false);
Var max(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false);   // gradient split among ties
Var min(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false);
Var logsumexp(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false);
Var var(Var x, std::vector<std::int64_t> axes = {}, bool keepdims = false, std::int64_t correction = 0);

// ---- shape (ops/shape.cpp) ------------------------------------------------------------------
Var reshape(Var x, const Shape& shape);               // one -1 allowed
Var permute(Var x, std::vector<int> axes);
Var transpose(Var x, int a = -2, int b = -1);
Var slice(Var x, int axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1);
Var concat(std::span<const Var> xs, int axis = 0);
Var stack(std::span<const Var> xs, int axis = 0);
Var expand(Var x, const Shape& shape);
Var squeeze(Var x, int axis);
Var unsqueeze(Var x, int axis);
Var flatten(Var x, int start_axis = 1);               // (B, ...) -> (B, prod ...)

// ---- products (ops/matmul.cpp) --------------------------------------------------------------
// NumPy matmul: (..., n, k) x (..., k, m) -> (..., n, m), leading axes broadcast; a rank-1
// operand is promoted as NumPy does. Strided and transposed views go to BLIS without copies.
Var matmul(Var a, Var b);

// ---- the fused dense layer (ops/linear.cpp) --------------------------------------------------
// activation(x @ w + b) as one op: x (..., d_in), w (d_in, d_out), b (d_out) -> (..., d_out).
// The same values and gradients as the composition, with one tape node and no temporaries
// besides the output (Note [Fused linear]).
enum class Activation { none, relu };
Activation parse_activation(const std::string& name, const char* op);   // "none" or "relu"
Var linear(Var x, Var w, std::optional<Var> b = std::nullopt, Activation activation = Activation::none);

// ---- convolutions and pooling (ops/conv.cpp); images NHWC (Note [Image layout]) -------------
// Padding of the two spatial axes. "valid": none; "same": as TensorFlow, the output has
// ceil(in / stride) positions and the padding that needs is split with the extra one at the
// bottom (right); explicit: rows above and below, columns left and right.
struct Padding2d {
    bool same = false;
    std::int64_t top = 0, bottom = 0, left = 0, right = 0;
};
// "valid" or "same" (a string), or explicit: p, (p_h, p_w) or (top, bottom, left, right).
Padding2d parse_padding(const std::string& name, const char* op);
Padding2d explicit_padding(const std::vector<std::int64_t>& pads, const char* op);
struct Conv2dOptions {
    std::int64_t stride_h = 1, stride_w = 1;
    Padding2d padding;
    std::int64_t dilation_h = 1, dilation_w = 1;
    std::int64_t groups = 1;             // C and F both divisible; groups = C: depthwise
    Activation activation = Activation::none;
};
// activation(conv(x, w) + b): x (N, H, W, C), w (KH, KW, C / groups, F), b (F) ->
// (N, OH, OW, F), OH = (H + pad_h - dilation_h (KH - 1) - 1) / stride_h + 1 (Note [Blocked im2col]).
Var conv2d(Var x, Var w, std::optional<Var> b = std::nullopt, const Conv2dOptions& options = {});
struct Pool2dOptions {
    std::int64_t kernel_h = 2, kernel_w = 2;
    std::int64_t stride_h = 0, stride_w = 0;   // 0: the kernel's size
    Padding2d padding;                         // explicit padding at most half the kernel
    bool ceil_mode = false;                    // PyTorch's: a last, partial window where one starts inside
    bool count_include_pad = true;             // avg_pool2d's divisor counts explicit padding (PyTorch)
};
// x (N, H, W, C) -> (N, OH, OW, C). max: the gradient goes to the window's first largest value
// (a NaN counts as largest, the last NaN of the window), as PyTorch; padding never wins.
Var max_pool2d(Var x, const Pool2dOptions& options = {});
// The window's mean; the divisor as PyTorch's avg_pool2d (count_include_pad, ceil_mode).
Var avg_pool2d(Var x, const Pool2dOptions& options = {});
// x (N, H, W, C) -> (N, C): the mean over H and W.
Var global_avg_pool2d(Var x);

// ---- softmax family (ops/softmax.cpp) -------------------------------------------------------
Var softmax(Var x, int axis = -1);                    // exp(x - logsumexp(x))
Var log_softmax(Var x, int axis = -1);

// ---- losses (ops/loss.cpp) ------------------------------------------------------------------
// target: i64 class indices (shape of logits without the class axis) or probabilities (same
// shape as logits). Class axis is the last one.
Var cross_entropy(Var logits, Var target, double label_smoothing = 0.0, Reduction reduction = Reduction::mean);
Var nll(Var log_probs, Var labels, Reduction reduction = Reduction::mean);
// Log terms clamped at -100, as PyTorch does.
Var bce(Var probs, Var target, Reduction reduction = Reduction::mean);
Var bce_with_logits(Var logits, Var target, Reduction reduction = Reduction::mean);
Var mse(Var prediction, Var target, Reduction reduction = Reduction::mean);
// The fraction of rows of logits (..., C) whose argmax is the label (i64, (...)), as a scalar of
// `dtype`; no gradient.
Var accuracy(Var logits, Var labels, DType dtype = DType::f32);

// ---- indexing (ops/index.cpp) ---------------------------------------------------------------
Var one_hot(Var labels, std::int64_t n_classes, DType dtype = DType::f32);   // no gradient
// From a distribution to a (near) one-hot vector with a gradient (Note [Near one-hot],
// SPEC.md section 4). sharpen: p^n / sum p^n along axis, as softmax(n log p), n >= 1.
Var sharpen(Var p, double n, int axis = -1);
// one_hot(argmax(x)) along axis, exactly, differentiated as the identity.
Var straight_through(Var x, int axis = -1);
// softmax((logits + g) / tau), g Gumbel noise from default_generator() in Mode::train only;
// hard: straight_through of that sample.
Var gumbel_softmax(Var logits, double tau = 1.0, bool hard = false, int axis = -1);
Var argmax(Var x, int axis = -1, bool keepdims = false);                     // i64, no gradient
// torch.gather: out[i][j] = x[i][index[i][j]] along `axis`; scatter-add backward.
Var gather(Var x, int axis, Var index);
// Rows of x along `axis` picked by a rank-1 i64 index; scatter-add backward.
Var index_select(Var x, int axis, Var index);
// table (V, D), ids (...) i64 -> (..., D); gradient to the rows read, none to ids.
Var embedding(Var table, Var ids);

// ---- masks (ops/mask.cpp); act on the last two axes -----------------------------------------
// band_part keeps (m, n) iff (lower < 0 or m - n <= lower) and (upper < 0 or n - m <= upper).
Var band_part(Var x, std::int64_t lower, std::int64_t upper);
Var tril(Var x, std::int64_t k = 0);
Var triu(Var x, std::int64_t k = 0);

// ---- layers (ops/nn.cpp) --------------------------------------------------------------------
// Inverted dropout; active only in Mode::train and p > 0. Draws from default_generator().
Var dropout(Var x, double p);
// Normalises over the last axis; gamma and beta (shape (D,)) are optional.
Var layer_norm(Var x, std::optional<Var> gamma, std::optional<Var> beta, double eps = 1e-5);

// ---- creation (ops/creation.cpp): new values on the current tape, no gradient ---------------
Var zeros(const Shape& shape, DType dtype = DType::f32);
Var ones(const Shape& shape, DType dtype = DType::f32);
Var full(const Shape& shape, double value, DType dtype = DType::f32);
Var eye(std::int64_t n, DType dtype = DType::f32);
Var arange(double start, double stop, double step = 1.0, DType dtype = DType::f32);
Var normal(const Shape& shape, double mean = 0.0, double stddev = 1.0, DType dtype = DType::f32);
Var uniform(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32);
// (length, d): Vaswani et al.'s sinusoidal positions, PE[p, 2i] = sin(p / 10000^(2i / d)) and
// PE[p, 2i + 1] = cos(p / 10000^(2i / d)), computed in f64.
Var sinusoids(std::int64_t length, std::int64_t d, DType dtype = DType::f32);

// ---- attention (ops/attention.cpp); SPEC.md sections 1 and 3 --------------------------------
// Trax's PureAttention, fused: q (B, Lq, d), k and v (B, Lk, d) -> y (B, Lq, d). Head h owns
// features [h d/n_heads, (h + 1) d/n_heads). logits = q k^T / sqrt(d / n_heads) + bias; where
// the u8 mask is False (True = keep) the logit is replaced by -1e9; softmax over keys; inverted
// dropout on the weights in Mode::train (p in [0, 1)); out = weights @ v, heads merged. mask and
// bias broadcast to (B, n_heads, Lq, Lk): a padding mask (B, 1, 1, Lk), a per-query mask
// (B, 1, Lq, Lk) or (Lq, Lk); a bias (Lq, Lk) from distance_penalty or (n_heads, Lq, Lk) from
// alibi_bias. The mask passes through unchanged: the caller keeps it.
Var pure_attention(Var q, Var k, Var v, std::optional<Var> mask = std::nullopt, std::int64_t n_heads = 1,
                   double dropout = 0.0, std::optional<Var> bias = std::nullopt);

// Where query i sits among the keys when Lq != Lk (SPEC.md section 3).
enum class Alignment {
    top_left,       // i' = i
    bottom_right,   // i' = i + Lk - Lq: the queries are the last Lq positions (a KV cache)
    proportional,   // i' = i Lk / Lq, a real number: speech frames against tokens
};
Alignment parse_alignment(const std::string& name, const char* op);

// An attention penalty's settings (SPEC.md section 3), for penalized_attention and the
// pure_attention layer (layers.hpp). A distance penalty is distance_penalty's bias, added to
// the scaled logits, or with `on = weights` the seed's variant on the post-softmax weights
// (penalize_weights; Note [Penalties belong in the logits]). ALiBi is alibi_bias on the logits.
enum class PenaltyOn { logits, weights };
PenaltyOn parse_penalty_on(const std::string& name, const char* op);   // "logits" or "weights"
struct DistancePenalty {
    double scale = 1.0;
    double width = 0.0;
    double clip = 0.0;
    Alignment align = Alignment::top_left;
    PenaltyOn on = PenaltyOn::logits;
};
struct AlibiPenalty {
    bool causal = false;
};
// No penalty, a distance penalty or ALiBi.
using AttentionPenalty = std::variant<std::monostate, DistancePenalty, AlibiPenalty>;

// pure_attention with a penalty: one on the logits joins `bias` inside the fused op; one on the
// weights runs the unfused composition (Note [Penalty on the weights]). Same shapes as
// pure_attention.
Var penalized_attention(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double dropout,
                        const AttentionPenalty& penalty, std::optional<Var> bias = std::nullopt);
// The weights pure_attention (or penalized_attention) computes, before dropout: q (B, Lq, d), k
// (B, Lk, d) -> (B, n_heads, Lq, Lk), softmax(where(mask, Q K^T / sqrt(d_head) + bias, -1e9))
// over keys, each row summing to 1, a penalty applied. Composed of primitive ops (reshape,
// permute, matmul, where, softmax), so it keeps the tensors of that size the fused op avoids:
// for reading the weights out, and for the penalty on the weights (penalize_weights).
Var attention_weights(Var q, Var k, std::optional<Var> mask = std::nullopt, std::int64_t n_heads = 1,
                      std::optional<Var> bias = std::nullopt, const AttentionPenalty& penalty = {});

// (Lq, Lk) constant, no gradient: -scale * D with D[i, j] = max(0, |i' - j| - width), and
// when clip > 0 also D = min(D, clip): clip alone gives SPEC's min(|i' - j|, W), width alone a
// free band. Built directly in O(Lq Lk). Pass it as pure_attention's bias.
Var distance_penalty(std::int64_t lq, std::int64_t lk, double scale = 1.0, double width = 0.0, double clip = 0.0,
                     Alignment align = Alignment::top_left, DType dtype = DType::f32);
// The Speech-Transformer seed's variant on post-softmax weights (..., Lk): max(weights +
// penalty, 0), renormalised linearly over the last axis. penalty broadcasts to weights.
Var penalize_weights(Var weights, Var penalty);
// ALiBi's head slopes (n_heads,), no gradient: 2^(-8k/n) for k = 1..n when n is a power of two,
// else slopes(c) then every other slope of slopes(2c), c the largest power of two below n.
Var alibi_slopes(std::int64_t n_heads, DType dtype = DType::f32);
// (n_heads, Lq, Lk), no gradient: -m_h |i - j|; causal: -m_h (i - j) for j <= i and 0 beyond,
// where pure_attention's mask (tril of ones (Lq, Lk)) must hide the keys.
Var alibi_bias(std::int64_t n_heads, std::int64_t lq, std::int64_t lk, bool causal = false, DType dtype = DType::f32);

}  // namespace wengert
