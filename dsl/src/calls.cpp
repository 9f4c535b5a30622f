// The interpreter, calls: defs and layer definitions as callable values, their arguments
// bound and checked against annotations, and any value called or used as a layer.
#include "binder.hpp"
#include "interpreter_impl.hpp"

namespace wengert::dsl {

namespace {

// A default as a signature shows it: a literal, a name or a negated number as written, any
// other expression as "...".
std::string default_source(const Expr& e) {
    if (const auto* i = e.as<IntegerLiteral>()) return fmt::format("{}", i->value);
    if (const auto* f = e.as<FloatLiteral>()) return fmt::format("{}", f->value);
    if (const auto* s = e.as<StringLiteral>()) return fmt::format("\"{}\"", s->value);
    if (const auto* b = e.as<BoolLiteral>()) return b->value ? "true" : "false";
    if (e.as<NoneLiteral>()) return "none";
    if (const auto* n = e.as<Name>()) return n->id;
    if (const auto* u = e.as<Unary>(); u && u->op == UnaryOp::negate && (u->operand->as<IntegerLiteral>() || u->operand->as<FloatLiteral>())) {
        return "-" + default_source(*u->operand);
    }
    return "...";
}

}  // namespace

const Signature& Interpreter::Impl::signature_of(const std::string& name, const std::vector<Param>& params, bool applied_at_once) {
    // made once per definition (its parameters live as long as the loaded modules), not per call
    auto [it, made] = signatures.try_emplace({&params, applied_at_once});
    if (!made) return it->second;
    std::vector<Signature::Param> parts;
    for (const auto& p : params) {
        parts.push_back({p.name, p.default_value ? std::optional(default_source(*p.default_value)) : std::nullopt,
                         p.type ? annotation_text(*p.type) : std::string()});
    }
    // a layer without parameters applied at once: `swap2(a, b)` is `swap2()(a, b)`
    it->second = make_signature(name, std::move(parts), applied_at_once && params.empty() ? std::optional<std::string>("") : std::nullopt);
    return it->second;
}

Value Interpreter::Impl::make_function(const FunctionDef& def) {
    auto f = std::make_shared<Function>();
    f->name = def.name;
    f->signature = signature_of(def.name, def.params, false);
    f->layer_inputs = static_cast<int>(std::count_if(def.params.begin(), def.params.end(), [](const Param& p) { return !p.default_value; }));
    f->layer_outputs = std::max(1, count_returns(def));
    const FunctionDef* d = &def;
    f->is_def = true;
    f->call = [this, d](Interpreter&, CallArgs& args) { return call_def(*d, args); };
    return Value(f);
}

Value Interpreter::Impl::make_layer_def(const LayerDef& def) {
    auto f = std::make_shared<Function>();
    f->name = def.name;
    f->signature = signature_of(def.name, def.params, true);
    f->layer_factory = true;
    const LayerDef* d = &def;
    f->call = [this, d](Interpreter&, CallArgs& args) {
        if (d->params.empty() && !args.positional.empty() && args.keywords.empty()) {
            CallArgs none;
            none.loc = args.loc;
            return self.call(build_layer_def(*d, none), args);
        }
        return build_layer_def(*d, args);
    };
    return Value(f);
}

Value Interpreter::Impl::build_layer_def(const LayerDef& d, CallArgs& args) {
    auto nesting = nested(d.name, args.loc);   // a layer made of itself
    Scope scope;
    bind_params(d.name, d.params, args, scope);
    Value body = reporting_at_call(d.name, args.loc, [&] { return eval(*d.body, scope); });
    if (!body.is<LayerPtr>() && !body.is<std::shared_ptr<Function>>()) {
        throw EvalError(d.body->loc, fmt::format("layer {}: its value must be a layer, got {}", d.name, describe(body)));
    }
    return Value(LayerPtr(std::make_shared<DefinedLayer>(d.name, self.as_layer(body, d.body->loc))));
}

void Interpreter::Impl::bind_params(const std::string& fname, const std::vector<Param>& params, CallArgs& args, Scope& scope) {
    BoundArgs b = bind_arguments(fname, signature_of(fname, params, false), args);
    for (std::size_t i = 0; i < params.size(); ++i) if (b.given(i)) scope.vars[params[i].name] = *b.values[i];
    // a default may read the arguments given
    for (std::size_t i = 0; i < params.size(); ++i) if (!b.given(i)) scope.vars[params[i].name] = eval(*params[i].default_value, scope);
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (params[i].type && !is_absent(scope.vars[params[i].name])) check_annotation(fname, params[i], scope.vars[params[i].name], b.locs[i], scope);
    }
}

// Checks a tensor argument against `x: f32[B, 784]`; symbolic sizes bind on first use
// (B is also bound to the batch size). A mismatch is reported at the argument (`arg_loc`),
// with a note at the declaration; inputs from data have no argument location, and are
// reported at the declaration.
void Interpreter::Impl::check_annotation(const std::string& fname, const Param& param, const Value& value, Location arg_loc, Scope& scope) {
    const TypeAnnotation& t = *param.type;
    auto mismatch = [&](const std::string& given) {
        EvalError e(arg_loc.file ? arg_loc : param.loc,
                    fmt::format("{}: parameter '{}' is declared {} but was given {}", fname, param.name, annotation_text(t), given));
        if (arg_loc.file) e.notes.push_back({param.loc, fmt::format("'{}' is declared here", param.name)});
        return e;
    };
    if (!value.is<Var>()) throw mismatch(describe(value));
    const Var& x = value.get<Var>();
    DType want = parse_dtype(t.dtype, "annotation");
    bool ok = x.ndim() == static_cast<int>(t.dims.size());
    bool dtype_ok = want == x.dtype() || (is_floating(want) && is_floating(x.dtype()));
    for (std::size_t i = 0; ok && i < t.dims.size(); ++i) {
        std::int64_t actual = x.shape()[static_cast<int>(i)];
        if (const auto* n = std::get_if<std::int64_t>(&t.dims[i].size)) {
            ok = *n == actual;
        } else {
            const std::string& sym = std::get<std::string>(t.dims[i].size);
            std::string key = "$dim:" + sym;
            if (const Value* bound = scope.find(key)) ok = bound->get<std::int64_t>() == actual;
            else if (sym == "B") ok = actual == self.batch_;
            else scope.vars[key] = Value(actual);
        }
    }
    if (!ok || !dtype_ok) throw mismatch(fmt::format("{}{}", dtype_name(x.dtype()), x.shape().str()));
}

std::string Interpreter::Impl::annotation_text(const TypeAnnotation& t) const {
    std::vector<std::string> dims;
    for (const auto& d : t.dims) {
        if (const auto* n = std::get_if<std::int64_t>(&d.size)) dims.push_back(std::to_string(*n));
        else dims.push_back(std::get<std::string>(d.size));
    }
    return fmt::format("{}[{}]", t.dtype, fmt::join(dims, ", "));
}

Value Interpreter::Impl::call_def(const FunctionDef& def, CallArgs& args) {
    auto nesting = nested(def.name, args.loc);
    Scope scope;
    bind_params(def.name, def.params, args, scope);
    return reporting_at_call(def.name, args.loc, [&] {
        for (const auto& stmt : def.body) {
            if (auto r = exec(stmt, scope)) {
                if (r->values.size() == 1) return r->values[0];
                return Value(TupleValue(r->values));
            }
        }
        return Value();
    });
}

// ---------------------------------------------------------------- Interpreter

Value Interpreter::call(const Value& callee, CallArgs& args) {
    if (callee.is<std::shared_ptr<Function>>()) return callee.get<std::shared_ptr<Function>>()->call(*this, args);
    if (callee.is<LayerPtr>()) {
        const LayerPtr& layer = callee.get<LayerPtr>();
        if (!args.keywords.empty()) {
            throw EvalError(args.keyword_locs[0], fmt::format("a {} layer is applied to tensors only; keyword '{}' belongs "
                                                              "where the layer is made", layer->kind(), args.keywords[0].first));
        }
        if (static_cast<int>(args.positional.size()) != layer->n_in()) {
            throw EvalError(args.loc, fmt::format("{} takes {} input{} but was given {}", layer->kind(), layer->n_in(),
                                                  layer->n_in() == 1 ? "" : "s", args.positional.size()));
        }
        std::vector<Var> xs;
        for (std::size_t i = 0; i < args.positional.size(); ++i) {
            xs.push_back(as_tensor(args.positional[i], args.positional_locs[i], layer->kind().c_str()));
        }
        name_layer(*layer);
        std::vector<Var> ys;
        try {
            ys = layer->forward(xs, layer_context());
        } catch (const NonFiniteError&) {
            throw;
        } catch (const Error& e) {
            // the engine's message names the failing op; say which layer met which inputs
            std::vector<std::string> shapes;
            for (const auto& x : xs) shapes.push_back(x.shape().str());
            throw EvalError(args.loc, fmt::format("{} '{}' applied to {}: {}", layer->kind(), layer->path(), fmt::join(shapes, " and "),
                                                  e.what()));
        }
        if (ys.size() == 1) return Value(ys[0]);
        TupleValue t;
        for (const auto& y : ys) t.push_back(Value(y));
        return Value(std::move(t));
    }
    throw EvalError(args.loc, fmt::format("{} cannot be called", describe(callee)));
}

LayerPtr Interpreter::as_layer(const Value& value, Location loc) {
    if (value.is<LayerPtr>()) return value.get<LayerPtr>();
    if (value.is<std::shared_ptr<Function>>()) {
        auto f = value.get<std::shared_ptr<Function>>();
        if (f->layer_factory) {
            CallArgs none;
            none.loc = loc;
            return as_layer(f->call(*this, none), loc);
        }
        if (f->layer_inputs >= 0) {
            return fn_layer(f->name, f->layer_inputs, f->layer_outputs,
                            [this, f, loc](std::span<const Var> xs, LayerContext&, const std::string& path) {
                                CallArgs args;
                                args.loc = loc;
                                for (const auto& x : xs) {
                                    args.positional.push_back(Value(x));
                                    args.positional_locs.push_back(loc);
                                }
                                // the layer's path is complete: the def's statements run under it alone,
                                // and name their layers as in any other application of this layer, so
                                // applying it again shares their parameters
                                std::vector<std::string> caller_path = impl_->path;
                                if (!path.empty()) {
                                    impl_->path = {path};
                                    std::erase_if(impl_->kind_counts, [&](const auto& count) {
                                        return count.first.rfind(path + "/", 0) == 0 || count.first.rfind(path + ".", 0) == 0;
                                    });
                                }
                                Value out;
                                try {
                                    out = f->call(*this, args);
                                } catch (...) {
                                    impl_->path = caller_path;
                                    throw;
                                }
                                impl_->path = caller_path;
                                unpoisoned(out);
                                std::vector<Var> ys;
                                if (out.is<std::shared_ptr<TupleValue>>()) {
                                    for (const auto& v : *out.get<std::shared_ptr<TupleValue>>()) ys.push_back(as_tensor(v, loc, f->name.c_str()));
                                } else {
                                    ys.push_back(as_tensor(out, loc, f->name.c_str()));
                                }
                                return ys;
                            });
        }
    }
    if (value.is<std::shared_ptr<Function>>()) {
        throw EvalError(loc, fmt::format("{} cannot act as a layer: only functions that take single tensors can", describe(value)));
    }
    throw EvalError(loc, fmt::format("expected a layer, got {}", describe(value)));
}


}  // namespace wengert::dsl
