// The interpreter, static names: every name and every call's arguments checked before
// anything runs (Note [Static names]).
#include "binder.hpp"
#include "interpreter_impl.hpp"

namespace wengert::dsl {

// Note [Static names]
// Before anything runs, every name in every function, layer definition, constant, param
// initializer and train setting must resolve: to a parameter or an earlier statement of
// its function, a top-level definition, or a builtin. Keywords of calls to functions whose
// parameters are known (definitions and engine ops) must exist. All such errors are reported.
void Interpreter::Impl::resolve_all() {
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

bool Interpreter::Impl::known(const std::string& name, const std::set<std::string>& local) const {
    return local.count(name) || global_locs.count(name) || builtins.count(name) || name == "batch";
}

void Interpreter::Impl::resolve(const Expr& e, const std::set<std::string>& local) {
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
        return;
    }
    for_each_child(e, [&](const Expr& child) { resolve(child, local); });
    if (const auto* c = e.as<Call>()) check_call(*c, local);
}

// A call of a name the model cannot rebind (a definition or a builtin) is checked against its
// signature now, so every such mistake is reported before anything runs.
void Interpreter::Impl::check_call(const Call& c, const std::set<std::string>& local) {
    const auto* callee = c.callee->as<Name>();
    if (!callee || local.count(callee->id)) return;
    const Value* f = nullptr;
    if (auto it = globals.find(callee->id); it != globals.end()) f = &it->second;
    else if (auto b = builtins.find(callee->id); b != builtins.end() && !global_locs.count(callee->id)) f = &b->second;
    if (!f || !f->is<std::shared_ptr<Function>>()) return;
    const Function& fn = *f->get<std::shared_ptr<Function>>();
    const std::size_t before = self.sink_.error_count();
    check_arguments(fn.name, fn.signature, c, self.sink_);
    argument_errors += self.sink_.error_count() - before;
}

}  // namespace wengert::dsl
