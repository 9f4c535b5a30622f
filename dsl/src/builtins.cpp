// The language's builtins: every engine op from the registry, layer constructors and
// combinators, regularizers, metrics, and the records a train block reads (optimizers,
// schedules, datasets, initializers, constraints).
#include "builtins.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "wengert/ops.hpp"
#include "wengert/optim.hpp"
#include "wengert/regularizers.hpp"
#include "wengert/registry.hpp"

namespace wengert::dsl {

// ---------------------------------------------------------------- argument binding

Signature builtin_signature(const std::string& fname, const std::vector<BuiltinParam>& params, std::optional<std::string> rest,
                            std::string doc) {
    std::vector<Signature::Param> parts;
    for (const auto& p : params) parts.push_back({p.name, p.default_value ? std::optional(source_text(*p.default_value)) : std::nullopt, p.kind});
    return make_signature(fname, std::move(parts), std::move(rest), std::move(doc));
}

std::map<std::string, Value> bind_builtin(const Signature& sig, const std::vector<BuiltinParam>& params, const CallArgs& args) {
    BoundArgs b = bind_arguments(sig.name, sig, args);
    std::map<std::string, Value> bound;
    for (std::size_t i = 0; i < params.size(); ++i) bound[params[i].name] = b.given(i) ? *b.values[i] : *params[i].default_value;
    return bound;
}

std::shared_ptr<Function> builtin(std::string name, std::string doc, const std::vector<BuiltinParam>& params, BuiltinCall call,
                                  std::optional<std::string> rest) {
    auto f = std::make_shared<Function>();
    f->signature = builtin_signature(name, params, std::move(rest), std::move(doc));
    f->name = std::move(name);
    // the function outlives every call of it, so its signature can be lent to each
    f->call = [call = std::move(call), sig = &f->signature](Interpreter& in, CallArgs& args) { return call(in, args, *sig); };
    return f;
}

Location arg_loc(const CallArgs& args, const std::vector<BuiltinParam>& params, const std::string& name) {
    for (std::size_t k = 0; k < args.keywords.size(); ++k) if (args.keywords[k].first == name) return args.keyword_locs[k];
    for (std::size_t i = 0; i < args.positional.size() && i < params.size(); ++i) {
        if (params[i].name == name) return args.positional_locs[i];
    }
    return args.loc;
}

namespace {

Location find_loc(const CallArgs& args, const std::string& name, std::size_t position_hint) {
    for (std::size_t k = 0; k < args.keywords.size(); ++k) if (args.keywords[k].first == name) return args.keyword_locs[k];
    if (position_hint < args.positional_locs.size()) return args.positional_locs[position_hint];
    return args.loc;
}

[[noreturn]] void kind_error(const std::string& fname, const std::string& name, const char* want, const Value& got,
                             const CallArgs& args) {
    throw EvalError(find_loc(args, name, 99), fmt::format("{}: '{}' must be {}, got {}", fname, name, want, describe(got)));
}

}  // namespace

double number_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                  const CallArgs& args) {
    const Value& v = bound.at(name);
    if (!v.is_number()) kind_error(fname, name, "a number", v, args);
    return v.number();
}

std::int64_t integer_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                         const CallArgs& args) {
    const Value& v = bound.at(name);
    if (!v.is<std::int64_t>()) kind_error(fname, name, "an integer", v, args);
    return v.get<std::int64_t>();
}

bool bool_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
              const CallArgs& args) {
    const Value& v = bound.at(name);
    if (!v.is<bool>()) kind_error(fname, name, "true or false", v, args);
    return v.get<bool>();
}

std::string string_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                       const CallArgs& args) {
    const Value& v = bound.at(name);
    if (!v.is<std::string>()) kind_error(fname, name, "a string", v, args);
    return v.get<std::string>();
}

Value& define_builtin(std::map<std::string, Value>& table, const std::string& name) {
    auto [it, inserted] = table.try_emplace(name);
    if (!inserted) throw std::logic_error(fmt::format("the builtin '{}' is defined twice (Note [Layers over ops])", name));
    return it->second;
}

namespace {

using Table = std::map<std::string, Value>;

// A record builtin: binds its keywords and returns Record{kind, name, fields}.
void record_builtin(Table& t, const std::string& kind, const std::string& name, std::vector<BuiltinParam> params,
                    std::string doc) {
    define_builtin(t, name) = Value(builtin(name, std::move(doc), params, [kind, name, params](Interpreter&, CallArgs& args, const Signature& sig) {
        auto r = std::make_shared<Record>();
        r->kind = kind;
        r->name = name;
        r->fields = bind_builtin(sig, params, args);
        r->loc = args.loc;
        return Value(r);
    }));
}

// ---------------------------------------------------------------- registry ops

ArgValue to_arg(Interpreter& in, const Value& v, const ArgSpec& spec, const std::string& op, Location loc) {
    auto bad = [&](const char* want) -> ArgValue {
        throw EvalError(loc, fmt::format("{}: '{}' must be {}, got {}", op, spec.name, want, describe(v)));
    };
    // none is the absent value of an optional argument; anywhere else it is a value of the wrong kind
    bool optional = spec.default_value && std::holds_alternative<std::monostate>(*spec.default_value);
    if (v.is_none() && optional) return std::monostate{};
    switch (spec.kind) {
        case ArgKind::tensor: return in.as_tensor(v, loc, op.c_str());
        case ArgKind::tensors: {
            if (!v.is<std::shared_ptr<TupleValue>>()) return bad("a tuple of tensors");
            std::vector<Var> xs;
            for (const auto& e : *v.get<std::shared_ptr<TupleValue>>()) xs.push_back(in.as_tensor(e, loc, op.c_str()));
            return xs;
        }
        case ArgKind::number:
            if (!v.is_number()) return bad("a number");
            return v.number();
        case ArgKind::integer:
            if (!v.is<std::int64_t>()) return bad("an integer");
            return v.get<std::int64_t>();
        case ArgKind::boolean:
            if (!v.is<bool>()) return bad("true or false");
            return v.get<bool>();
        case ArgKind::ints: {
            if (v.is<std::int64_t>()) return std::vector<std::int64_t>{v.get<std::int64_t>()};
            if (!v.is<std::shared_ptr<TupleValue>>()) return bad("an integer or a tuple of integers");
            std::vector<std::int64_t> xs;
            for (const auto& e : *v.get<std::shared_ptr<TupleValue>>()) {
                if (!e.is<std::int64_t>()) return bad("an integer or a tuple of integers");
                xs.push_back(e.get<std::int64_t>());
            }
            return xs;
        }
        case ArgKind::string:
            if (!v.is<std::string>()) return bad("a string");
            return v.get<std::string>();
        case ArgKind::padding: {
            if (v.is<std::string>()) return v.get<std::string>();
            ArgSpec as_ints = spec;
            as_ints.kind = ArgKind::ints;
            if (v.is<std::int64_t>() || v.is<std::shared_ptr<TupleValue>>()) return to_arg(in, v, as_ints, op, loc);
            return bad("\"valid\", \"same\" or explicit pads: p, (p_h, p_w) or (top, bottom, left, right)");
        }
    }
    return std::monostate{};
}

// Note [Ops as layers]
// An op called without any of its tensor arguments is partially applied: log_softmax(axis = 0)
// is a layer taking the missing tensors, in order, from the data stack. A bare op name used
// where a layer is expected (serial(dense(10), relu)) is the same with every default.
Value call_op(Interpreter& in, const OpSchema& op, const Signature& sig, CallArgs& args) {
    const auto& specs = op.args;
    BoundArgs b = bind_arguments(sig.name, sig, args, Missing::allowed);
    std::vector<Value> values(specs.size());
    std::vector<bool> given(specs.size(), false);
    for (std::size_t i = 0; i < specs.size(); ++i) {
        if (b.given(i)) values[i] = *b.values[i];
        given[i] = b.given(i);
    }
    const std::vector<Location>& locs = b.locs;
    bool any_tensor_given = false, any_tensor_param = false;
    for (std::size_t i = 0; i < specs.size(); ++i) {
        if (specs[i].kind == ArgKind::tensor || specs[i].kind == ArgKind::tensors) {
            any_tensor_param = true;
            if (given[i]) any_tensor_given = true;
        }
    }
    if (any_tensor_param && !any_tensor_given) {
        // partial application: a layer over the missing required tensors
        std::vector<std::size_t> slots;
        for (std::size_t i = 0; i < specs.size(); ++i) {
            if (specs[i].kind == ArgKind::tensor && !specs[i].default_value) slots.push_back(i);
        }
        const OpSchema* schema = &op;
        const Signature* signature = &sig;
        Location loc = args.loc;
        return Value(fn_layer(op.name, static_cast<int>(slots.size()), 1,
                              [&in, schema, signature, values, given, slots, loc](std::span<const Var> xs, LayerContext&, const std::string&) {
                                  CallArgs inner;
                                  inner.loc = loc;
                                  std::vector<Value> filled = values;
                                  std::vector<bool> set = given;
                                  for (std::size_t j = 0; j < slots.size(); ++j) {
                                      filled[slots[j]] = Value(xs[j]);
                                      set[slots[j]] = true;
                                  }
                                  for (std::size_t i = 0; i < filled.size(); ++i) {
                                      if (!set[i]) continue;
                                      inner.keywords.emplace_back(schema->args[i].name, filled[i]);
                                      inner.keyword_locs.push_back(loc);
                                  }
                                  Value out = call_op(in, *schema, *signature, inner);
                                  return std::vector<Var>{out.get<Var>()};
                              }));
    }
    std::vector<ArgValue> bound(specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
        if (given[i]) {
            bound[i] = to_arg(in, values[i], specs[i], sig.name, locs[i]);
        } else if (specs[i].default_value) {
            bound[i] = *specs[i].default_value;
            // a floating dtype left to its default is the run's (--dtype f64 runs any model in f64)
            if (specs[i].name == "dtype" && std::holds_alternative<std::string>(bound[i]) &&
                std::get<std::string>(bound[i]) == "f32") {
                bound[i] = std::string(dtype_name(in.options().dtype));
            }
        } else {
            throw EvalError(args.loc, fmt::format("{}: missing argument '{}': {}", sig.name, specs[i].name, sig.text));
        }
    }
    // an op given no tensor makes one from the sizes it was given (Note [Element limit])
    std::optional<ElementLimit> limit;
    if (!any_tensor_given) limit.emplace(kMaxElements, sig.name, "an op may make from sizes a model gives");
    return Value(op.call(Args(std::move(bound))));
}

// Note [Pools as layers]
// The pools' settings may come first, as in Keras's MaxPooling2D(2): max_pool2d(2) is the layer
// max_pool2d(kernel = 2) and max_pool2d(x, 2) applies the op, so a positional argument that is
// not a tensor starts the settings after x.
bool takes_settings_first(const OpSchema& op) { return op.name == "max_pool2d" || op.name == "avg_pool2d"; }

std::optional<CallArgs> settings_first(const OpSchema& op, const CallArgs& args) {
    if (args.positional.empty() || args.positional[0].is<Var>()) return std::nullopt;
    if (args.positional.size() >= op.args.size()) {
        throw EvalError(args.positional_locs[op.args.size() - 1],
                        fmt::format("{} takes at most {} settings, got {}", op.signature(), op.args.size() - 1, args.positional.size()));
    }
    CallArgs settings = args;
    settings.positional.clear();
    settings.positional_locs.clear();
    for (std::size_t i = 0; i < args.positional.size(); ++i) {
        settings.keywords.insert(settings.keywords.begin() + static_cast<std::ptrdiff_t>(i), {op.args[i + 1].name, args.positional[i]});
        settings.keyword_locs.insert(settings.keyword_locs.begin() + static_cast<std::ptrdiff_t>(i), args.positional_locs[i]);
    }
    return settings;
}

// An op argument's kind as the language writes its values.
std::string language_kind(const ArgSpec& a) {
    const bool maybe_none = a.default_value && std::holds_alternative<std::monostate>(*a.default_value);
    std::string kind = a.kind == ArgKind::tensors  ? "[tensor, ...]"
                       : a.kind == ArgKind::ints    ? "integer or tuple"
                       : a.kind == ArgKind::padding ? "\"valid\" or \"same\" or pads"
                                                    : arg_kind_name(a.kind);
    return maybe_none ? kind + " or none" : kind;
}

// An op's signature under the language's name for it: its schema's arguments, kinds and doc.
Signature op_signature(const OpSchema& op, const std::string& name) {
    std::vector<Signature::Param> params;
    for (const auto& a : op.args) {
        params.push_back({a.name, a.default_value ? std::optional(arg_value_text(*a.default_value)) : std::nullopt, language_kind(a)});
    }
    return make_signature(name, std::move(params), std::nullopt, op.differentiable ? op.doc : op.doc + " (no gradient)");
}

// Note [Layers over ops]
// Every builtin has one name, and defining a name twice is an error (define_builtin). The
// builtins that take the name of an engine op are listed here, each with where the op goes:
// three layer constructors named as Keras names its layers (Embedding, Conv2D,
// LayerNormalization) leave the op another name; pure_attention, which applies the op itself
// when called on tensors and adds the penalties, leaves it none.
const std::map<std::string, std::string> kOpsUnderLayers = {
    {"embedding", "embedding_lookup"},
    {"conv2d", "conv2d_op"},
    {"layer_norm", "layer_norm_op"},
    {"pure_attention", ""},
};

void install_ops(Table& t) {
    for (const auto& op : registry().all()) {
        const OpSchema* schema = &op;
        auto under = kOpsUnderLayers.find(op.name);
        if (under != kOpsUnderLayers.end() && under->second.empty()) continue;   // only its layer applies it
        const std::string& name = under == kOpsUnderLayers.end() ? op.name : under->second;
        auto f = std::make_shared<Function>();
        f->name = name;
        f->signature = op_signature(op, name);
        const Signature* sig = &f->signature;   // the function outlives every call of it
        if (takes_settings_first(op)) {
            f->call = [schema, sig](Interpreter& in, CallArgs& args) {
                if (auto settings = settings_first(*schema, args)) return call_op(in, *schema, *sig, *settings);
                return call_op(in, *schema, *sig, args);
            };
        } else {
            f->call = [schema, sig](Interpreter& in, CallArgs& args) { return call_op(in, *schema, *sig, args); };
        }
    int tensors = 0;
        bool layerable = true;
        for (const auto& a : op.args) {
            if (a.kind == ArgKind::tensor && !a.default_value) ++tensors;
            if (a.kind == ArgKind::tensors) layerable = false;
        }
        f->layer_inputs = layerable && tensors > 0 ? tensors : -1;
        define_builtin(t, name) = Value(f);
    }
}

// ---------------------------------------------------------------- layers

std::vector<LayerPtr> layers_of(Interpreter& in, const CallArgs& args, const std::string& fname, const Signature& sig) {
    bind_arguments(fname, sig, args);   // layers only: a keyword is a mistake
    std::vector<LayerPtr> layers;
    for (std::size_t i = 0; i < args.positional.size(); ++i) {
        const Value& v = args.positional[i];
        if (!v.is<LayerPtr>() && !v.is<std::shared_ptr<Function>>()) {
            throw EvalError(args.positional_locs[i], fmt::format("{}: argument {} must be a layer, got {}", fname, i + 1, describe(v)));
        }
        layers.push_back(in.as_layer(v, args.positional_locs[i]));
    }
    return layers;
}

std::function<Var(Var)> penalty_fn(Interpreter& in, const Value& v, Location loc, const std::string& what, const std::string& layer) {
    if (v.is_none()) return nullptr;
    if (!v.is<std::shared_ptr<Function>>()) {
        throw EvalError(loc, fmt::format("{}: '{}' must be a regularizer such as l2(1e-4), got {}", layer, what, describe(v)));
    }
    auto f = v.get<std::shared_ptr<Function>>();
    return [&in, f, loc, what, layer](Var x) {
        CallArgs args;
        args.loc = loc;
        args.positional.push_back(Value(x));
        args.positional_locs.push_back(loc);
        Var penalty = in.as_tensor(f->call(in, args), loc, f->name.c_str());
        if (penalty.numel() != 1) {
            throw EvalError(loc, fmt::format("{}: the '{}' penalty must give one number, but {} gives {} {}", layer, what, f->name,
                                             dtype_name(penalty.dtype()), penalty.shape().str()));
        }
        return penalty.ndim() == 0 ? penalty : reshape(penalty, Shape{});
    };
}

// The builtin relu: the only function of that name, since a model cannot redefine a builtin.
bool is_builtin_relu(const Function& f) {
    return f.name == "relu" && f.signature.params.size() == 1 && f.layer_inputs == 1;
}

std::function<Var(Var)> activation_fn(Interpreter& in, const Value& v, Location loc, const std::string& layer_name) {
    if (v.is_none()) return nullptr;
    if (!v.is<LayerPtr>() && !v.is<std::shared_ptr<Function>>()) {
        throw EvalError(loc, fmt::format("{}: 'activation' must be a layer or an op such as relu, got {}", layer_name, describe(v)));
    }
    LayerPtr layer = in.as_layer(v, loc);
    if (layer->n_in() != 1 || layer->n_out() != 1) {
        throw EvalError(loc, fmt::format("{}: an activation takes one tensor and gives one; {} takes {} and gives {}", layer_name,
                                         layer->kind(), layer->n_in(), layer->n_out()));
    }
    return [&in, layer](Var x) {
        std::vector<Var> xs{x};
        return layer->forward(xs, in.layer_context()).at(0);
    };
}

// dense's and conv2d's settings besides their sizes: the activation (relu itself fuses into the
// op: one op, no temporaries, the same values; Note [Fused linear]), the bias, the initialisers
// and Keras's three penalties.
const std::vector<BuiltinParam> kernel_layer_params = {
    {"activation", Value(), "op or layer"},
    {"use_bias", Value(true)},
    {"trainable", Value(true)},
    {"kernel_init", Value(std::string("glorot_uniform")), "initializer"},
    {"bias_init", Value(std::string("zeros")), "initializer"},
    {"kernel", Value(), "regularizer"},
    {"bias", Value(), "regularizer"},
    {"activity", Value(), "regularizer"},
};

KernelLayerOptions kernel_layer_options(Interpreter& in, std::map<std::string, Value>& b, const CallArgs& args,
                                        const std::vector<BuiltinParam>& params, const std::string& layer) {
    KernelLayerOptions o;
    o.use_bias = bool_arg(b, layer, "use_bias", args);
    o.trainable = bool_arg(b, layer, "trainable", args);
    o.kernel_init = init_from_value(b["kernel_init"], arg_loc(args, params, "kernel_init"));
    o.bias_init = init_from_value(b["bias_init"], arg_loc(args, params, "bias_init"));
    if (const Value& act = b["activation"]; act.is<std::shared_ptr<Function>>() && is_builtin_relu(*act.get<std::shared_ptr<Function>>())) {
        o.fused_activation = Activation::relu;
    } else {
        o.activation = activation_fn(in, act, arg_loc(args, params, "activation"), layer);
    }
    o.kernel_regularizer = penalty_fn(in, b["kernel"], arg_loc(args, params, "kernel"), "kernel", layer);
    o.bias_regularizer = penalty_fn(in, b["bias"], arg_loc(args, params, "bias"), "bias", layer);
    o.activity_regularizer = penalty_fn(in, b["activity"], arg_loc(args, params, "activity"), "activity", layer);
    return o;
}

void install_kernel_layers(Table& t) {
    std::vector<BuiltinParam> dense_params = {{"n_units", std::nullopt, "integer"}};
    dense_params.insert(dense_params.end(), kernel_layer_params.begin(), kernel_layer_params.end());
    define_builtin(t, "dense") = Value(builtin("dense", "y = x @ w + b over the last axis", dense_params, [dense_params](Interpreter& in, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, dense_params, args);
        DenseOptions o = kernel_layer_options(in, b, args, dense_params, "dense");
        std::int64_t n = integer_arg(b, "dense", "n_units", args);
        if (n <= 0) throw EvalError(arg_loc(args, dense_params, "n_units"), fmt::format("dense: 'n_units' must be positive, got {}", n));
        return Value(dense(n, o));
    }));

    std::vector<BuiltinParam> conv_params = {{"filters", std::nullopt, "integer"},
                                             {"kernel_size", std::nullopt, "integer or (height, width)"},
                                             {"stride", Value(std::int64_t{1}), "integer or (height, width)"},
                                             {"padding", Value(std::string("valid")), "\"valid\" or \"same\" or pads"},
                                             {"dilation", Value(std::int64_t{1}), "integer or (height, width)"},
                                             {"groups", Value(std::int64_t{1})}};
    conv_params.insert(conv_params.end(), kernel_layer_params.begin(), kernel_layer_params.end());
    define_builtin(t, "conv2d") = Value(builtin("conv2d", "Keras's Conv2D over NHWC images", conv_params, [conv_params](Interpreter& in, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, conv_params, args);
        Conv2dLayerOptions o;
        static_cast<KernelLayerOptions&>(o) = kernel_layer_options(in, b, args, conv_params, "conv2d");
        // an integer or a pair (height, width), each at least `least`
        auto pair = [&](const char* name, std::int64_t least) {
            ArgValue v = to_arg(in, b[name], ArgSpec{name, ArgKind::ints, {}}, "conv2d", arg_loc(args, conv_params, name));
            const auto& xs = std::get<std::vector<std::int64_t>>(v);
            if ((xs.size() != 1 && xs.size() != 2) || std::any_of(xs.begin(), xs.end(), [least](std::int64_t x) { return x < least; })) {
                throw EvalError(arg_loc(args, conv_params, name),
                                fmt::format("conv2d: '{}' must be an integer or a pair (height, width) of integers >= {}, got {}", name, least, describe(b[name])));
            }
            return std::pair{xs.front(), xs.back()};
        };
        std::int64_t filters = integer_arg(b, "conv2d", "filters", args);
        if (filters <= 0) throw EvalError(arg_loc(args, conv_params, "filters"), fmt::format("conv2d: 'filters' must be positive, got {}", filters));
        auto [kernel_h, kernel_w] = pair("kernel_size", 1);
        std::tie(o.stride_h, o.stride_w) = pair("stride", 1);
        std::tie(o.dilation_h, o.dilation_w) = pair("dilation", 1);
        ArgValue padding = to_arg(in, b["padding"], ArgSpec{"padding", ArgKind::padding, {}}, "conv2d", arg_loc(args, conv_params, "padding"));
        try {
            o.padding = Args({padding}).padding(0, "conv2d");
        } catch (const ShapeError& e) {
            throw EvalError(arg_loc(args, conv_params, "padding"), e.what());
        }
        o.groups = integer_arg(b, "conv2d", "groups", args);
        if (o.groups <= 0 || filters % o.groups != 0) {
            throw EvalError(arg_loc(args, conv_params, "groups"),
                            fmt::format("conv2d: 'groups' must be positive and divide the {} filters, got {}", filters, o.groups));
        }
        return Value(conv2d_layer(filters, kernel_h, kernel_w, o));
    }));
}

void install_table_layers(Table& t) {
    std::vector<BuiltinParam> emb_params = {{"vocab", std::nullopt, "integer"}, {"d", std::nullopt, "integer"}, {"init", Value(std::string("normal")), "initializer"},
                                            {"trainable", Value(true)}};
    define_builtin(t, "embedding") = Value(builtin("embedding", "ids (...) -> (..., d)", emb_params, [emb_params](Interpreter&, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, emb_params, args);
        return Value(embedding_layer(integer_arg(b, "embedding", "vocab", args), integer_arg(b, "embedding", "d", args),
                                     init_from_value(b["init"], arg_loc(args, emb_params, "init")),
                                     bool_arg(b, "embedding", "trainable", args)));
    }));

    std::vector<BuiltinParam> ln_params = {{"eps", Value(1e-6)}, {"trainable", Value(true)}};
    auto ln = builtin("layer_norm", "a layer normalising the last axis, with learned gamma and beta", ln_params,
                   [ln_params](Interpreter& in, CallArgs& args, const Signature& sig) {
                       if (args.positional.empty() || !args.positional[0].is<Var>()) {
                           auto b = bind_builtin(sig, ln_params, args);
                           return Value(layer_norm_layer(number_arg(b, "layer_norm", "eps", args), bool_arg(b, "layer_norm", "trainable", args)));
                       }
                       // layer_norm(x, eps = ...) is layer_norm(eps = ...)(x): made and applied at once
                       CallArgs settings = args, apply = args;
                       settings.positional.clear();
                       settings.positional_locs.clear();
                       apply.keywords.clear();
                       apply.keyword_locs.clear();
                       auto b = bind_builtin(sig, ln_params, settings);
                       return in.call(Value(layer_norm_layer(number_arg(b, "layer_norm", "eps", settings),
                                                             bool_arg(b, "layer_norm", "trainable", settings))),
                                      apply);
                   });
    ln->layer_factory = true;
    define_builtin(t, "layer_norm") = Value(ln);
}

void install_combinators(Table& t) {
    auto combinator = [&](const std::string& name, LayerPtr (*f)(std::vector<LayerPtr>), const char* doc) {
        define_builtin(t, name) = Value(builtin(name, doc, {}, [name, f](Interpreter& in, CallArgs& args, const Signature& sig) {
            return Value(f(layers_of(in, args, name, sig)));
        }, "layers..."));
    };
    combinator("serial", &serial, "each layer takes its inputs from the top of the data stack");
    combinator("parallel", &parallel, "layers side by side over consecutive inputs");
    combinator("branch", &branch, "every layer sees copies of the same top inputs");

    std::vector<BuiltinParam> sel_params = {{"indices", std::nullopt, "list of integers"}, {"n_in", Value(), "integer"}};
    define_builtin(t, "select") = Value(builtin("select", "copies and reorders stack items", sel_params, [sel_params](Interpreter&, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, sel_params, args);
        const Value& iv = b["indices"];
        if (!iv.is<std::shared_ptr<TupleValue>>()) {
            throw EvalError(arg_loc(args, sel_params, "indices"), fmt::format("select: indices must be a list of integers, got {}", describe(iv)));
        }
        // stack positions are ints: a larger integer is out of range, not truncated to a small one
        auto position = [&](std::int64_t i, const char* param, const char* what) {
            if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max()) {
                throw EvalError(arg_loc(args, sel_params, param), fmt::format("select: {} {} is out of range", what, i));
            }
            return static_cast<int>(i);
        };
        std::vector<int> indices;
        for (const auto& e : *iv.get<std::shared_ptr<TupleValue>>()) {
            if (!e.is<std::int64_t>()) throw EvalError(arg_loc(args, sel_params, "indices"), "select: indices must be integers");
            indices.push_back(position(e.get<std::int64_t>(), "indices", "index"));
        }
        std::optional<int> n_in;
        if (!b["n_in"].is_none()) n_in = position(integer_arg(b, "select", "n_in", args), "n_in", "n_in");
        return Value(select(indices, n_in));
    }));

    const std::vector<BuiltinParam> res_params = {{"shortcut", Value(), "layer"}};
    define_builtin(t, "residual") = Value(builtin("residual", "x + layers(x)", res_params, [](Interpreter& in, CallArgs& args, const Signature& sig) {
        BoundArgs b = bind_arguments("residual", sig, args);
        LayerPtr shortcut;
        if (b.given(0) && !b.values[0]->is_none()) shortcut = in.as_layer(*b.values[0], b.locs[0]);
        std::vector<LayerPtr> layers;
        for (std::size_t i = 0; i < args.positional.size(); ++i) layers.push_back(in.as_layer(args.positional[i], args.positional_locs[i]));
        if (layers.empty()) throw EvalError(args.loc, "residual needs at least one layer");
        return Value(residual(std::move(layers), shortcut));
    }, "layers..."));

    // dup, swap, ...: `swap` and `swap()` are the layer; `swap(a, b)` applies it
    auto stack_layer = [&](const std::string& name, LayerPtr (*f)(), const char* doc) {
        auto fn = builtin(name, doc, {}, [name, f](Interpreter& in, CallArgs& args, const Signature& sig) {
            if (!args.positional.empty() && args.keywords.empty()) return in.call(Value(f()), args);
            bind_builtin(sig, {}, args);
            return Value(f());
        }, "");
        fn->layer_factory = true;
        define_builtin(t, name) = Value(fn);
    };
    stack_layer("dup", &dup, "x -> (x, x)");
    stack_layer("swap", &swap, "(a, b) -> (b, a)");
    stack_layer("drop", &drop, "removes the top of the stack");
    stack_layer("subtract_top", &subtract_top, "(a, b) -> b - a");
    stack_layer("identity", &identity, "x -> x");
}

// ---------------------------------------------------------------- regularizers and metrics

void install_regularizers(Table& t) {
    // Keras: l1(a) = a * sum|x|; l2(a) = a * sum x^2 (no 1/2); l1_l2 both; defaults 0.01.
    auto reg = [&](const std::string& name, std::vector<BuiltinParam> params, const char* doc) {
        define_builtin(t, name) = Value(builtin(name, doc, params, [name, params](Interpreter&, CallArgs& args, const Signature& sig) {
            auto b = bind_builtin(sig, params, args);
            Regularizer reg = name == "l1"   ? wengert::l1(number_arg(b, name, "l1", args))
                              : name == "l2" ? wengert::l2(number_arg(b, name, "l2", args))
                                             : wengert::l1_l2(number_arg(b, name, "l1", args), number_arg(b, name, "l2", args));
            static const std::vector<BuiltinParam> penalty_params = {{"x", std::nullopt, "tensor"}};
            auto penalty = builtin(reg.name, "a penalty on one tensor", penalty_params, [reg](Interpreter& in, CallArgs& a, const Signature& sig) {
                BoundArgs x = bind_arguments(reg.name, sig, a);
                return Value(reg(in.as_tensor(*x.values[0], x.locs[0], reg.name.c_str())));
            });
            penalty->layer_inputs = 1;
            return Value(penalty);
        }));
    };
    reg("l1", {{"l1", Value(0.01)}}, "a * sum(|x|), as Keras");
    reg("l2", {{"l2", Value(0.01)}}, "a * sum(x^2), as Keras (no 1/2)");
    reg("l1_l2", {{"l1", Value(0.01)}, {"l2", Value(0.01)}}, "both terms, as Keras");
}

// ---------------------------------------------------------------- records

void install_records(Table& t) {
    // the defaults are the engine's (optim.hpp), written once
    const SGDOptions sgd;
    record_builtin(t, "optimizer", "sgd",
                   {{"lr", Value(sgd.lr)}, {"momentum", Value(sgd.momentum)}, {"nesterov", Value(sgd.nesterov)}, {"weight_decay", Value(sgd.weight_decay)}},
                   "PyTorch's SGD");
    const AdamOptions adam;
    record_builtin(t, "optimizer", "adam",
                   {{"lr", Value(adam.lr)}, {"beta1", Value(adam.beta1)}, {"beta2", Value(adam.beta2)}, {"eps", Value(adam.eps)},
                    {"weight_decay", Value(adam.weight_decay)}},
                   "PyTorch's Adam");
    const AdamWOptions adamw;
    record_builtin(t, "optimizer", "adamw",
                   {{"lr", Value(adamw.lr)}, {"beta1", Value(adamw.beta1)}, {"beta2", Value(adamw.beta2)}, {"eps", Value(adamw.eps)},
                    {"weight_decay", Value(adamw.weight_decay)}},
                   "PyTorch's AdamW");
}

void install_schedules(Table& t) {
    const Value by_step(std::string("step"));
    record_builtin(t, "schedule", "constant_lr", {}, "the base value throughout");
    record_builtin(t, "schedule", "step_lr", {{"step_size", std::nullopt}, {"gamma", Value(0.1)}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "base * gamma^floor(step / step_size)");
    record_builtin(t, "schedule", "cosine_lr", {{"t_max", Value()}, {"min_lr", Value(0.0)}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "cosine decay to min_lr over t_max steps (none: all of them)");
    record_builtin(t, "schedule", "warmup", {{"steps", std::nullopt}, {"then", Value()}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "linear warm-up, then another schedule (none: constant_lr())");
    record_builtin(t, "schedule", "piecewise", {{"boundaries", std::nullopt}, {"values", std::nullopt}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "base * values[i] from boundary i-1 to boundary i");
    record_builtin(t, "schedule", "linear_lr", {{"start", Value(1.0)}, {"end", Value(0.0)}, {"steps", Value()}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "base * (start -> end) over steps (none: all of them), then end");
    record_builtin(t, "schedule", "exponential", {{"gamma", std::nullopt}, {"every", Value(1)}, {"by", by_step, "\"step\" or \"epoch\""}},
                   "base * gamma^floor(step / every)");
    record_builtin(t, "schedule", "reduce_on_plateau",
                   {{"metric", std::nullopt}, {"factor", Value(0.1)}, {"patience", Value(10)}, {"mode", Value(std::string("auto")), "\"auto\" or \"min\" or \"max\""},
                    {"threshold", Value(1e-4)}, {"min_lr", Value(0.0)}},
                   "the lr times factor when an eval value stops improving (PyTorch's ReduceLROnPlateau)");
    record_builtin(t, "monitor", "monitor", {{"metric", std::nullopt}, {"mode", Value(std::string("auto")), "\"auto\" or \"min\" or \"max\""}, {"min_delta", Value(0.0)}},
                   "an evaluation value to watch "
                   "(keep_best, early_stopping)");
    record_builtin(t, "early_stopping", "early_stopping", {{"metric", std::nullopt}, {"patience", Value(5)}, {"mode", Value(std::string("auto")), "\"auto\" or \"min\" or \"max\""},
                    {"min_delta", Value(0.0)}},
                   "stop when an eval value "
                   "has not improved for patience epochs (Keras's EarlyStopping)");
    record_builtin(t, "param_group", "group",
                   {{"params", std::nullopt, "pattern or list of patterns"}, {"lr", Value()}, {"lr_scale", Value()}, {"weight_decay", Value()}, {"momentum", Value()},
                    {"beta1", Value()}, {"beta2", Value()}, {"constraint", Value()}},
                   "optimizer settings for the parameters whose names match params (a pattern or a list of them)");
}

void install_data_records(Table& t) {
    record_builtin(t, "dataset", "fashion_mnist",
                   {{"split", Value(std::string("train"))}, {"layout", Value(std::string("flat")), "\"flat\" or \"image\""}, {"dir", Value()},
                    {"label_noise", Value(0.0)}, {"noise", Value(std::string("pairs")), "\"pairs\" or \"uniform\""}, {"noise_seed", Value(std::int64_t{1})}},
                   "images scaled to [0, 1] and labels, training labels flipped at rate label_noise");
    record_builtin(t, "dataset", "npz_data", {{"path", std::nullopt, "string"}, {"fields", Value(), "tuple of names"}},
                   "arrays of an .npz file, first axis = examples");
    record_builtin(t, "dataset", "sort_digits",
                   {{"n", Value(10000)}, {"min_len", Value(8)}, {"max_len", Value(16)}, {"seed", Value(1)}, {"pad", Value(10)}},
                   "digit sequences and their sorted versions");
    record_builtin(t, "dataset", "csv_data", {{"path", std::nullopt, "string"}, {"label", Value(), "column name"}, {"header", Value(true)}, {"delimiter", Value(std::string(","))}},
                   "numeric columns, and a label column as i64");
    record_builtin(t, "init", "normal_init", {{"mean", Value(0.0)}, {"stddev", Value(1.0)}}, "initial values drawn from N(mean, stddev^2)");
    record_builtin(t, "init", "uniform_init", {{"low", Value(-0.05)}, {"high", Value(0.05)}}, "initial values drawn from U(low, high)");
    record_builtin(t, "init", "constant_init", {{"value", std::nullopt}}, "every initial value the same");
    record_builtin(t, "constraint", "non_neg", {}, "w * (w >= 0) after each step");
    record_builtin(t, "constraint", "unit_norm", {{"axis", Value(0)}}, "w / (1e-7 + ||w||) after each step");
    record_builtin(t, "constraint", "max_norm", {{"max_value", Value(2.0)}, {"axis", Value(0)}},
                   "rescales columns whose norm exceeds max_value");
    record_builtin(t, "constraint", "simplex", {{"axis", Value(0)}},
                   "Euclidean projection of each slice onto the probability simplex");

    // Note [Label noise] in data.cpp: the flip matrix of the noise a dataset's labels carry,
    // T[j, i] = p(noisy label j | true label i), so a learned noise layer can be scored against it.
    std::vector<BuiltinParam> noise_params = {{"data", std::nullopt, "dataset or rate"}, {"noise", Value(), "\"pairs\" or \"uniform\""}, {"classes", Value(10)}};
    define_builtin(t, "label_noise_matrix") = Value(builtin(
        "label_noise_matrix",
        "T[j, i] = p(noisy j | true i) of a "
        "dataset's label noise (fashion_mnist(label_noise = ...)) or of a rate and kind", noise_params,
        [noise_params](Interpreter& in, CallArgs& args, const Signature& sig) {
            auto b = bind_builtin(sig, noise_params, args);
            const Value& data = b["data"];
            double rate = 0;
            std::string kind = "pairs";
            if (data.is<std::shared_ptr<Record>>() && data.get<std::shared_ptr<Record>>()->kind == "dataset") {
                const Record& r = *data.get<std::shared_ptr<Record>>();
                if (!r.fields.count("label_noise")) {
                    throw EvalError(arg_loc(args, noise_params, "data"), fmt::format("label_noise_matrix: {} has no label noise setting", r.name));
                }
                if (!b["noise"].is_none()) {
                    throw EvalError(arg_loc(args, noise_params, "noise"), "label_noise_matrix: the dataset says its noise kind; give 'noise' only with a rate");
                }
                const Value& rv = r.fields.at("label_noise");
                const Value& kv = r.fields.at("noise");
                rate = rv.is_number() ? rv.number() : -1;
                kind = kv.is<std::string>() ? kv.get<std::string>() : "";
            } else if (data.is_number()) {
                rate = data.number();
                if (!b["noise"].is_none()) kind = string_arg(b, "label_noise_matrix", "noise", args);
            } else {
                throw EvalError(arg_loc(args, noise_params, "data"),
                                fmt::format("label_noise_matrix: expected a dataset such as fashion_mnist(label_noise = 0.4) or a rate, got {}",
                                            describe(data)));
            }
            if (!(rate >= 0 && rate < 1)) throw EvalError(args.loc, fmt::format("label_noise_matrix: the rate must be in [0, 1), got {}", rate));
            if (kind != "pairs" && kind != "uniform") {
                throw EvalError(args.loc, fmt::format("label_noise_matrix: noise must be \"pairs\" or \"uniform\", got \"{}\"", kind));
            }
            std::int64_t k = integer_arg(b, "label_noise_matrix", "classes", args);
            if (k < 2 || k > 4096) throw EvalError(arg_loc(args, noise_params, "classes"), fmt::format("label_noise_matrix: classes must be in [2, 4096], got {}", k));
            std::vector<double> m(static_cast<std::size_t>(k * k), 0.0);
            for (std::int64_t i = 0; i < k; ++i) {   // column i: the true class
                for (std::int64_t j = 0; j < k; ++j) {
                    double p = j == i ? 1 - rate : kind == "uniform" ? rate / static_cast<double>(k - 1) : j == (i + 1) % k ? rate : 0.0;
                    m[static_cast<std::size_t>(j * k + i)] = p;
                }
            }
            return Value(Tape::current().input(Tensor::from_doubles(m, Shape{k, k}, in.options().dtype)));
        }));

    static const std::vector<BuiltinParam> shape_params = {{"x", std::nullopt, "tensor"}};
    define_builtin(t, "shape") = Value(builtin("shape", "the extents of x as a tuple", shape_params, [](Interpreter& in, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, shape_params, args);
        Var x = in.as_tensor(b["x"], args.loc, "shape");
        TupleValue out;
        for (auto d : x.shape()) out.push_back(Value(d));
        return Value(std::move(out));
    }));
}

}  // namespace

std::string op_table() {
    std::string rows = "| op | does |\n| --- | --- |\n";
    for (const auto& op : registry().all()) {
        auto under = kOpsUnderLayers.find(op.name);
        if (under != kOpsUnderLayers.end() && under->second.empty()) continue;
        const Signature sig = op_signature(op, under == kOpsUnderLayers.end() ? op.name : under->second);
        std::string doc;
        for (char c : sig.doc) doc += c == '|' ? std::string("\\|") : std::string(1, c);   // a | would end the cell
        rows += fmt::format("| `{}` | {} |\n", sig.text, doc);
    }
    return rows;
}

void install_builtins(Table& table) {
    install_ops(table);
    install_kernel_layers(table);
    install_table_layers(table);
    install_combinators(table);
    install_regularizers(table);
    install_records(table);
    install_schedules(table);
    install_data_records(table);
    install_attention(table);
    install_sampling(table);
}

std::vector<std::string> builtin_names() {
    Table t;
    install_builtins(t);
    std::vector<std::string> names;
    for (const auto& [k, _] : t) names.push_back(k);
    names.push_back("batch");
    return names;
}

Init init_from_value(const Value& value, Location loc) {
    if (value.is<std::string>()) {
        const std::string& name = value.get<std::string>();
        static const std::map<std::string, Init> named = {
            {"zeros", Init::zeros()},
            {"ones", Init::ones()},
            {"eye", Init::eye()},
            {"normal", Init::normal()},
            {"uniform", Init::uniform()},
            {"glorot_uniform", Init::glorot_uniform()},
            {"xavier_uniform", Init::glorot_uniform()},
            {"glorot_normal", Init::glorot_normal()},
            {"xavier_normal", Init::glorot_normal()},
            {"he_uniform", Init::he_uniform()},
            {"kaiming_uniform", Init::he_uniform()},
            {"he_normal", Init::he_normal()},
            {"kaiming_normal", Init::he_normal()},
            {"torch", Init::fan_in_uniform()},
        };
        auto it = named.find(name);
        if (it != named.end()) return it->second;
        std::vector<std::string> names;
        for (const auto& [k, _] : named) names.push_back(k);
        auto near = closest_names(name, names);
        if (!near.empty()) throw EvalError(loc, fmt::format("unknown initializer \"{}\"", name), near);
        throw EvalError(loc, fmt::format("unknown initializer \"{}\"; known: {}", name, fmt::join(names, ", ")));
    }
    if (value.is<std::shared_ptr<Record>>() && value.get<std::shared_ptr<Record>>()->kind == "init") {
        const Record& r = *value.get<std::shared_ptr<Record>>();
        if (r.name == "normal_init") return Init::normal(r.fields.at("mean").number(), r.fields.at("stddev").number());
        if (r.name == "uniform_init") return Init::uniform(r.fields.at("low").number(), r.fields.at("high").number());
        return Init::constant(r.fields.at("value").number());
    }
    throw EvalError(loc, fmt::format("expected an initializer (a name such as \"glorot_uniform\", or normal_init(...)), got {}",
                                     describe(value)));
}

Constraint constraint_from_value(const Value& value, Location loc) {
    if (!value.is<std::shared_ptr<Record>>() || value.get<std::shared_ptr<Record>>()->kind != "constraint") {
        throw EvalError(loc, fmt::format("expected a constraint such as non_neg() or simplex(axis = 0), got {}", describe(value)));
    }
    const Record& r = *value.get<std::shared_ptr<Record>>();
    auto axis = [&] {
        const Value& a = r.fields.at("axis");
        if (!a.is<std::int64_t>()) throw EvalError(r.loc, fmt::format("{}: axis must be an integer", r.name));
        return a.get<std::int64_t>();
    };
    if (r.name == "non_neg") return non_neg();
    if (r.name == "unit_norm") return unit_norm(axis());
    if (r.name == "max_norm") return max_norm(r.fields.at("max_value").number(), axis());
    return simplex(axis());
}

}  // namespace wengert::dsl
