// Attention builtins: the language's names for the engine's attention layer and penalties
// (penalized_attention and pure_attention_layer, ops.hpp and layers.hpp), the penalty records
// distance(...) and alibi(...) its `penalty` setting takes, and the positional embeddings. The
// composed layers (attention_qkv, attention, causal_attention, encoder_block, ...) are written
// in the language itself, in dsl/std/prelude.wg.
#include <fmt/format.h>

#include "builtins.hpp"
#include "wengert/layers.hpp"
#include "wengert/ops.hpp"

namespace wengert::dsl {

namespace {

using Table = std::map<std::string, Value>;

std::shared_ptr<Function> make_builtin(std::string name, std::string doc, std::vector<BuiltinParam> params,
                                       BuiltinCall call) {
    return builtin(std::move(name), std::move(doc), params, std::move(call));
}

// A penalty record (distance(...) or alibi(...)) as the engine's settings; none: no penalty.
AttentionPenalty penalty_of(const Value& v, Location loc) {
    if (v.is_none()) return {};
    if (!v.is<std::shared_ptr<Record>>() || v.get<std::shared_ptr<Record>>()->kind != "penalty") {
        throw EvalError(loc, fmt::format("pure_attention: penalty must be distance(...) or alibi(...), got {}", describe(v)));
    }
    const Record& r = *v.get<std::shared_ptr<Record>>();
    if (r.name == "alibi") return AlibiPenalty{.causal = r.fields.at("causal").get<bool>()};
    try {
        return DistancePenalty{.scale = r.fields.at("scale").number(),
                               .width = r.fields.at("width").number(),
                               .clip = r.fields.at("clip").number(),
                               .align = parse_alignment(r.fields.at("align").get<std::string>(), "distance"),
                               .on = parse_penalty_on(r.fields.at("on").get<std::string>(), "distance")};
    } catch (const ShapeError& e) {
        throw EvalError(r.loc, e.what());   // at the distance(...) that was given the setting
    }
}

}  // namespace

void install_attention(Table& t) {
    std::vector<BuiltinParam> pa = {{"q", Value(), "tensor"}, {"k", Value(), "tensor"}, {"v", Value(), "tensor"}, {"mask", Value(), "tensor"},
                                    {"n_heads", Value(1)}, {"dropout", Value(0.0)}, {"penalty", Value(), "distance(...) or alibi(...)"},
                                    {"bias", Value(), "tensor"}};
    define_builtin(t, "pure_attention") = Value(make_builtin(
        "pure_attention",
        "Trax's PureAttention, (q, k, v, mask) -> (y, mask)", pa,
        [pa](Interpreter& in, CallArgs& args, const Signature& sig) {
            auto b = bind_builtin(sig, pa, args);
            std::int64_t n_heads = integer_arg(b, "pure_attention", "n_heads", args);
            double rate = number_arg(b, "pure_attention", "dropout", args);
            if (n_heads < 1) throw EvalError(arg_loc(args, pa, "n_heads"), fmt::format("pure_attention: n_heads must be positive, got {}", n_heads));
            if (rate < 0 || rate >= 1) throw EvalError(arg_loc(args, pa, "dropout"), fmt::format("pure_attention: dropout must be in [0, 1), got {}", rate));
            AttentionPenalty penalty = penalty_of(b["penalty"], arg_loc(args, pa, "penalty"));
            std::optional<Var> bias;
            if (!b["bias"].is_none()) bias = in.as_tensor(b["bias"], arg_loc(args, pa, "bias"), "pure_attention");
            if (b["q"].is_none()) {
                // the layer may outlive this run's tape (a constant), so it keeps the bias's value
                if (bias && bias->requires_grad()) {
                    throw EvalError(arg_loc(args, pa, "bias"), "pure_attention: a layer's bias is a fixed tensor; for a bias "
                                                               "that learns, apply pure_attention(q, k, v, mask, bias = ...) to tensors");
                }
                return Value(pure_attention_layer(n_heads, rate, penalty, bias ? std::optional(bias->value()) : std::nullopt));
            }
            Var q = in.as_tensor(b["q"], arg_loc(args, pa, "q"), "pure_attention");
            Var k = in.as_tensor(b["k"], arg_loc(args, pa, "k"), "pure_attention");
            Var v = in.as_tensor(b["v"], arg_loc(args, pa, "v"), "pure_attention");
            std::optional<Var> mask;
            if (!b["mask"].is_none()) mask = in.as_tensor(b["mask"], arg_loc(args, pa, "mask"), "pure_attention");
            Var y = penalized_attention(q, k, v, mask, n_heads, rate, penalty, bias);
            return mask ? Value(TupleValue{Value(y), Value(*mask)}) : Value(y);
        }));

    std::vector<BuiltinParam> dp = {{"scale", Value(1.0)}, {"width", Value(0.0)}, {"clip", Value(0.0)},
                                    {"align", Value(std::string("top_left")), "\"top_left\" or \"bottom_right\" or \"proportional\""}, {"on", Value(std::string("logits")), "\"logits\" or \"weights\""}};
    define_builtin(t, "distance") = Value(make_builtin(
        "distance",
        "penalise attention on distant positions",
        dp, [dp](Interpreter&, CallArgs& args, const Signature& sig) {
            auto r = std::make_shared<Record>();
            r->kind = "penalty";
            r->name = "distance";
            r->fields = bind_builtin(sig, dp, args);
            r->loc = args.loc;
            for (const char* k : {"scale", "width", "clip"}) number_arg(r->fields, "distance", k, args);
            parse_alignment(string_arg(r->fields, "distance", "align", args), "distance");
            string_arg(r->fields, "distance", "on", args);
            return Value(r);
        }));
    std::vector<BuiltinParam> ap = {{"causal", Value(false)}};
    define_builtin(t, "alibi") = Value(make_builtin("alibi", "ALiBi's per-head linear biases", ap, [ap](Interpreter&, CallArgs& args, const Signature& sig) {
        auto r = std::make_shared<Record>();
        r->kind = "penalty";
        r->name = "alibi";
        r->fields = bind_builtin(sig, ap, args);
        r->loc = args.loc;
        bool_arg(r->fields, "alibi", "causal", args);
        return Value(r);
    }));

    std::vector<BuiltinParam> pe = {{"max_len", std::nullopt, "integer"}, {"d", std::nullopt, "integer"}, {"init", Value(std::string("normal")), "initializer"}};
    define_builtin(t, "positional_embedding") = Value(make_builtin(
        "positional_embedding", "x (B, L, d) + a learned table[:L]", pe,
        [pe](Interpreter&, CallArgs& args, const Signature& sig) {
            auto b = bind_builtin(sig, pe, args);
            std::int64_t max_len = integer_arg(b, "positional_embedding", "max_len", args);
            std::int64_t d = integer_arg(b, "positional_embedding", "d", args);
            Init init = init_from_value(b["init"], arg_loc(args, pe, "init"));
            return Value(positional_embedding_layer(max_len, d, init));
        }));
    std::vector<BuiltinParam> se = {{"max_len", std::nullopt, "integer"}, {"d", std::nullopt, "integer"}};
    define_builtin(t, "sinusoidal_embedding") = Value(make_builtin(
        "sinusoidal_embedding", "x (B, L, d) + sin/cos positions", se,
        [se](Interpreter&, CallArgs& args, const Signature& sig) {
            auto b = bind_builtin(sig, se, args);
            std::int64_t max_len = integer_arg(b, "sinusoidal_embedding", "max_len", args);
            std::int64_t d = integer_arg(b, "sinusoidal_embedding", "d", args);
            return Value(sinusoidal_embedding_layer(max_len, d));
        }));
}

}  // namespace wengert::dsl
