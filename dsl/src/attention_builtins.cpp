// Attention builtins: Trax's PureAttention as a layer (q, k, v, mask) -> (y, mask), the
// distance penalties and ALiBi as its `penalty` setting, and positional embeddings. The
// composed layers (attention_qkv, attention, causal_attention, encoder_block, ...) are written
// in the language itself, in dsl/std/prelude.wg.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "builtins.hpp"
#include "wengert/ops.hpp"

namespace wengert::dsl {

namespace {

using Table = std::map<std::string, Value>;

std::shared_ptr<Function> make_builtin(std::string name, std::string doc, std::vector<BuiltinParam> params,
                                       std::function<Value(Interpreter&, CallArgs&)> call) {
    return builtin(std::move(name), std::move(doc), params, std::move(call));
}

// A penalty setting, resolved against the sizes of one attention call.
struct Penalty {
    std::shared_ptr<Record> record;   // null: none
    bool on_weights() const {
        return record && record->name == "distance" && record->fields.at("on").get<std::string>() == "weights";
    }
};

Penalty penalty_of(const Value& v, Location loc) {
    if (v.is_none()) return {};
    if (!v.is<std::shared_ptr<Record>>() || v.get<std::shared_ptr<Record>>()->kind != "penalty") {
        throw EvalError(loc, fmt::format("pure_attention: penalty must be distance(...) or alibi(...), got {}", describe(v)));
    }
    const auto& r = v.get<std::shared_ptr<Record>>();
    if (r->name == "distance") {
        const std::string& on = r->fields.at("on").get<std::string>();
        if (on != "logits" && on != "weights") {
            throw EvalError(r->loc, fmt::format("distance: on must be \"logits\" or \"weights\", got \"{}\"", on));
        }
    }
    return {r};
}

// The additive bias on the logits that a penalty gives for (Lq, Lk).
Var penalty_bias(const Record& r, std::int64_t n_heads, std::int64_t lq, std::int64_t lk, DType dtype) {
    if (r.name == "alibi") return alibi_bias(n_heads, lq, lk, r.fields.at("causal").get<bool>(), dtype);
    return distance_penalty(lq, lk, r.fields.at("scale").number(), r.fields.at("width").number(), r.fields.at("clip").number(),
                            parse_alignment(r.fields.at("align").get<std::string>(), "distance"), dtype);
}

// The weights before dropout (B, h, Lq, Lk), a penalty on the weights applied: what the
// attention's output averages v with.
Var penalized_weights(Var q, Var k, std::optional<Var> mask, std::int64_t n_heads, std::optional<Var> bias, const Record& penalty) {
    Var weights = attention_weights(q, k, mask, n_heads, bias);
    return penalize_weights(weights, penalty_bias(penalty, n_heads, q.shape()[1], k.shape()[1], weights.dtype()));
}

// Note [Penalty on the weights]
// The Speech-Transformer seed adds its penalty to the post-softmax weights and renormalises
// linearly. That path cannot use the fused kernel: it is the composition of primitive ops
// below, the penalised weights made by penalize_weights. The default (on = "logits") adds
// -scale * D to the scaled logits, which equals multiplying the weights by exp(-scale * D) and
// renormalising: it never produces negative weights to clamp, keeps the softmax's gradient
// well-conditioned, and runs in the fused kernel.
Var attention_on_weights(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double dropout_rate,
                         std::optional<Var> bias, const Record& penalty) {
    std::int64_t b = q.shape()[0], lq = q.shape()[1], lk = k.shape()[1], d = q.shape()[2];
    std::int64_t dh = d / n_heads;
    auto heads = [&](Var x, std::int64_t l) { return permute(reshape(x, Shape{b, l, n_heads, dh}), {0, 2, 1, 3}); };
    Var weights = penalized_weights(q, k, mask, n_heads, bias, penalty);
    weights = dropout(weights, dropout_rate);
    Var out = matmul(weights, heads(v, lk));
    return reshape(permute(out, {0, 2, 1, 3}), Shape{b, lq, d});
}

// `bias` is added to the scaled logits; a penalty on the logits adds its own bias to it.
Var attend(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double dropout_rate, std::optional<Var> bias,
           const Penalty& penalty) {
    if (penalty.on_weights()) return attention_on_weights(q, k, v, mask, n_heads, dropout_rate, bias, *penalty.record);
    if (penalty.record && q.ndim() == 3 && k.ndim() == 3) {
        Var distance = penalty_bias(*penalty.record, n_heads, q.shape()[1], k.shape()[1], q.dtype());
        bias = bias ? *bias + distance : distance;
    }
    return pure_attention(q, k, v, mask, n_heads, dropout_rate, bias);
}

// Note [Attention weights by name]
// A pure_attention layer offers its weights (B, h, Lq, Lk), before dropout (the penalty on the
// weights applied), as inspected values (Note [Inspected values] in wengert/layers.hpp) under
// two names: "<its path>.weights", in full
// (h1.encoder_block.residual_0.attention.attention_qkv.pure_attention.weights), and the short
// "<statement>.attention.weights", the statement being the first part of its path: the
// statement's first attention is "h1.attention.weights", its second "h1.attention_1.weights",
// in the order they run. So `--dump h1.attention.weights=w.npy` reads the first encoder block
// of models/sort_attention.wg. They are computed, by the unfused composition, only when asked
// for; the fused op computes the output either way.
void offer_weights(LayerContext& ctx, const std::string& path, Var q, Var k, std::optional<Var> mask, std::int64_t n_heads,
                   std::optional<Var> bias, const Penalty& penalty) {
    const std::string full = (path.empty() ? std::string("pure_attention") : path) + ".weights";
    const std::string statement = path.substr(0, path.find('.'));
    const std::string prefix = (statement.empty() ? std::string() : statement + ".") + "attention";
    // prefix.weights, prefix_1.weights, ...: the aliases of the statement's earlier attentions
    auto is_alias = [&](const std::string& name) {
        const std::string suffix = ".weights";
        if (name.size() < prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
            return false;
        }
        const std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
        return middle.empty() || (middle.size() > 1 && middle[0] == '_' &&
                                  std::all_of(middle.begin() + 1, middle.end(), [](char c) { return c >= '0' && c <= '9'; }));
    };
    const auto earlier = std::count_if(ctx.offered.begin(), ctx.offered.end(), is_alias);
    const std::string alias = prefix + (earlier == 0 ? std::string() : fmt::format("_{}", earlier)) + ".weights";
    const bool want_full = ctx.wants(full), want_alias = ctx.wants(alias);
    if (!want_full && !want_alias) return;
    NoGrad no_grad;
    Var weights;
    if (penalty.on_weights()) {
        weights = penalized_weights(q, k, mask, n_heads, bias, *penalty.record);
    } else {
        if (penalty.record) {
            Var distance = penalty_bias(*penalty.record, n_heads, q.shape()[1], k.shape()[1], q.dtype());
            bias = bias ? *bias + distance : distance;
        }
        weights = attention_weights(q, k, mask, n_heads, bias);
    }
    if (want_full) ctx.inspect(full, weights);
    if (want_alias) ctx.inspect(alias, weights);
}

// Sinusoidal positions (Vaswani et al.): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...).
Tensor sinusoids(std::int64_t length, std::int64_t d, DType dtype) {
    Tensor pe = Tensor::empty(Shape{length, d}, DType::f64);
    double* p = pe.data<double>();
    for (std::int64_t pos = 0; pos < length; ++pos) {
        for (std::int64_t i = 0; i < d; ++i) {
            double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(2 * (i / 2)) / static_cast<double>(d));
            p[pos * d + i] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
        }
    }
    return pe.to(dtype);
}

void require_positions(const Var& x, std::int64_t max_len, std::int64_t d, const char* op) {
    if (x.ndim() != 3 || x.shape()[2] != d) {
        throw ShapeError(op, fmt::format("expects (B, L, {}), got {}", d, x.shape().str()));
    }
    if (x.shape()[1] > max_len) throw ShapeError(op, fmt::format("length {} exceeds max_len {}", x.shape()[1], max_len));
}

}  // namespace

void install_attention(Table& t) {
    std::vector<BuiltinParam> pa = {{"q", Value()},       {"k", Value()},           {"v", Value()},      {"mask", Value()},
                                    {"n_heads", Value(1)}, {"dropout", Value(0.0)}, {"penalty", Value()}, {"bias", Value()}};
    define_builtin(t, "pure_attention") = Value(make_builtin(
        "pure_attention",
        "pure_attention(n_heads=1, dropout=0.0, penalty=none, bias=none): Trax's PureAttention, (q, k, v, mask) -> (y, mask)", pa,
        [pa](Interpreter& in, CallArgs& args) {
            auto b = bind_builtin("pure_attention", pa, args);
            std::int64_t n_heads = integer_arg(b, "pure_attention", "n_heads", args);
            double rate = number_arg(b, "pure_attention", "dropout", args);
            if (n_heads < 1) throw EvalError(arg_loc(args, pa, "n_heads"), fmt::format("pure_attention: n_heads must be positive, got {}", n_heads));
            if (rate < 0 || rate >= 1) throw EvalError(arg_loc(args, pa, "dropout"), fmt::format("pure_attention: dropout must be in [0, 1), got {}", rate));
            Penalty penalty = penalty_of(b["penalty"], arg_loc(args, pa, "penalty"));
            std::optional<Var> bias;
            if (!b["bias"].is_none()) bias = in.as_tensor(b["bias"], arg_loc(args, pa, "bias"), "pure_attention");
            bool direct = !b["q"].is_none();
            if (!direct) {
                // the layer may outlive this run's tape (a constant), so it keeps the bias's value
                std::optional<Tensor> fixed_bias;
                if (bias && bias->requires_grad()) {
                    throw EvalError(arg_loc(args, pa, "bias"), "pure_attention: a layer's bias is a fixed tensor; for a bias "
                                                               "that learns, apply pure_attention(q, k, v, mask, bias = ...) to tensors");
                }
                if (bias) fixed_bias = bias->value();
                return Value(fn_layer("pure_attention", 4, 2, [n_heads, rate, penalty, fixed_bias](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
                    std::optional<Var> layer_bias;
                    if (fixed_bias) layer_bias = Tape::current().input(*fixed_bias);
                    offer_weights(ctx, path, x[0], x[1], x[3], n_heads, layer_bias, penalty);
                    return std::vector<Var>{attend(x[0], x[1], x[2], x[3], n_heads, rate, layer_bias, penalty), x[3]};
                }));
            }
            Var q = in.as_tensor(b["q"], arg_loc(args, pa, "q"), "pure_attention");
            Var k = in.as_tensor(b["k"], arg_loc(args, pa, "k"), "pure_attention");
            Var v = in.as_tensor(b["v"], arg_loc(args, pa, "v"), "pure_attention");
            std::optional<Var> mask;
            if (!b["mask"].is_none()) mask = in.as_tensor(b["mask"], arg_loc(args, pa, "mask"), "pure_attention");
            Var y = attend(q, k, v, mask, n_heads, rate, bias, penalty);
            return mask ? Value(TupleValue{Value(y), Value(*mask)}) : Value(y);
        }));

    std::vector<BuiltinParam> dp = {{"scale", Value(1.0)}, {"width", Value(0.0)}, {"clip", Value(0.0)},
                                    {"align", Value(std::string("top_left"))}, {"on", Value(std::string("logits"))}};
    define_builtin(t, "distance") = Value(make_builtin(
        "distance",
        "distance(scale=1, width=0, clip=0, align=\"top_left\", on=\"logits\"): penalise attention on distant positions",
        dp, [dp](Interpreter&, CallArgs& args) {
            auto r = std::make_shared<Record>();
            r->kind = "penalty";
            r->name = "distance";
            r->fields = bind_builtin("distance", dp, args);
            r->loc = args.loc;
            for (const char* k : {"scale", "width", "clip"}) number_arg(r->fields, "distance", k, args);
            parse_alignment(string_arg(r->fields, "distance", "align", args), "distance");
            string_arg(r->fields, "distance", "on", args);
            return Value(r);
        }));
    std::vector<BuiltinParam> ap = {{"causal", Value(false)}};
    define_builtin(t, "alibi") = Value(make_builtin("alibi", "alibi(causal=false): ALiBi's per-head linear biases", ap, [ap](Interpreter&, CallArgs& args) {
        auto r = std::make_shared<Record>();
        r->kind = "penalty";
        r->name = "alibi";
        r->fields = bind_builtin("alibi", ap, args);
        r->loc = args.loc;
        bool_arg(r->fields, "alibi", "causal", args);
        return Value(r);
    }));

    std::vector<BuiltinParam> pe = {{"max_len", std::nullopt}, {"d", std::nullopt}, {"init", Value(std::string("normal"))}};
    define_builtin(t, "positional_embedding") = Value(make_builtin(
        "positional_embedding", "positional_embedding(max_len, d): x (B, L, d) + a learned table[:L]", pe,
        [pe](Interpreter&, CallArgs& args) {
            auto b = bind_builtin("positional_embedding", pe, args);
            std::int64_t max_len = integer_arg(b, "positional_embedding", "max_len", args);
            std::int64_t d = integer_arg(b, "positional_embedding", "d", args);
            Init init = init_from_value(b["init"], arg_loc(args, pe, "init"));
            return Value(fn_layer("positional_embedding", 1, 1, [max_len, d, init](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
                require_positions(x[0], max_len, d, "positional_embedding");
                Var table = ctx.param((path.empty() ? "positional_embedding" : path) + ".table", Shape{max_len, d}, init);
                return std::vector<Var>{x[0] + slice(table, 0, 0, x[0].shape()[1])};
            }));
        }));
    std::vector<BuiltinParam> se = {{"max_len", std::nullopt}, {"d", std::nullopt}};
    define_builtin(t, "sinusoidal_embedding") = Value(make_builtin(
        "sinusoidal_embedding", "sinusoidal_embedding(max_len, d): x (B, L, d) + sin/cos positions", se,
        [se](Interpreter&, CallArgs& args) {
            auto b = bind_builtin("sinusoidal_embedding", se, args);
            std::int64_t max_len = integer_arg(b, "sinusoidal_embedding", "max_len", args);
            std::int64_t d = integer_arg(b, "sinusoidal_embedding", "d", args);
            return Value(fn_layer("sinusoidal_embedding", 1, 1, [max_len, d](std::span<const Var> x, LayerContext&, const std::string&) {
                require_positions(x[0], max_len, d, "sinusoidal_embedding");
                Var positions = Tape::current().input(sinusoids(x[0].shape()[1], d, x[0].dtype()));
                return std::vector<Var>{x[0] + positions};
            }));
        }));
}

}  // namespace wengert::dsl
