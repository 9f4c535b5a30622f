// The steps the `wengert` commands share (cli.hpp).
#include "cli.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>

#include "wengert/io.hpp"

namespace wengert::dsl {

std::optional<std::int64_t> Cli::integer(const std::string& k) const {
    if (!has(k)) return std::nullopt;
    try {
        std::size_t used = 0;
        std::int64_t v = std::stoll(get(k), &used);
        if (used != get(k).size()) throw std::invalid_argument(k);
        return v;
    } catch (const std::exception&) {
        throw UsageError(fmt::format("--{} expects an integer, got '{}'", k, get(k)));
    }
}

std::optional<double> Cli::number(const std::string& k) const {
    if (!has(k)) return std::nullopt;
    try {
        std::size_t used = 0;
        double v = std::stod(get(k), &used);
        if (used != get(k).size()) throw std::invalid_argument(k);
        return v;
    } catch (const std::exception&) {
        throw UsageError(fmt::format("--{} expects a number, got '{}'", k, get(k)));
    }
}

int exit_code_for(std::exception_ptr failure, const std::string& command) {
    try {
        std::rethrow_exception(failure);
    } catch (const UsageError& e) {
        fmt::print(stderr, "wengert: {}\n(run `wengert {}--help` for usage)\n", e.what(), command.empty() ? "" : command + " ");
        return kExitUsage;
    } catch (const EvalError& e) {
        // the commands report model errors themselves, while their source is alive
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitModel;
    } catch (const FolderInUse& e) {
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitCantCreate;
    } catch (const IOError& e) {
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitIO;
    } catch (const wengert::Error& e) {
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitModel;
    } catch (const OutOfMemory& e) {
        // Note [Resources are I/O errors]: the machine's limits (memory, files it cannot
        // read) exit 74 like a full disk, never 70: nothing in wengert went wrong
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitIO;
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "wengert: error: out of memory\n");
        return kExitIO;
    } catch (const std::length_error& e) {
        // a container asked for more than it can hold: a size no memory has
        fmt::print(stderr, "wengert: error: out of memory: {}\n", e.what());
        return kExitIO;
    } catch (const std::filesystem::filesystem_error& e) {
        fmt::print(stderr, "wengert: error: {}: {}\n", e.path1().string(), e.code().message());
        return kExitIO;
    } catch (const std::exception& e) {
        fmt::print(stderr, "wengert: internal error: {}\n", e.what());
        return kExitInternal;
    }
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw IOError(path, "cannot read the model file");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void print_diagnostics(const DiagnosticSink& sink) {
    std::fputs(sink.format_all().c_str(), stderr);
    std::size_t n = sink.error_count();
    if (n > 0) fmt::print(stderr, "{} error{} generated.\n", n, n == 1 ? "" : "s");
}

void report(const EvalError& e) {
    DiagnosticSink sink;
    sink.report(e);
    print_diagnostics(sink);
}

InterpreterOptions interpreter_options(const Cli& cli, DType default_dtype) {
    InterpreterOptions o;
    o.dtype = cli.has("dtype") ? parse_dtype(cli.get("dtype"), "--dtype") : default_dtype;
    if (!is_floating(o.dtype)) throw UsageError("--dtype must be f32 or f64");
    if (auto seed = cli.integer("seed")) o.seed = static_cast<std::uint64_t>(*seed);
    return o;
}

std::string target_function(const Interpreter& in, const Cli& cli) {
    if (cli.has("function")) {
        if (!in.find_function(cli.get("function"))) throw UsageError(fmt::format("the model has no function '{}'", cli.get("function")));
        return cli.get("function");
    }
    if (const TrainBlock* tb = in.train_block()) return tb->target;
    std::vector<std::string> defs;
    for (const auto& d : in.main_module().decls) if (const auto* f = d.as<FunctionDef>()) defs.push_back(f->name);
    if (defs.size() == 1) return defs[0];
    throw UsageError(fmt::format("the model has no train block; say which function with --function ({})", fmt::join(defs, ", ")));
}

std::vector<Tensor> inputs_from_npz(const Interpreter& in, const std::string& fname, const std::string& path) {
    NamedTensors arrays = load_npz(path);
    const FunctionDef* def = in.find_function(fname);
    std::vector<Tensor> out;
    bool by_name = true;
    for (const auto& p : def->params) {
        if (std::none_of(arrays.begin(), arrays.end(), [&](const auto& a) { return a.first == p.name; })) by_name = false;
    }
    if (by_name) {
        for (const auto& p : def->params) {
            for (const auto& a : arrays) if (a.first == p.name) out.push_back(a.second);
        }
        return out;
    }
    if (arrays.size() != def->params.size()) {
        std::vector<std::string> want, have;
        for (const auto& p : def->params) want.push_back(p.name);
        for (const auto& a : arrays) have.push_back(a.first);
        throw IOError(path, fmt::format("{} takes ({}) but the file holds ({})", fname, fmt::join(want, ", "), fmt::join(have, ", ")));
    }
    for (const auto& a : arrays) out.push_back(a.second);
    return out;
}

std::pair<std::string, std::string> dump_spec(const std::string& spec) {
    auto eq = spec.find('=');
    if (eq == std::string::npos) throw UsageError(fmt::format("--dump expects NAME=FILE, got '{}'", spec));
    return {spec.substr(0, eq), spec.substr(eq + 1)};
}

Var named_tensor(const Interpreter& in, const std::string& name) {
    const NamedValue* found = nullptr;
    for (const auto& nv : in.named_values()) if (nv.path == name) found = &nv;
    if (!found) {
        std::vector<std::string> names;
        for (const auto& nv : in.named_values()) names.push_back(nv.path);
        names.insert(names.end(), in.offered_values().begin(), in.offered_values().end());
        auto near = closest_names(name, names);
        throw UsageError(fmt::format("--dump: no value named '{}'{}", name, near.empty() ? "" : fmt::format("; did you mean '{}'?", near.front())));
    }
    if (!found->value.is<Var>()) throw UsageError(fmt::format("--dump: '{}' is {}, not a tensor", name, describe(found->value)));
    return found->value.get<Var>();
}

void params_from_checkpoint(ParamStore& params, const NamedTensors& values, const std::string& source) {
    std::vector<std::string> missing, misshapen;
    for (Parameter* p : params.all()) {
        auto it = std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.first == p->name; });
        if (it == values.end()) missing.push_back(p->name);
        else if (!(it->second.shape() == p->value.shape()) || !is_floating(it->second.dtype()))
            misshapen.push_back(fmt::format("{} (model {}, file {} {})", p->name, p->value.shape().str(), dtype_name(it->second.dtype()),
                                            it->second.shape().str()));
    }
    if (!missing.empty() || !misshapen.empty()) {
        std::string msg = "parameters do not match the model:";
        if (!missing.empty()) msg += fmt::format("\n  missing from the file: {}", fmt::join(missing, ", "));
        if (!misshapen.empty()) msg += fmt::format("\n  wrong shape: {}", fmt::join(misshapen, ", "));
        throw IOError(source, msg);
    }
    for (Parameter* p : params.all()) {
        auto it = std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.first == p->name; });
        p->value.copy_from(it->second.to(p->value.dtype()));
    }
}

TrainingProgress checkpoint_progress(const CheckpointInfo& info) {
    return TrainingProgress{info.step, std::max<std::int64_t>(1, info.steps_per_epoch), std::max<std::int64_t>(1, info.total_steps)};
}

std::vector<std::string> output_names(const FunctionDef& def) {
    const Return* ret = nullptr;
    for (const auto& stmt : def.body) if (const auto* r = stmt.as<Return>()) ret = r;
    std::vector<std::string> names;
    if (!ret) return names;
    for (std::size_t i = 0; i < ret->values.size(); ++i) {
        const auto* n = ret->values[i]->as<Name>();
        std::string name = n ? n->id : ret->values.size() == 1 ? std::string("output") : fmt::format("output_{}", i);
        if (std::find(names.begin(), names.end(), name) != names.end()) name = fmt::format("output_{}", i);
        names.push_back(name);
    }
    return names;
}

std::vector<Tensor> rows_of(const std::vector<Tensor>& inputs, std::int64_t start, std::int64_t stop) {
    std::vector<Tensor> out;
    for (const Tensor& t : inputs) out.push_back(t.defined() ? t.slice(0, start, stop).contiguous() : Tensor());
    return out;
}

Tensor join_rows(const std::vector<Tensor>& parts) {
    if (parts.size() == 1) return parts[0];
    std::int64_t rows = 0;
    for (const Tensor& p : parts) rows += p.shape()[0];
    std::vector<std::int64_t> dims = parts[0].shape().to_vector();
    dims[0] = rows;
    Tensor out = Tensor::empty(Shape(std::span<const std::int64_t>(dims)), parts[0].dtype());
    std::int64_t at = 0;
    for (const Tensor& p : parts) {
        out.slice(0, at, at + p.shape()[0]).copy_from(p);
        at += p.shape()[0];
    }
    return out;
}

}  // namespace wengert::dsl
