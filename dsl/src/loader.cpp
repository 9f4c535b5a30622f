// The interpreter, loading: a model file, its imports and the standard library, each name
// declared once (Interpreter::load_file, load_source, finish_load).
#include "interpreter_impl.hpp"

#include <algorithm>

#ifndef WENGERT_STDLIB_DIR
#define WENGERT_STDLIB_DIR ""
#endif
#ifndef WENGERT_STDLIB_INSTALL_DIR
#define WENGERT_STDLIB_INSTALL_DIR ""
#endif

namespace wengert::dsl {

namespace {

// The comment written directly above line `line` (no blank line between), without its '#'s:
// a definition's doc, as `wengert help NAME` shows it.
std::string doc_comment(const SourceFile& file, int line) {
    std::vector<std::string> lines;
    for (int l = line - 1; l >= 1; --l) {
        std::string_view text = file.line(l);
        const auto start = text.find_first_not_of(" \t");
        if (start == std::string_view::npos || text[start] != '#') break;
        text.remove_prefix(start + 1);
        if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
        lines.emplace_back(text);
    }
    std::reverse(lines.begin(), lines.end());
    return fmt::format("{}", fmt::join(lines, "\n"));
}

}  // namespace

bool Interpreter::Impl::load(const std::string& path_name, const std::string* text, Location import_loc) {
    if (import_depth >= kMaxImportDepth) {
        self.sink_.error(import_loc, fmt::format("imports nest more than {} deep (an import chain this long is a mistake)",
                                                 kMaxImportDepth));
        return false;
    }
    ++import_depth;
    ScopeExit depth_guard([this] { --import_depth; });
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
bool Interpreter::Impl::define(const std::string& name, Location loc) {
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

void Interpreter::Impl::declare(const Decl& decl, const Module& m, bool is_main) {
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
        globals[fn->name].get<std::shared_ptr<Function>>()->signature.doc = doc_comment(*m.file, decl.loc.line);
    } else if (const auto* ld = decl.as<LayerDef>()) {
        if (!define(ld->name, decl.loc)) return;
        globals[ld->name] = make_layer_def(*ld);
        globals[ld->name].get<std::shared_ptr<Function>>()->signature.doc = doc_comment(*m.file, decl.loc.line);
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

// The options' folder, else WENGERT_STDLIB, else the source tree's dsl/std (a build used in
// place), else the installed share/wengert/std.
std::string Interpreter::Impl::stdlib_dir() const {
    if (!self.options_.stdlib_dir.empty()) return self.options_.stdlib_dir;
    if (const char* env = std::getenv("WENGERT_STDLIB")) return env;
    if (fs::exists(fs::path(WENGERT_STDLIB_DIR) / "prelude.wg")) return WENGERT_STDLIB_DIR;
    return WENGERT_STDLIB_INSTALL_DIR;
}

bool Interpreter::Impl::in_stdlib(const Location& loc) const {
    return loc.file && fs::path(loc.file->path()).parent_path() == fs::path(stdlib_dir());
}

// ---------------------------------------------------------------- Interpreter

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
    if (options_.check) return sink_.error_count() == impl_->argument_errors;
    return !sink_.has_errors();
}

const Module& Interpreter::main_module() const { return *impl_->main; }

std::optional<Interpreter::Callable> Interpreter::find_callable(const std::string& name) const {
    auto callable = [](const Value& v) { return v.is<std::shared_ptr<Function>>() ? &v.get<std::shared_ptr<Function>>()->signature : nullptr; };
    if (auto g = impl_->globals.find(name); g != impl_->globals.end()) {
        if (const Signature* sig = callable(g->second)) return Callable{sig, impl_->global_locs.at(name)};
    }
    if (auto b = impl_->builtins.find(name); b != impl_->builtins.end()) {
        if (const Signature* sig = callable(b->second)) return Callable{sig, Location{}};
    }
    return std::nullopt;
}

std::vector<std::string> Interpreter::callable_names(bool builtins) const {
    std::vector<std::string> names;
    for (const auto& [name, value] : builtins ? impl_->builtins : impl_->globals) {
        if (value.is<std::shared_ptr<Function>>()) names.push_back(name);
    }
    return names;   // the maps keep them sorted
}

std::vector<const Module*> Interpreter::modules() const {
    std::vector<const Module*> out;
    for (const auto& m : impl_->modules) out.push_back(m.get());
    return out;
}


}  // namespace wengert::dsl
