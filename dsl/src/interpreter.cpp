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

#ifndef WENGERT_STDLIB_DIR
#define WENGERT_STDLIB_DIR ""
#endif
#ifndef WENGERT_STDLIB_INSTALL_DIR
#define WENGERT_STDLIB_INSTALL_DIR ""
#endif

namespace wengert::dsl {

namespace fs = std::filesystem;

std::string kind_name(const Value& value) {
    struct Visitor {
        std::string operator()(std::monostate) const { return "none"; }
        std::string operator()(bool) const { return "bool"; }
        std::string operator()(std::int64_t) const { return "integer"; }
        std::string operator()(double) const { return "number"; }
        std::string operator()(const std::string&) const { return "string"; }
        std::string operator()(const Var&) const { return "tensor"; }
        std::string operator()(const LayerPtr&) const { return "layer"; }
        std::string operator()(const std::shared_ptr<Function>&) const { return "function"; }
        std::string operator()(const std::shared_ptr<TupleValue>&) const { return "tuple"; }
        std::string operator()(const std::shared_ptr<Record>& r) const { return r->kind; }
    };
    return std::visit(Visitor{}, value.v);
}

std::string describe(const Value& value) {
    if (value.is<Var>()) {
        const Var& x = value.get<Var>();
        return fmt::format("tensor {} {}", dtype_name(x.dtype()), x.shape().str());
    }
    if (value.is<bool>()) return value.get<bool>() ? "true" : "false";
    if (value.is<std::int64_t>()) return fmt::format("integer {}", value.get<std::int64_t>());
    if (value.is<double>()) return fmt::format("number {}", value.get<double>());
    if (value.is<std::string>()) return fmt::format("string \"{}\"", value.get<std::string>());
    if (value.is<LayerPtr>()) return fmt::format("layer {}", value.get<LayerPtr>()->kind());
    if (value.is<std::shared_ptr<Function>>()) return fmt::format("function {}", value.get<std::shared_ptr<Function>>()->name);
    if (value.is<std::shared_ptr<TupleValue>>()) return fmt::format("tuple of {}", value.get<std::shared_ptr<TupleValue>>()->size());
    if (value.is<std::shared_ptr<Record>>()) {
        const auto& r = value.get<std::shared_ptr<Record>>();
        return fmt::format("{} {}", r->kind, r->name);
    }
    return kind_name(value);
}

namespace {

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
Value poison_value() {
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
Value absent_value() {
    static const auto absent = std::make_shared<Record>(Record{"$poison", "$absent", {}, {}});
    return Value(absent);
}

bool is_poison(const Value& v) { return v.is<std::shared_ptr<Record>>() && v.get<std::shared_ptr<Record>>()->kind == "$poison"; }
bool is_absent(const Value& v) { return is_poison(v) && v.get<std::shared_ptr<Record>>()->name == "$absent"; }

// A statement's value: reading a poisoned one skips the statement.
const Value& unpoisoned(const Value& v) {
    if (is_poison(v)) throw Poisoned{};
    return v;
}

int count_returns(const FunctionDef& def) {
    for (const auto& stmt : def.body) {
        if (const auto* r = stmt.as<Return>()) return static_cast<int>(r->values.size());
    }
    return 0;
}

// The layers' context of one run: parameters capped as Note [Element limit] says.
std::unique_ptr<LayerContext> layer_context_for(ParamStore& params, const InterpreterOptions& options) {
    auto ctx = std::make_unique<LayerContext>(params, options.seed, options.dtype);
    ctx->max_param_elements = kMaxElements;
    return ctx;
}

}  // namespace

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

    // run state
    std::vector<std::string> path;
    std::map<std::string, int> kind_counts;
    std::unique_ptr<LayerContext> ctx;
    RunResult* result = nullptr;
    int depth = 0;
    bool check_mode = false;
    bool absent_inputs = false;   // Note [Absent inputs]: some arguments of this run are absent
    std::function<std::string(const std::string&)> message_filter;

    explicit Impl(Interpreter& s) : self(s) { install_builtins(builtins); }

    std::string joined() const { return fmt::format("{}", fmt::join(path, ".")); }

    // ------------------------------------------------------------ loading

    bool load(const std::string& path_name, const std::string* text, Location import_loc) {
        if (import_depth >= kMaxImportDepth) {
            self.sink_.error(import_loc, fmt::format("imports nest more than {} deep (an import chain this long is a mistake)",
                                                     kMaxImportDepth));
            return false;
        }
        ++import_depth;
        struct Depth {
            int& d;
            ~Depth() { --d; }
        } depth_guard{import_depth};
        std::error_code ec;
        fs::path p = fs::weakly_canonical(fs::path(path_name), ec);
        std::string key = ec ? path_name : p.string();
        if (loaded.count(key)) return true;
        loaded.insert(key);
        std::unique_ptr<SourceFile> file;
        if (text) {
            file = std::make_unique<SourceFile>(path_name, *text);
        } else {
            std::ifstream in(path_name, std::ios::binary);
            std::string why;
            if (!in || fs::is_directory(path_name, ec)) {
                // the non-throwing forms: a name the system rejects (too long) is this error too
                why = fs::exists(path_name, ec) ? "cannot be read" : ec ? ec.message() : "no such file";
            }
            std::string contents;
            if (why.empty()) {
                try {
                    contents = SourceFile::read_text(path_name);   // bounded: no device, no huge file
                } catch (const IOError& e) {
                    why = e.what();
                    if (why.rfind(e.path() + ": ", 0) == 0) why.erase(0, e.path().size() + 2);
                }
            }
            if (!why.empty()) {
                if (import_loc.file) self.sink_.error(import_loc, fmt::format("cannot import '{}': {}", path_name, why));
                else self.sink_.error(Location{}, fmt::format("{}: {}", path_name, why));
                return false;
            }
            file = std::make_unique<SourceFile>(path_name, std::move(contents));
        }
        auto module = std::make_unique<Module>(parse(*file, self.sink_));
        Module* m = module.get();
        bool is_main = main == nullptr && !import_loc.file;
        if (is_main) main = m;
        sources.push_back(std::move(file));
        modules.push_back(std::move(module));
        for (const auto& decl : m->decls) declare(decl, *m, is_main);
        return !self.sink_.has_errors();
    }

    // False when the name is taken. Definitions share one namespace (the standard library's
    // own layers call each other by name), so a clash between the main file and an import or
    // the standard library (loaded after it) is an error, reported at the main file's
    // definition with a note at the other.
    bool define(const std::string& name, Location loc) {
        auto it = global_locs.find(name);
        if (it != global_locs.end()) {
            if (it->second.file == main->file && loc.file != main->file) {
                bool standard = fs::path(loc.file->path()).parent_path() == fs::path(stdlib_dir());
                auto& d = self.sink_.error(it->second, fmt::format("'{}' is also defined by {}; rename yours", name,
                                                                   standard ? "the standard library" : loc.file->path()));
                d.notes.push_back({loc, "defined here"});
                return false;
            }
            auto& d = self.sink_.error(loc, fmt::format("'{}' is already defined", name));
            d.notes.push_back({it->second, "first defined here"});
            return false;
        }
        global_locs[name] = loc;
        return true;
    }

    void declare(const Decl& decl, const Module& m, bool is_main) {
        if (const auto* imp = decl.as<Import>()) {
            std::string target = imp->target;
            std::string resolved;
            if (imp->is_path) {
                fs::path base = fs::path(m.file->path()).parent_path();
                resolved = (base / target).string();
            } else {
                resolved = (fs::path(stdlib_dir()) / (target + ".wg")).string();
                std::error_code ec;
                if (!fs::exists(resolved, ec)) {
                    self.sink_.error(decl.loc, fmt::format("no standard library module '{}' (looked for {})", target, resolved));
                    return;
                }
            }
            load(resolved, nullptr, decl.loc);
        } else if (const auto* fn = decl.as<FunctionDef>()) {
            if (!define(fn->name, decl.loc)) return;
            function_defs[fn->name] = fn;
            globals[fn->name] = make_function(*fn);
        } else if (const auto* ld = decl.as<LayerDef>()) {
            if (!define(ld->name, decl.loc)) return;
            globals[ld->name] = make_layer_def(*ld);
        } else if (const auto* pd = decl.as<ParamDecl>()) {
            if (!define(pd->name, decl.loc)) return;
            param_decls[pd->name] = pd;
        } else if (const auto* c = decl.as<Constant>()) {
            if (!define(c->name, decl.loc)) return;
            constants[c->name] = c;
        } else if (const auto* tb = decl.as<TrainBlock>()) {
            if (is_main) train_blocks.push_back(tb);
        }
    }

    // ------------------------------------------------------------ static names

    // Note [Static names]
    // Before anything runs, every name in every function, layer definition, constant, param
    // initializer and train setting must resolve: to a parameter or an earlier statement of
    // its function, a top-level definition, or a builtin. Keywords of calls to functions whose
    // parameters are known (definitions and engine ops) must exist. All such errors are reported.
    void resolve_all() {
        for (const auto& m : modules) {
            for (const auto& decl : m->decls) {
                std::set<std::string> local;
                if (const auto* fn = decl.as<FunctionDef>()) {
                    for (const auto& p : fn->params) {
                        if (p.default_value) resolve(*p.default_value, local);
                        local.insert(p.name);
                    }
                    for (const auto& stmt : fn->body) {
                        if (const auto* a = stmt.as<Assign>()) {
                            resolve(*a->value, local);
                            for (const auto& t : a->targets) local.insert(t.name);
                        } else if (const auto* l = stmt.as<LossTerm>()) {
                            resolve(*l->value, local);
                            local.insert(l->name);
                        } else if (const auto* mt = stmt.as<MetricTerm>()) {
                            resolve(*mt->value, local);
                            local.insert(mt->name);
                        } else if (const auto* r = stmt.as<Return>()) {
                            for (const auto& v : r->values) resolve(*v, local);
                        }
                    }
                } else if (const auto* ld = decl.as<LayerDef>()) {
                    for (const auto& p : ld->params) {
                        if (p.default_value) resolve(*p.default_value, local);
                        local.insert(p.name);
                    }
                    resolve(*ld->body, local);
                } else if (const auto* c = decl.as<Constant>()) {
                    resolve(*c->value, local);
                } else if (const auto* pd = decl.as<ParamDecl>()) {
                    resolve(*pd->init, local);
                    for (const auto& a : pd->attributes) resolve(*a.value, local);
                } else if (const auto* tb = decl.as<TrainBlock>()) {
                    for (const auto& st : tb->settings) resolve(*st.value, local);
                    if (!function_defs.count(tb->target)) {
                        std::vector<std::string> names;
                        for (const auto& [k, _] : function_defs) names.push_back(k);
                        self.sink_.error(decl.loc, fmt::format("train names '{}', which is not a function of this model", tb->target))
                            .suggestions = closest_names(tb->target, names);
                    }
                }
            }
        }
    }

    bool known(const std::string& name, const std::set<std::string>& local) const {
        return local.count(name) || global_locs.count(name) || builtins.count(name) || name == "batch";
    }

    void resolve(const Expr& e, const std::set<std::string>& local) {
        if (const auto* n = e.as<Name>()) {
            if (!known(n->id, local)) {
                const bool shown = self.sink_.shows_next();
                Diagnostic& d = self.sink_.error(e.loc, fmt::format("unknown name '{}'", n->id));
                if (shown) {
                    std::vector<std::string> names(local.begin(), local.end());
                    for (const auto& [k, _] : global_locs) names.push_back(k);
                    for (const auto& [k, _] : builtins) names.push_back(k);
                    d.suggestions = closest_names(n->id, names);
                }
            }
        } else if (const auto* u = e.as<Unary>()) {
            resolve(*u->operand, local);
        } else if (const auto* b = e.as<Binary>()) {
            resolve(*b->lhs, local);
            resolve(*b->rhs, local);
        } else if (const auto* c = e.as<Call>()) {
            resolve(*c->callee, local);
            for (const auto& a : c->args) resolve(*a, local);
            for (const auto& k : c->kwargs) resolve(*k.value, local);
            check_keywords(*c, local);
        } else if (const auto* s = e.as<Slice>()) {
            for (const ExprPtr* p : {&s->lower, &s->upper, &s->step}) if (*p) resolve(**p, local);
        } else if (const auto* ix = e.as<Index>()) {
            resolve(*ix->target, local);
            for (const auto& i : ix->indices) resolve(*i, local);
        } else if (const auto* a = e.as<Attribute>()) {
            resolve(*a->target, local);
        } else if (const auto* t = e.as<Tuple>()) {
            for (const auto& el : t->elements) resolve(*el, local);
        } else if (const auto* l = e.as<List>()) {
            for (const auto& el : l->elements) resolve(*el, local);
        }
    }

    void check_keywords(const Call& c, const std::set<std::string>& local) {
        const auto* callee = c.callee->as<Name>();
        if (!callee || local.count(callee->id)) return;
        const Value* f = nullptr;
        if (auto it = globals.find(callee->id); it != globals.end()) f = &it->second;
        else if (auto b = builtins.find(callee->id); b != builtins.end() && !global_locs.count(callee->id)) f = &b->second;
        if (!f || !f->is<std::shared_ptr<Function>>()) return;
        const Function& fn = *f->get<std::shared_ptr<Function>>();
        if (fn.params.empty()) return;
        for (const auto& k : c.kwargs) {
            if (std::find(fn.params.begin(), fn.params.end(), k.name) == fn.params.end()) {
                self.sink_.error(k.loc, fmt::format("{} has no parameter '{}'; it takes {}", fn.name, k.name, fmt::join(fn.params, ", ")))
                    .suggestions = closest_names(k.name, fn.params);
            }
        }
        if (c.args.size() > fn.params.size()) {
            self.sink_.error(c.args[fn.params.size()]->loc, fmt::format("{} takes at most {} argument{}, got {}", fn.name,
                                                                          fn.params.size(), fn.params.size() == 1 ? "" : "s", c.args.size()));
        }
    }

    // The options' folder, else WENGERT_STDLIB, else the source tree's dsl/std (a build used in
    // place), else the installed share/wengert/std.
    std::string stdlib_dir() const {
        if (!self.options_.stdlib_dir.empty()) return self.options_.stdlib_dir;
        if (const char* env = std::getenv("WENGERT_STDLIB")) return env;
        if (fs::exists(fs::path(WENGERT_STDLIB_DIR) / "prelude.wg")) return WENGERT_STDLIB_DIR;
        return WENGERT_STDLIB_INSTALL_DIR;
    }

    // ------------------------------------------------------------ functions

    Value make_function(const FunctionDef& def) {
        auto f = std::make_shared<Function>();
        f->name = def.name;
        int required = 0;
        for (const auto& p : def.params) {
            f->params.push_back(p.name);
            f->has_default.push_back(p.default_value != nullptr);
            if (!p.default_value) ++required;
        }
        f->layer_inputs = required;
        f->layer_outputs = std::max(1, count_returns(def));
        const FunctionDef* d = &def;
        f->is_def = true;
        f->call = [this, d](Interpreter&, CallArgs& args) { return call_def(*d, args); };
        return Value(f);
    }

    Value make_layer_def(const LayerDef& def) {
        auto f = std::make_shared<Function>();
        f->name = def.name;
        for (const auto& p : def.params) {
            f->params.push_back(p.name);
            f->has_default.push_back(p.default_value != nullptr);
        }
        f->layer_factory = true;
        const LayerDef* d = &def;
        f->call = [this, d](Interpreter&, CallArgs& args) {
            if (d->params.empty() && !args.positional.empty() && args.keywords.empty()) {
                // a layer without parameters applied at once: `swap2(a, b)` is `swap2()(a, b)`
                CallArgs none;
                none.loc = args.loc;
                return self.call(build_layer_def(*d, none), args);
            }
            return build_layer_def(*d, args);
        };
        return Value(f);
    }

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

    bool in_stdlib(const Location& loc) const {
        return loc.file && fs::path(loc.file->path()).parent_path() == fs::path(stdlib_dir());
    }

    Value build_layer_def(const LayerDef& d, CallArgs& args) {
        Nesting nesting(*this, d.name, args.loc);   // a layer made of itself
        Scope scope;
        bind_params(d.name, d.params, args, scope);
        Value body = reporting_at_call(d.name, args.loc, [&] { return eval(*d.body, scope); });
        if (!body.is<LayerPtr>() && !body.is<std::shared_ptr<Function>>()) {
            throw EvalError(d.body->loc, fmt::format("layer {}: its value must be a layer, got {}", d.name, describe(body)));
        }
        return Value(LayerPtr(std::make_shared<DefinedLayer>(d.name, self.as_layer(body, d.body->loc))));
    }

    void bind_params(const std::string& fname, const std::vector<Param>& params, CallArgs& args, Scope& scope) {
        if (args.positional.size() > params.size()) {
            throw EvalError(args.loc, fmt::format("{} takes {} argument{} but was given {}", fname, params.size(),
                                                  params.size() == 1 ? "" : "s", args.positional.size()));
        }
        std::vector<bool> set(params.size(), false);
        std::vector<Location> locs(params.size(), args.loc);   // where each argument was written
        for (std::size_t i = 0; i < args.positional.size(); ++i) {
            scope.vars[params[i].name] = args.positional[i];
            set[i] = true;
            locs[i] = args.positional_locs[i];
        }
        std::vector<std::string> names;
        for (const auto& p : params) names.push_back(p.name);
        for (std::size_t k = 0; k < args.keywords.size(); ++k) {
            const auto& [name, value] = args.keywords[k];
            auto it = std::find(names.begin(), names.end(), name);
            if (it == names.end()) {
                throw EvalError(args.keyword_locs[k], fmt::format("{} has no parameter '{}'", fname, name), closest_names(name, names));
            }
            auto i = static_cast<std::size_t>(it - names.begin());
            if (set[i]) throw EvalError(args.keyword_locs[k], fmt::format("{}: argument '{}' given twice", fname, name));
            scope.vars[name] = value;
            set[i] = true;
            locs[i] = args.keyword_locs[k];
        }
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (set[i]) continue;
            if (!params[i].default_value) {
                throw EvalError(args.loc, fmt::format("{}: missing argument '{}'", fname, params[i].name));
            }
            scope.vars[params[i].name] = eval(*params[i].default_value, scope);
        }
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (params[i].type && !is_absent(scope.vars[params[i].name])) check_annotation(fname, params[i], scope.vars[params[i].name], locs[i], scope);
        }
    }

    // Checks a tensor argument against `x: f32[B, 784]`; symbolic sizes bind on first use
    // (B is also bound to the batch size). A mismatch is reported at the argument (`arg_loc`),
    // with a note at the declaration; inputs from data have no argument location, and are
    // reported at the declaration.
    void check_annotation(const std::string& fname, const Param& param, const Value& value, Location arg_loc, Scope& scope) {
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

    std::string annotation_text(const TypeAnnotation& t) const {
        std::vector<std::string> dims;
        for (const auto& d : t.dims) {
            if (const auto* n = std::get_if<std::int64_t>(&d.size)) dims.push_back(std::to_string(*n));
            else dims.push_back(std::get<std::string>(d.size));
        }
        return fmt::format("{}[{}]", t.dtype, fmt::join(dims, ", "));
    }


    // One level of nested calls of defs and layer definitions: more than 64 is an error at the
    // call (recursion), not a stack overflow.
    struct Nesting {
        Nesting(Impl& impl, const std::string& name, Location loc) : depth(impl.depth) {
            if (depth >= 64) throw EvalError(loc, fmt::format("{}: calls nest more than 64 deep (recursion?)", name));
            ++depth;
        }
        ~Nesting() { --depth; }
        Nesting(const Nesting&) = delete;
        Nesting& operator=(const Nesting&) = delete;
        int& depth;
    };

    Value call_def(const FunctionDef& def, CallArgs& args) {
        Nesting nesting(*this, def.name, args.loc);
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

    // ------------------------------------------------------------ statements

    // Note [Checking every statement]
    // In check mode a statement that fails is reported and the names it defines are poisoned;
    // later statements that read a poisoned name are skipped silently, the others still run.
    // A def whose return fails returns poison, so its callers are skipped the same way.
    // So one `wengert check` reports every independent error, and each only once.
    std::optional<ReturnSignal> exec(const Stmt& stmt, Scope& scope) {
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

    static std::vector<std::string> names_defined(const Stmt& stmt) {
        if (const auto* a = stmt.as<Assign>()) {
            std::vector<std::string> out;
            for (const auto& t : a->targets) out.push_back(t.name);
            return out;
        }
        if (const auto* l = stmt.as<LossTerm>()) return {l->name};
        if (const auto* m = stmt.as<MetricTerm>()) return {m->name};
        return {};
    }

    void report(const EvalError& e) {
        auto& d = self.sink_.error(e.loc, message_filter ? message_filter(e.what()) : std::string(e.what()));
        d.suggestions = e.suggestions;
        d.notes = e.notes;
    }

    std::optional<ReturnSignal> exec_statement(const Stmt& stmt, Scope& scope) {
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

    Var scalar_term(const Value& v, Location loc, const char* what, const std::string& name) {
        if (v.is_number()) return Tape::current().input(Tensor::scalar(v.number(), self.options_.dtype));
        if (!v.is<Var>() || v.get<Var>().numel() != 1) {
            throw EvalError(loc, fmt::format("{} '{}' must be a scalar, got {}", what, name, describe(v)));
        }
        Var x = v.get<Var>();
        return x.ndim() == 0 ? x : reshape(x, Shape{});
    }

    void record_loss(const std::string& name, Var x) {
        if (result) result->losses.emplace_back(name, x);
    }

    std::string path_for(const std::string& name) const { return path.empty() ? name : joined() + "." + name; }

    template <class F> Value in_path(const std::string& name, F&& f) {
        path.push_back(name);
        try {
            Value v = f();
            path.pop_back();
            return v;
        } catch (...) {
            path.pop_back();
            throw;
        }
    }

    void bind(const std::string& name, const Value& v, Location loc, Scope& scope) {
        if (v.is<LayerPtr>() && v.get<LayerPtr>()->path().empty()) v.get<LayerPtr>()->set_path(path_for(name));
        scope.vars[name] = v;
        self.named_.push_back({path_for(name), v, loc});
    }

    // ------------------------------------------------------------ expressions

    Value lookup(const std::string& name, Location loc, const Scope& scope) {
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

    Var declared_param(const ParamDecl& decl, Location use) {
        Parameter* p = self.params_.find(decl.name);
        if (!p) p = &evaluating_once(decl.name, use, [&]() -> Parameter& { return create_declared_param(decl); });
        return Tape::current().param(*p);
    }

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
        struct Pop {
            std::vector<std::pair<std::string, Location>>& v;
            ~Pop() { v.pop_back(); }
        } pop{evaluating};
        return f();
    }

    Parameter& create_declared_param(const ParamDecl& decl);

    Value eval(const Expr& e, Scope& scope) {
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

    Value eval_inner(const Expr& e, Scope& scope) {
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

    Value attribute(const Value& target, const std::string& name, Location loc) {
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

    std::int64_t integer_of(const Expr& e, Scope& scope, const char* what) {
        Value v = eval(e, scope);
        if (!v.is<std::int64_t>()) throw EvalError(e.loc, fmt::format("{} must be an integer, got {}", what, describe(v)));
        return v.get<std::int64_t>();
    }

    Value index(const Index& ix, Scope& scope, Location loc) {
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

    Value unary(UnaryOp op, const Value& v, Location loc) {
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
    Value scheduled(const Value& v) {
        if (!is_schedule(v)) return v;
        double x = schedule_value(*v.get<std::shared_ptr<Record>>(), self.progress_);
        if (result) result->schedules.emplace_back(joined(), x);
        return Value(x);
    }

    Value binary(BinaryOp op, const Value& a_in, const Value& b_in, Location loc) {
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
    Var as_operand(const Value& v, const Value& other) {
        if (v.is<Var>()) return v.get<Var>();
        DType dtype = other.is<Var>() ? other.get<Var>().dtype() : self.options_.dtype;
        return Tape::current().input(Tensor::scalar(v.number(), dtype));
    }

    // Integers are 64-bit, and a result that does not fit is an error, not a wrapped value.
    Value integer_arithmetic(BinaryOp op, std::int64_t i, std::int64_t j, Location loc) {
        std::int64_t r = 0;
        bool overflow = op == BinaryOp::add        ? __builtin_add_overflow(i, j, &r)
                        : op == BinaryOp::subtract ? __builtin_sub_overflow(i, j, &r)
                                                   : __builtin_mul_overflow(i, j, &r);
        if (overflow) throw EvalError(loc, fmt::format("{} {} {} does not fit in 64 bits", i, op_text(op), j));
        return Value(r);
    }

    Value numeric(BinaryOp op, const Value& a, const Value& b, Location loc) {
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
};

// ---------------------------------------------------------------- Interpreter

Interpreter::Interpreter(DiagnosticSink& sink, ParamStore& params, InterpreterOptions options)
    : sink_(sink), params_(params), options_(std::move(options)), impl_(std::make_unique<Impl>(*this)) {}

Interpreter::~Interpreter() = default;

bool Interpreter::load_file(const std::string& path) {
    impl_->load(path, nullptr, Location{});
    return finish_load();
}

bool Interpreter::load_source(const std::string& path, const std::string& text) {
    impl_->load(path, &text, Location{});
    return finish_load();
}

bool Interpreter::finish_load() {
    if (!impl_->main) return false;
    std::string prelude = (std::filesystem::path(impl_->stdlib_dir()) / "prelude.wg").string();
    std::error_code ec;
    if (std::filesystem::exists(prelude, ec)) impl_->load(prelude, nullptr, Location{impl_->main->file, 0, 0, 0});
    if (!sink_.has_errors()) impl_->resolve_all();
    return !sink_.has_errors();
}

const Module& Interpreter::main_module() const { return *impl_->main; }

std::vector<const Module*> Interpreter::modules() const {
    std::vector<const Module*> out;
    for (const auto& m : impl_->modules) out.push_back(m.get());
    return out;
}

void Interpreter::set_message_filter(std::function<std::string(const std::string&)> filter) {
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
    try {
        out = impl_->call_def(*def, args);
    } catch (...) {
        impl_->result = nullptr;
        impl_->absent_inputs = false;
        throw;
    }
    impl_->result = nullptr;
    impl_->absent_inputs = false;
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
