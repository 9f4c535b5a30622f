// The interpreter, evaluation: statements and expressions, and running a model function
// (Interpreter::run). Loading is loader.cpp, static names resolve.cpp, calls calls.cpp.
#include "interpreter_impl.hpp"

namespace wengert::dsl {

// Note [Checking every statement]
// In check mode a statement that fails is reported and the names it defines are poisoned;
// later statements that read a poisoned name are skipped silently, the others still run.
// A def whose return fails returns poison, so its callers are skipped the same way.
// So one `wengert check` reports every independent error, and each only once.
std::optional<ReturnSignal> Interpreter::Impl::exec(const Stmt& stmt, Scope& scope) {
    // the standard library's statements report at the model's call (Note [Errors inside
    // the standard library])
    if (absent_inputs && !check_mode) {
        try {
            return exec_statement(stmt, scope);
        } catch (const Poisoned&) {
        }
    } else if (!check_mode || in_stdlib(stmt.loc)) {
        return exec_statement(stmt, scope);
    } else {
        try {
            return exec_statement(stmt, scope);
        } catch (const EvalError& e) {
            report(e);
        } catch (const Poisoned&) {
        }
    }
    for (const std::string& name : names_defined(stmt)) scope.vars[name] = poison_value();
    if (stmt.as<Return>()) return ReturnSignal{{poison_value()}};
    return std::nullopt;
}

std::vector<std::string> Interpreter::Impl::names_defined(const Stmt& stmt) {
    if (const auto* a = stmt.as<Assign>()) {
        std::vector<std::string> out;
        for (const auto& t : a->targets) out.push_back(t.name);
        return out;
    }
    if (const auto* l = stmt.as<LossTerm>()) return {l->name};
    if (const auto* m = stmt.as<MetricTerm>()) return {m->name};
    return {};
}

void Interpreter::Impl::report(const EvalError& e) { self.sink_.report(e, message_filter); }

std::optional<ReturnSignal> Interpreter::Impl::exec_statement(const Stmt& stmt, Scope& scope) {
    if (const auto* a = stmt.as<Assign>()) {
        Value v = unpoisoned(in_path(a->targets[0].name, [&] { return eval(*a->value, scope); }));
        if (a->targets.size() == 1) {
            bind(a->targets[0].name, v, a->targets[0].loc, scope);
        } else {
            if (!v.is<std::shared_ptr<TupleValue>>() || v.get<std::shared_ptr<TupleValue>>()->size() != a->targets.size()) {
                throw EvalError(stmt.loc, fmt::format("{} names on the left but the right side gives {}", a->targets.size(),
                                                      v.is<std::shared_ptr<TupleValue>>()
                                                          ? fmt::format("{} values", v.get<std::shared_ptr<TupleValue>>()->size())
                                                          : describe(v)));
            }
            const auto& values = *v.get<std::shared_ptr<TupleValue>>();
            for (std::size_t i = 0; i < values.size(); ++i) bind(a->targets[i].name, values[i], a->targets[i].loc, scope);
        }
        return std::nullopt;
    }
    if (const auto* l = stmt.as<LossTerm>()) {
        Value v = unpoisoned(in_path(l->name, [&] { return eval(*l->value, scope); }));
        Var x = scalar_term(v, stmt.loc, "loss", l->name);
        bind(l->name, v, stmt.loc, scope);
        record_loss(path_for(l->name), x);
        return std::nullopt;
    }
    if (const auto* m = stmt.as<MetricTerm>()) {
        Value v = unpoisoned(in_path(m->name, [&] { return eval(*m->value, scope); }));
        Var x = scalar_term(v, stmt.loc, "metric", m->name);
        bind(m->name, v, stmt.loc, scope);
        if (result) result->metrics.emplace_back(path_for(m->name), x);
        return std::nullopt;
    }
    const auto& r = std::get<Return>(stmt.node);
    ReturnSignal signal;
    for (const auto& e : r.values) signal.values.push_back(unpoisoned(eval(*e, scope)));
    return signal;
}

Var Interpreter::Impl::scalar_term(const Value& v, Location loc, const char* what, const std::string& name) {
    if (v.is_number()) return Tape::current().input(Tensor::scalar(v.number(), self.options_.dtype));
    if (!v.is<Var>() || v.get<Var>().numel() != 1) {
        throw EvalError(loc, fmt::format("{} '{}' must be a scalar, got {}", what, name, describe(v)));
    }
    Var x = v.get<Var>();
    return x.ndim() == 0 ? x : reshape(x, Shape{});
}

void Interpreter::Impl::record_loss(const std::string& name, Var x) {
    if (result) result->losses.emplace_back(name, x);
}

void Interpreter::Impl::bind(const std::string& name, const Value& v, Location loc, Scope& scope) {
    if (v.is<LayerPtr>() && v.get<LayerPtr>()->path().empty()) v.get<LayerPtr>()->set_path(path_for(name));
    scope.vars[name] = v;
    self.named_.push_back({path_for(name), v, loc});
}

Value Interpreter::Impl::lookup(const std::string& name, Location loc, const Scope& scope) {
    if (const Value* v = scope.find(name)) {
        return unpoisoned(*v);
    }
    if (auto it = globals.find(name); it != globals.end()) return it->second;
    if (auto it = param_decls.find(name); it != param_decls.end()) return Value(declared_param(*it->second, loc));
    if (auto it = constants.find(name); it != constants.end()) {
        // evaluated once, on first use; a tensor is kept as a fixed value (no gradient) that
        // enters each run's tape anew, and a layer takes the constant's name as its path
        if (auto ct = constant_tensors.find(name); ct != constant_tensors.end()) return Value(Tape::current().input(ct->second));
        auto cv = constant_values.find(name);
        if (cv != constant_values.end()) return cv->second;
        Scope empty;
        Value v = evaluating_once(name, loc, [&] { return eval(*it->second->value, empty); });
        if (v.is<Var>()) {
            constant_tensors[name] = v.get<Var>().value();
            return Value(Tape::current().input(constant_tensors[name]));
        }
        if (v.is<std::shared_ptr<TupleValue>>()) {
            for (const Value& e : *v.get<std::shared_ptr<TupleValue>>()) {
                if (e.is<Var>()) {
                    throw EvalError(it->second->value->loc, fmt::format("constant '{}': a tuple holding tensors cannot be a "
                                                                        "constant; make each tensor a constant of its own", name));
                }
            }
        }
        if (v.is<LayerPtr>() && v.get<LayerPtr>()->path().empty()) v.get<LayerPtr>()->set_path(name);
        constant_values[name] = v;
        return v;
    }
    if (name == "batch") return Value(self.batch_);
    if (auto it = builtins.find(name); it != builtins.end()) return it->second;
    std::vector<std::string> known;
    for (const Scope* s = &scope; s; s = s->parent) for (const auto& [k, _] : s->vars) if (k[0] != '$') known.push_back(k);
    for (const auto& [k, _] : globals) known.push_back(k);
    for (const auto& [k, _] : param_decls) known.push_back(k);
    for (const auto& [k, _] : constants) known.push_back(k);
    for (const auto& [k, _] : builtins) known.push_back(k);
    throw EvalError(loc, fmt::format("unknown name '{}'", name), closest_names(name, known));
}

Var Interpreter::Impl::declared_param(const ParamDecl& decl, Location use) {
    Parameter* p = self.params_.find(decl.name);
    if (!p) p = &evaluating_once(decl.name, use, [&]() -> Parameter& { return create_declared_param(decl); });
    return Tape::current().param(*p);
}

Value Interpreter::Impl::eval(const Expr& e, Scope& scope) {
    RecordSite site(&e);   // Note [Finite checks]: ops recorded here know where they came from
    try {
        return eval_inner(e, scope);
    } catch (const EvalError&) {
        throw;
    } catch (const NonFiniteError&) {
        throw;   // the trainer names the op's expression (site_location)
    } catch (const wengert::Error& err) {
        throw EvalError(e.loc, err.what());
    }
}

Value Interpreter::Impl::eval_inner(const Expr& e, Scope& scope) {
    if (const auto* n = e.as<IntegerLiteral>()) return Value(n->value);
    if (const auto* f = e.as<FloatLiteral>()) return Value(f->value);
    if (const auto* s = e.as<StringLiteral>()) return Value(s->value);
    if (const auto* b = e.as<BoolLiteral>()) return Value(b->value);
    if (e.as<NoneLiteral>()) return Value();
    if (const auto* n = e.as<Name>()) return lookup(n->id, e.loc, scope);
    if (const auto* u = e.as<Unary>()) return unary(u->op, eval(*u->operand, scope), e.loc);
    if (const auto* b = e.as<Binary>()) {
        // left to right, as written: the order parameters are created and random draws made
        Value lhs = eval(*b->lhs, scope);
        Value rhs = eval(*b->rhs, scope);
        return binary(b->op, lhs, rhs, e.loc);
    }
    if (const auto* c = e.as<Call>()) {
        Value callee = eval(*c->callee, scope);
        CallArgs args;
        args.loc = e.loc;
        // Note [Absent inputs]: an absent argument passes on by name to a def
        const bool to_def = callee.is<std::shared_ptr<Function>>() && callee.get<std::shared_ptr<Function>>()->is_def;
        for (const auto& a : c->args) {
            const Value* passed = nullptr;
            if (const auto* n = a->as<Name>(); n && to_def && absent_inputs) passed = scope.find(n->id);
            args.positional.push_back(passed && is_absent(*passed) ? *passed : eval(*a, scope));
            args.positional_locs.push_back(a->loc);
        }
        for (const auto& k : c->kwargs) {
            args.keywords.emplace_back(k.name, eval(*k.value, scope));
            args.keyword_locs.push_back(k.loc);
        }
        return self.call(callee, args);
    }
    if (const auto* t = e.as<Tuple>()) {
        TupleValue out;
        for (const auto& el : t->elements) out.push_back(eval(*el, scope));
        return Value(std::move(out));
    }
    if (const auto* l = e.as<List>()) {
        TupleValue out;
        for (const auto& el : l->elements) out.push_back(eval(*el, scope));
        return Value(std::move(out));
    }
    if (const auto* a = e.as<Attribute>()) return attribute(eval(*a->target, scope), a->name, e.loc);
    if (const auto* ix = e.as<Index>()) return index(*ix, scope, e.loc);
    throw EvalError(e.loc, "a slice (a:b) is only allowed inside [ ]");
}

Value Interpreter::Impl::attribute(const Value& target, const std::string& name, Location loc) {
    if (target.is<Var>()) {
        const Var& x = target.get<Var>();
        if (name == "shape") {
            TupleValue t;
            for (auto d : x.shape()) t.push_back(Value(d));
            return Value(std::move(t));
        }
        if (name == "ndim") return Value(static_cast<std::int64_t>(x.ndim()));
        if (name == "dtype") return Value(std::string(dtype_name(x.dtype())));
        throw EvalError(loc, fmt::format("a tensor has no attribute '{}'; it has shape, ndim and dtype", name),
                        closest_names(name, {"shape", "ndim", "dtype"}));
    }
    bool layer_like = target.is<std::shared_ptr<Function>>() && (target.get<std::shared_ptr<Function>>()->layer_factory ||
                                                                 target.get<std::shared_ptr<Function>>()->layer_inputs >= 0);
    if (target.is<LayerPtr>() || layer_like) {
        const LayerPtr l = self.as_layer(target, loc);   // relu.n_in: the op as a layer
        if (name == "n_in") return Value(static_cast<std::int64_t>(l->n_in()));
        if (name == "n_out") return Value(static_cast<std::int64_t>(l->n_out()));
        throw EvalError(loc, fmt::format("a layer has no attribute '{}'; it has n_in and n_out", name),
                        closest_names(name, {"n_in", "n_out"}));
    }
    throw EvalError(loc, fmt::format("{} has no attribute '{}'", describe(target), name));
}

std::int64_t Interpreter::Impl::integer_of(const Expr& e, Scope& scope, const char* what) {
    Value v = eval(e, scope);
    if (!v.is<std::int64_t>()) throw EvalError(e.loc, fmt::format("{} must be an integer, got {}", what, describe(v)));
    return v.get<std::int64_t>();
}

Value Interpreter::Impl::index(const Index& ix, Scope& scope, Location loc) {
    Value target = eval(*ix.target, scope);
    if (target.is<std::shared_ptr<TupleValue>>()) {
        const auto& t = *target.get<std::shared_ptr<TupleValue>>();
        if (ix.indices.size() != 1 || ix.indices[0]->as<Slice>()) throw EvalError(loc, "a tuple takes one integer index");
        std::int64_t i = integer_of(*ix.indices[0], scope, "a tuple index");
        auto n = static_cast<std::int64_t>(t.size());
        if (i < -n || i >= n) throw EvalError(ix.indices[0]->loc, fmt::format("index {} is out of range for a tuple of {}", i, n));
        return t[static_cast<std::size_t>(i < 0 ? i + n : i)];
    }
    Var x = self.as_tensor(target, ix.target->loc, "indexing");
    const Shape indexed = x.shape();
    if (static_cast<int>(ix.indices.size()) > x.ndim()) {
        throw EvalError(loc, fmt::format("{} indices for a tensor of shape {} (rank {})", ix.indices.size(), indexed.str(), x.ndim()));
    }
    int axis = 0;            // of x, which loses the axes integer indices remove
    int written_axis = 0;    // of the indexed tensor, for messages
    for (const auto& idx : ix.indices) {
        ++written_axis;
        if (const auto* s = idx->as<Slice>()) {
            std::int64_t n = x.shape()[axis];
            std::int64_t lo = s->lower ? integer_of(*s->lower, scope, "a slice bound") : 0;
            std::int64_t hi = s->upper ? integer_of(*s->upper, scope, "a slice bound") : n;
            std::int64_t step = s->step ? integer_of(*s->step, scope, "a slice step") : 1;
            x = slice(x, axis, lo, hi, step);
            ++axis;
        } else {
            std::int64_t i = integer_of(*idx, scope, "an index");
            std::int64_t n = x.shape()[axis];
            if (i < -n || i >= n) {
                throw EvalError(idx->loc, fmt::format("index {} is out of range for axis {} of {}", i, written_axis - 1, indexed.str()));
            }
            if (i < 0) i += n;
            x = squeeze(slice(x, axis, i, i + 1), axis);
        }
    }
    return Value(x);
}

Value Interpreter::Impl::unary(UnaryOp op, const Value& v, Location loc) {
    if (op == UnaryOp::negate) {
        if (v.is<std::int64_t>()) {
            std::int64_t i = v.get<std::int64_t>(), r = 0;
            if (__builtin_sub_overflow(std::int64_t{0}, i, &r)) throw EvalError(loc, fmt::format("-({}) does not fit in 64 bits", i));
            return Value(r);
        }
        if (v.is<double>()) return Value(-v.get<double>());
        return Value(neg(self.as_tensor(v, loc, "'-'")));
    }
    if (v.is<bool>()) return Value(!v.get<bool>());
    return Value(logical_not(self.as_tensor(v, loc, "'not'")));
}

// A schedule record used as a number: its value at this step (Note [Schedules]), logged
// under the statement's path.
Value Interpreter::Impl::scheduled(const Value& v) {
    if (!is_schedule(v)) return v;
    double x = schedule_value(*v.get<std::shared_ptr<Record>>(), self.progress_);
    if (result) result->schedules.emplace_back(joined(), x);
    return Value(x);
}

Value Interpreter::Impl::binary(BinaryOp op, const Value& a_in, const Value& b_in, Location loc) {
    const Value a = scheduled(a_in), b = scheduled(b_in);
    if (a.is_number() && b.is_number()) return numeric(op, a, b, loc);
    if ((op == BinaryOp::logical_and || op == BinaryOp::logical_or) && a.is<bool>() && b.is<bool>()) {
        return Value(op == BinaryOp::logical_and ? (a.get<bool>() && b.get<bool>()) : (a.get<bool>() || b.get<bool>()));
    }
    if (!(a.is<Var>() || a.is_number()) || !(b.is<Var>() || b.is_number())) {
        throw EvalError(loc, fmt::format("'{}' cannot combine {} and {}", op_text(op), describe(a), describe(b)));
    }
    // tensor with number: scalar forms keep the tensor's dtype
    if (a.is<Var>() && b.is_number()) {
        Var x = a.get<Var>();
        double s = b.number();
        switch (op) {
            case BinaryOp::add: return Value(x + s);
            case BinaryOp::subtract: return Value(x - s);
            case BinaryOp::multiply: return Value(x * s);
            case BinaryOp::divide: return Value(x / s);
            case BinaryOp::power: return Value(pow(x, s));
            default: break;
        }
    }
    if (a.is_number() && b.is<Var>()) {
        Var x = b.get<Var>();
        double s = a.number();
        switch (op) {
            case BinaryOp::add: return Value(s + x);
            case BinaryOp::subtract: return Value(s - x);
            case BinaryOp::multiply: return Value(s * x);
            case BinaryOp::divide: return Value(s / x);
            default: break;
        }
    }
    Var x = as_operand(a, b), y = as_operand(b, a);
    switch (op) {
        case BinaryOp::add: return Value(x + y);
        case BinaryOp::subtract: return Value(x - y);
        case BinaryOp::multiply: return Value(x * y);
        case BinaryOp::divide: return Value(x / y);
        case BinaryOp::power: return Value(pow(x, y));
        case BinaryOp::matmul: return Value(matmul(x, y));
        case BinaryOp::equal: return Value(eq(x, y));
        case BinaryOp::not_equal: return Value(ne(x, y));
        case BinaryOp::less: return Value(lt(x, y));
        case BinaryOp::less_equal: return Value(le(x, y));
        case BinaryOp::greater: return Value(gt(x, y));
        case BinaryOp::greater_equal: return Value(ge(x, y));
        case BinaryOp::logical_and: return Value(logical_and(x, y));
        case BinaryOp::logical_or: return Value(logical_or(x, y));
        case BinaryOp::floor_divide: case BinaryOp::modulo: break;
    }
    throw EvalError(loc, fmt::format("'{}' is not defined for tensors", op_text(op)));
}

// A number beside a tensor becomes a 0-d tensor of the tensor's dtype.
Var Interpreter::Impl::as_operand(const Value& v, const Value& other) {
    if (v.is<Var>()) return v.get<Var>();
    DType dtype = other.is<Var>() ? other.get<Var>().dtype() : self.options_.dtype;
    return Tape::current().input(Tensor::scalar(v.number(), dtype));
}

// Integers are 64-bit, and a result that does not fit is an error, not a wrapped value.
Value Interpreter::Impl::integer_arithmetic(BinaryOp op, std::int64_t i, std::int64_t j, Location loc) {
    std::int64_t r = 0;
    bool overflow = op == BinaryOp::add        ? __builtin_add_overflow(i, j, &r)
                    : op == BinaryOp::subtract ? __builtin_sub_overflow(i, j, &r)
                                               : __builtin_mul_overflow(i, j, &r);
    if (overflow) throw EvalError(loc, fmt::format("{} {} {} does not fit in 64 bits", i, op_text(op), j));
    return Value(r);
}

Value Interpreter::Impl::numeric(BinaryOp op, const Value& a, const Value& b, Location loc) {
    bool ints = a.is<std::int64_t>() && b.is<std::int64_t>();
    std::int64_t i = ints ? a.get<std::int64_t>() : 0, j = ints ? b.get<std::int64_t>() : 0;
    double x = a.number(), y = b.number();
    switch (op) {
        case BinaryOp::add: return ints ? integer_arithmetic(op, i, j, loc) : Value(x + y);
        case BinaryOp::subtract: return ints ? integer_arithmetic(op, i, j, loc) : Value(x - y);
        case BinaryOp::multiply: return ints ? integer_arithmetic(op, i, j, loc) : Value(x * y);
        case BinaryOp::divide:
            if (y == 0) throw EvalError(loc, "division by zero");
            return Value(x / y);
        // Python's floor division and the remainder that goes with it: a == (a // b) * b + a % b,
        // a % b has b's sign (-7 // 2 is -4, -7 % 2 is 1)
        case BinaryOp::floor_divide:
            if (y == 0) throw EvalError(loc, "division by zero");
            if (!ints) return Value(std::floor(x / y));
            if (i == std::numeric_limits<std::int64_t>::min() && j == -1) {
                throw EvalError(loc, fmt::format("{} // {} does not fit in 64 bits", i, j));
            }
            return Value(i / j - ((i % j != 0 && (i % j < 0) != (j < 0)) ? 1 : 0));
        case BinaryOp::modulo: {
            if (!ints) throw EvalError(loc, "'%' needs integers");
            if (j == 0) throw EvalError(loc, "division by zero");
            std::int64_t r = j == -1 ? 0 : i % j;   // INT64_MIN % -1 overflows in C++
            return Value(r != 0 && (r < 0) != (j < 0) ? r + j : r);
        }
        case BinaryOp::power: return Value(std::pow(x, y));
        case BinaryOp::equal: return Value(x == y);
        case BinaryOp::not_equal: return Value(x != y);
        case BinaryOp::less: return Value(x < y);
        case BinaryOp::less_equal: return Value(x <= y);
        case BinaryOp::greater: return Value(x > y);
        case BinaryOp::greater_equal: return Value(x >= y);
        default: break;
    }
    throw EvalError(loc, fmt::format("'{}' is not defined for numbers", op_text(op)));
}

// ---------------------------------------------------------------- Interpreter

Interpreter::Interpreter(DiagnosticSink& sink, ParamStore& params, InterpreterOptions options)
    : sink_(sink), params_(params), options_(std::move(options)), impl_(std::make_unique<Impl>(*this)) {}

Interpreter::~Interpreter() = default;

void Interpreter::set_seed(std::uint64_t seed) {
    if (!params_.all().empty()) throw std::logic_error("set_seed: parameters were created under the seed before");
    options_.seed = seed;
    impl_->ctx.reset();
    impl_->constant_values.clear();
    impl_->constant_tensors.clear();
}

void Interpreter::set_message_filter(MessageFilter filter) {
    impl_->message_filter = std::move(filter);
}

const FunctionDef* Interpreter::find_function(const std::string& name) const {
    auto it = impl_->function_defs.find(name);
    return it == impl_->function_defs.end() ? nullptr : it->second;
}

const TrainBlock* Interpreter::train_block() const {
    return impl_->train_blocks.empty() ? nullptr : impl_->train_blocks.front();
}

const ParamDecl* Interpreter::find_param_decl(const std::string& name) const {
    auto it = impl_->param_decls.find(name);
    return it == impl_->param_decls.end() ? nullptr : it->second;
}

RunResult Interpreter::run(const std::string& name, const std::vector<Tensor>& inputs, Mode mode) {
    const FunctionDef* def = find_function(name);
    if (!def) throw EvalError(Location{}, fmt::format("no function '{}' in the model", name));
    ModeGuard mode_guard(mode);
    named_.clear();
    impl_->path.clear();
    impl_->kind_counts.clear();
    impl_->ctx = layer_context_for(params_, options_);
    impl_->ctx->wanted = wanted_;
    offered_.clear();
    RunResult result;
    impl_->result = &result;
    auto first = std::find_if(inputs.begin(), inputs.end(), [](const Tensor& t) { return t.defined(); });
    batch_ = first == inputs.end() || first->ndim() == 0 ? 1 : first->shape()[0];
    CallArgs args;
    args.loc = Location{impl_->main->file, 0, 0, 0};
    Tape& tape = Tape::current();
    std::vector<std::string> absent;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& t = inputs[i];
        if (!t.defined()) {
            absent.push_back(i < def->params.size() ? def->params[i].name : std::to_string(i));
            args.positional.push_back(absent_value());
        } else {
            Tensor x = is_floating(t.dtype()) && t.dtype() != options_.dtype ? t.to(options_.dtype) : t;
            args.positional.push_back(Value(tape.input(x)));
        }
        args.positional_locs.push_back(Location{});
    }
    if (inputs.size() != def->params.size()) {
        throw EvalError(Location{impl_->main->file, 0, 0, 0},
                        fmt::format("{} takes {} inputs but the data gives {}", name, def->params.size(), inputs.size()));
    }
    impl_->absent_inputs = !absent.empty();
    Value out;
    {
        ScopeExit reset([this] {
            impl_->result = nullptr;
            impl_->absent_inputs = false;
        });
        out = impl_->call_def(*def, args);
    }
    offered_ = impl_->ctx->offered;
    for (const auto& [value_name, v] : impl_->ctx->inspected) named_.push_back({value_name, Value(v), Location{}});
    if (!absent.empty() && is_poison(out)) {
        throw EvalError(Location{impl_->main->file, 0, 0, 0}, fmt::format("{}: its return value needs {} '{}', which the inputs do not give", name,
                                              absent.size() == 1 ? "argument" : "arguments", fmt::join(absent, "', '")));
    }
    for (auto& [loss_name, v] : impl_->ctx->added_losses) result.losses.emplace_back(loss_name, v);
    if (out.is<std::shared_ptr<TupleValue>>()) result.outputs = *out.get<std::shared_ptr<TupleValue>>();
    else if (!out.is_none()) result.outputs.push_back(out);
    for (const auto& [_, v] : result.losses) result.objective = result.objective.defined() ? add(result.objective, v) : v;
    return result;
}

Value Interpreter::eval_global(const Expr& expr) {
    Scope empty;
    return impl_->eval(expr, empty);
}

Var Interpreter::as_tensor(const Value& value_in, Location loc, const char* what) {
    if (value_in.is<Var>()) return value_in.get<Var>();
    const Value value = impl_->scheduled(value_in);
    if (value.is_number()) return Tape::current().input(Tensor::scalar(value.number(), options_.dtype));
    throw EvalError(loc, fmt::format("{} expects a tensor, got {}", what, describe(value)));
}

LayerContext& Interpreter::layer_context() {
    if (!impl_->ctx) impl_->ctx = layer_context_for(params_, options_);
    return *impl_->ctx;
}

void Interpreter::name_layer(Layer& layer) {
    if (!layer.path().empty()) return;
    std::string prefix = impl_->joined();
    std::string kind = layer.kind();
    int n = impl_->kind_counts[prefix + "/" + kind]++;
    std::string name = n == 0 ? kind : fmt::format("{}_{}", kind, n);
    layer.set_path(prefix.empty() ? name : prefix + "." + name);
}

void Interpreter::set_check_mode(bool on) { impl_->check_mode = on; }

void Interpreter::record_loss(const std::string& name, Var value) { impl_->record_loss(name, value); }

Parameter& Interpreter::Impl::create_declared_param(const ParamDecl& decl) {
    ElementLimit limit(kMaxElements, fmt::format("param '{}'", decl.name), "a parameter may have");
    DType dtype = self.options_.dtype;
    if (decl.type.dtype != "f32" && decl.type.dtype != "f64") {
        throw EvalError(decl.type.loc, fmt::format("param '{}' must be f32 or f64, not {}", decl.name, decl.type.dtype));
    }
    Shape shape;
    for (const auto& d : decl.type.dims) {
        const auto* n = std::get_if<std::int64_t>(&d.size);
        if (!n) throw EvalError(d.loc, fmt::format("param '{}' needs a fixed shape; '{}' is symbolic", decl.name, std::get<std::string>(d.size)));
        shape.push_back(*n);
    }
    Tape scratch;   // the initializer's ops are not part of the model's graph
    NoGrad no_grad;
    Scope empty;
    Value init = eval(*decl.init, empty);
    Parameter* p = nullptr;
    if (init.is<Var>()) {
        Tensor t = init.get<Var>().value();
        if (!(t.shape() == shape)) {
            throw EvalError(decl.init->loc, fmt::format("param '{}' is declared {}{} but its initial value has shape {}", decl.name,
                                                        decl.type.dtype, shape.str(), t.shape().str()));
        }
        p = &self.params_.add(decl.name, t.to(dtype).clone());
    } else if (init.is<std::string>() || init.is<std::shared_ptr<Record>>()) {
        Generator gen(hash_name(self.options_.seed, decl.name));
        p = &self.params_.create(decl.name, shape, dtype, init_from_value(init, decl.init->loc), gen);
    } else if (init.is_number()) {
        p = &self.params_.add(decl.name, Tensor::full(shape, init.number(), dtype));
    } else {
        throw EvalError(decl.init->loc, fmt::format("param '{}': an initial value must be a tensor, a number or an initializer, "
                                                    "got {}", decl.name, describe(init)));
    }
    for (const auto& attr : decl.attributes) {
        Value v = eval(*attr.value, empty);
        if (attr.name == "constraint") {
            p->constraints.push_back(constraint_from_value(v, attr.loc));
        } else if (attr.name == "trainable") {
            if (!v.is<bool>()) throw EvalError(attr.loc, fmt::format("param '{}': trainable must be true or false, got {}", decl.name, describe(v)));
            p->trainable = v.get<bool>();
        } else {
            throw EvalError(attr.loc, fmt::format("param '{}' has no attribute '{}'; it takes constraint and trainable", decl.name, attr.name),
                            closest_names(attr.name, {"constraint", "trainable"}));
        }
    }
    return *p;
}

}  // namespace wengert::dsl

