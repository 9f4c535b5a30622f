// Internal: the interpreter's state (Interpreter::Impl) and what its phases share. Its member
// functions are defined by phase: loader.cpp (loading and imports), resolve.cpp (static names,
// before anything runs), calls.cpp (defs, layer definitions, and calling any value),
// interpreter.cpp (statements and expressions: running a model). value.cpp describes values.
#pragma once

#include "wengert/dsl/interpreter.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <sstream>
#include <type_traits>

#include "builtins.hpp"
#include "schedules.hpp"
#include "wengert/dsl/parser.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace fs = std::filesystem;

// Runs its function when it goes out of scope, on every way out, exceptions included: the one
// way the interpreter undoes a push onto its path, a depth count or a run's settings.
template <class F> class ScopeExit {
public:
    explicit ScopeExit(F f) : f_(std::move(f)) {}
    ~ScopeExit() { f_(); }
    ScopeExit(const ScopeExit&) = delete;
    ScopeExit& operator=(const ScopeExit&) = delete;

private:
    F f_;
};

// A `layer name(...) = expr` definition, applied: behaves as its body's layer, under its own
// kind so paths read "y.attention_qkv.parallel.dense_0". A body that is a layer with a path
// already (`layer enc2 = enc`, enc a bound layer) keeps it (Note [Parameter names]).
class DefinedLayer : public Layer {
public:
    DefinedLayer(std::string kind, LayerPtr inner) : kind_(std::move(kind)), inner_(std::move(inner)) {}
    int n_in() const override { return inner_->n_in(); }
    int n_out() const override { return inner_->n_out(); }
    std::string kind() const override { return kind_; }
    std::vector<Var> forward(std::span<const Var> inputs, LayerContext& ctx) override { return inner_->forward(inputs, ctx); }
    void set_path(const std::string& path) override {
        path_ = path;
        if (inner_->path().empty()) inner_->set_path(path);
    }
    std::vector<LayerPtr> children() const override { return inner_->children(); }

private:
    std::string kind_;
    LayerPtr inner_;
};

struct Scope {
    std::map<std::string, Value> vars;
    const Scope* parent = nullptr;
    const Value* find(const std::string& name) const {
        for (const Scope* s = this; s; s = s->parent) {
            auto it = s->vars.find(name);
            if (it != s->vars.end()) return &it->second;
        }
        return nullptr;
    }
};

struct ReturnSignal {
    std::vector<Value> values;
};

// Thrown when an expression reads a name whose statement already failed (check mode): the
// statement is skipped without a second, knock-on error.
struct Poisoned {};

// The value of a name whose statement failed, and of a call whose return statement failed.
inline Value poison_value() {
    static const auto poison = std::make_shared<Record>(Record{"$poison", "", {}, {}});
    return Value(poison);
}

// Note [Absent inputs]
// `wengert predict` runs a model function on inputs without labels: an argument the inputs do
// not give is bound to the absent value. Like poison, reading it skips the statement that read
// it and poisons the names that statement defines, so a `loss` or `metric` on the labels is
// skipped while the statements that compute the outputs run. Unlike poison, it may be passed on
// by name to another def (`return score(logits, targets, tokens)`), whose statements are then
// skipped the same way; any other use (an op, a builtin, a layer) reads it. A return value that
// read it makes the run an error naming the absent arguments (Interpreter::run).
inline Value absent_value() {
    static const auto absent = std::make_shared<Record>(Record{"$poison", "$absent", {}, {}});
    return Value(absent);
}

inline bool is_poison(const Value& v) { return v.is<std::shared_ptr<Record>>() && v.get<std::shared_ptr<Record>>()->kind == "$poison"; }
inline bool is_absent(const Value& v) { return is_poison(v) && v.get<std::shared_ptr<Record>>()->name == "$absent"; }

// A statement's value: reading a poisoned one skips the statement.
inline const Value& unpoisoned(const Value& v) {
    if (is_poison(v)) throw Poisoned{};
    return v;
}

inline int count_returns(const FunctionDef& def) {
    for (const auto& stmt : def.body) {
        if (const auto* r = stmt.as<Return>()) return static_cast<int>(r->values.size());
    }
    return 0;
}

// The layers' context of one run: parameters capped as Note [Element limit] says.
inline std::unique_ptr<LayerContext> layer_context_for(ParamStore& params, const InterpreterOptions& options) {
    auto ctx = std::make_unique<LayerContext>(params, options.seed, options.dtype);
    ctx->max_param_elements = kMaxElements;
    return ctx;
}


struct Interpreter::Impl {
    Interpreter& self;
    std::vector<std::unique_ptr<SourceFile>> sources;
    std::vector<std::unique_ptr<Module>> modules;
    Module* main = nullptr;
    std::set<std::string> loaded;
    std::map<std::string, Value> globals;                  // defs and layer defs
    std::map<std::string, Location> global_locs;
    std::map<std::string, const Constant*> constants;
    // Constants and parameters whose value is being evaluated, in order: one that needs itself
    // is a cycle, reported with each name's place (it overflowed the stack).
    std::vector<std::pair<std::string, Location>> evaluating;
    int import_depth = 0;
    static constexpr int kMaxImportDepth = 100;
    std::map<std::string, Value> constant_values;
    std::map<std::string, Tensor> constant_tensors;
    std::map<std::string, const ParamDecl*> param_decls;
    std::map<std::string, Value> builtins;
    std::vector<const TrainBlock*> train_blocks;
    std::map<std::string, const FunctionDef*> function_defs;
    std::size_t argument_errors = 0;   // of the static check, InterpreterOptions::check

    // run state
    std::vector<std::string> path;
    std::map<std::string, int> kind_counts;
    std::unique_ptr<LayerContext> ctx;
    RunResult* result = nullptr;
    int depth = 0;
    bool check_mode = false;
    bool absent_inputs = false;   // Note [Absent inputs]: some arguments of this run are absent
    MessageFilter message_filter;

    explicit Impl(Interpreter& s) : self(s) { install_builtins(builtins); }

    std::string joined() const { return fmt::format("{}", fmt::join(path, ".")); }

    // ------------------------------------------------------------ loading

    bool load(const std::string& path_name, const std::string* text, Location import_loc);
    bool define(const std::string& name, Location loc);
    void declare(const Decl& decl, const Module& m, bool is_main);

    // ------------------------------------------------------------ static names

    void resolve_all();

    bool known(const std::string& name, const std::set<std::string>& local) const;
    void resolve(const Expr& e, const std::set<std::string>& local);
    void check_call(const Call& c, const std::set<std::string>& local);

    std::string stdlib_dir() const;

    // ------------------------------------------------------------ functions

    std::map<std::pair<const std::vector<Param>*, bool>, Signature> signatures;   // signature_of's
    const Signature& signature_of(const std::string& name, const std::vector<Param>& params, bool applied_at_once);
    Value make_function(const FunctionDef& def);
    Value make_layer_def(const LayerDef& def);

    // Note [Errors inside the standard library]
    // An error raised while a definition's body runs belongs to the call that gave it its
    // arguments when the body is the standard library's: `attention(64, n_heads = 5)` is
    // reported at the user's call, with a note at the line of dsl/std/ that failed. An error
    // in a model's own definition stays where it is, with a note at the call it came from.
    template <class Body> Value reporting_at_call(const std::string& name, const Location& call, Body&& body) {
        try {
            return body();
        } catch (EvalError& e) {
            if (!e.loc.file || !call.file || call.line == 0) throw;   // line 0: the run's own call
            if (in_stdlib(e.loc) && !in_stdlib(call)) {
                e.notes.insert(e.notes.begin(), {e.loc, fmt::format("raised inside the standard library's {}", name)});
                e.loc = call;
            } else if (!in_stdlib(call)) {
                e.notes.push_back({call, fmt::format("in the call to {} here", name)});
            }
            throw;
        }
    }

    bool in_stdlib(const Location& loc) const;
    Value build_layer_def(const LayerDef& d, CallArgs& args);
    void bind_params(const std::string& fname, const std::vector<Param>& params, CallArgs& args, Scope& scope);
    void check_annotation(const std::string& fname, const Param& param, const Value& value, Location arg_loc, Scope& scope);

    std::string annotation_text(const TypeAnnotation& t) const;

    // One level of nested calls of defs and layer definitions: more than 64 is an error at the
    // call (recursion), not a stack overflow.
    auto nested(const std::string& name, Location loc) {
        if (depth >= 64) throw EvalError(loc, fmt::format("{}: calls nest more than 64 deep (recursion?)", name));
        ++depth;
        return ScopeExit([this] { --depth; });
    }
    Value call_def(const FunctionDef& def, CallArgs& args);

    // ------------------------------------------------------------ statements

    std::optional<ReturnSignal> exec(const Stmt& stmt, Scope& scope);
    static std::vector<std::string> names_defined(const Stmt& stmt);
    void report(const EvalError& e);
    std::optional<ReturnSignal> exec_statement(const Stmt& stmt, Scope& scope);
    Var scalar_term(const Value& v, Location loc, const char* what, const std::string& name);
    void record_loss(const std::string& name, Var x);

    std::string path_for(const std::string& name) const { return path.empty() ? name : joined() + "." + name; }

    template <class F> Value in_path(const std::string& name, F&& f) {
        path.push_back(name);
        ScopeExit pop([this] { path.pop_back(); });
        return f();
    }

    void bind(const std::string& name, const Value& v, Location loc, Scope& scope);

    // ------------------------------------------------------------ expressions

    Value lookup(const std::string& name, Location loc, const Scope& scope);
    Var declared_param(const ParamDecl& decl, Location use);

    // Runs f(), the evaluation of `name` (used at `use`), unless `name` is already being
    // evaluated: then the definitions refer to themselves, and the error lists the cycle, each
    // name at its definition.
    template <class F> std::invoke_result_t<F&> evaluating_once(const std::string& name, Location use, F&& f) {
        auto in_progress = std::find_if(evaluating.begin(), evaluating.end(), [&](const auto& e) { return e.first == name; });
        if (in_progress != evaluating.end()) {
            std::vector<std::string> chain;
            for (auto e = in_progress; e != evaluating.end(); ++e) chain.push_back(e->first);
            chain.push_back(name);
            EvalError error(use, fmt::format("'{}' refers to itself: {}", name, fmt::join(chain, " -> ")));
            for (auto e = in_progress; e != evaluating.end(); ++e) error.notes.push_back({e->second, fmt::format("'{}' is defined here", e->first)});
            throw error;
        }
        auto defined = global_locs.find(name);
        evaluating.emplace_back(name, defined != global_locs.end() ? defined->second : use);
        ScopeExit pop([this] { evaluating.pop_back(); });
        return f();
    }

    Parameter& create_declared_param(const ParamDecl& decl);
    Value eval(const Expr& e, Scope& scope);
    Value eval_inner(const Expr& e, Scope& scope);
    Value attribute(const Value& target, const std::string& name, Location loc);
    std::int64_t integer_of(const Expr& e, Scope& scope, const char* what);
    Value index(const Index& ix, Scope& scope, Location loc);
    Value unary(UnaryOp op, const Value& v, Location loc);
    Value scheduled(const Value& v);
    Value binary(BinaryOp op, const Value& a_in, const Value& b_in, Location loc);
    Var as_operand(const Value& v, const Value& other);
    Value integer_arithmetic(BinaryOp op, std::int64_t i, std::int64_t j, Location loc);
    Value numeric(BinaryOp op, const Value& a, const Value& b, Location loc);
};

}  // namespace wengert::dsl
