// `wengert help NAME [FILE]`: what a builtin, a standard-library definition or a def or layer of
// FILE takes and does, from its signature (Note [Signatures] in value.hpp); `wengert help names`
// lists every such name.
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "wengert/dsl/interpreter.hpp"
#include "wengert/io.hpp"

namespace wengert::dsl {

namespace {

// `names` after `title`, as many to a line as fit in 100 columns.
void print_wrapped(const std::string& title, const std::vector<std::string>& names) {
    fmt::print("{}\n", title);
    std::string line = " ";
    for (const auto& n : names) {
        if (line.size() + 1 + n.size() > 100) {
            fmt::print("{}\n", line);
            line = " ";
        }
        line += " " + n;
    }
    if (line.size() > 1) fmt::print("{}\n", line);
}

}  // namespace

int cmd_help(const std::string& topic, const std::string& file) {
    std::error_code ec;
    if (!file.empty() && !std::filesystem::is_regular_file(file, ec)) throw IOError(file, "no such model file");
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in(sink, params);
    // without a file, an empty model: what every model sees, the builtins and the standard library
    if (file.empty() ? !in.load_source("<help>", "") : !in.load_file(file)) {
        print_diagnostics(sink);
        return file.empty() ? kExitInternal : kExitModel;
    }
    const std::vector<std::string> builtins = in.callable_names(true), library = in.callable_names(false);
    if (topic == "names") {
        print_wrapped("builtins (docs/dsl.md):", builtins);
        print_wrapped(file.empty() ? "standard library (dsl/std/prelude.wg):" : "standard library and " + file + ":", library);
        return kExitOk;
    }
    const auto callable = in.find_callable(topic);
    if (!callable) {
        std::vector<std::string> names = builtins;
        names.insert(names.end(), library.begin(), library.end());
        const auto near = closest_names(topic, names);
        throw UsageError(fmt::format("help: no command, builtin or {} definition is called '{}'{}; `wengert help names{}` lists them",
                                     file.empty() ? "standard-library" : "standard-library or " + file, topic,
                                     near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near.front()),
                                     file.empty() ? "" : " " + file));
    }
    const Signature& sig = *callable->signature;
    fmt::print("{}\n", sig.reference());
    std::string_view doc = sig.doc;
    while (!doc.empty()) {
        const auto end = doc.find('\n');
        fmt::print("    {}\n", doc.substr(0, end));
        doc = end == std::string_view::npos ? std::string_view() : doc.substr(end + 1);
    }
    if (callable->defined_at.file) fmt::print("defined at {}:{}\n", callable->defined_at.file->path(), callable->defined_at.line);
    else fmt::print("a builtin (docs/dsl.md)\n");
    return kExitOk;
}

}  // namespace wengert::dsl
