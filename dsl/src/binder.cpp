// One binder for every callable (Note [Signatures] in value.hpp): the rules, and the words of
// each mistake, written once for the run-time binding and the static check.
#include "binder.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace wengert::dsl {

std::vector<std::string> Signature::names() const {
    std::vector<std::string> out;
    for (const auto& p : params) out.push_back(p.name);
    return out;
}

std::string Signature::reference() const {
    std::vector<std::string> parts;
    if (variadic && !rest.empty()) parts.push_back(rest);
    for (const auto& p : params) {
        std::string part = p.kind.empty() ? p.name : fmt::format("{}: {}", p.name, p.kind);
        if (p.default_text) part += fmt::format(" = {}", *p.default_text);
        parts.push_back(std::move(part));
    }
    return fmt::format("{}({})", name, fmt::join(parts, ", "));
}

Signature make_signature(const std::string& fname, std::vector<Signature::Param> params, std::optional<std::string> rest,
                         std::string doc) {
    Signature sig;
    sig.name = fname;
    std::vector<std::string> parts;
    if (rest && !rest->empty()) parts.push_back(*rest);
    for (const auto& p : params) parts.push_back(p.default_text ? fmt::format("{}={}", p.name, *p.default_text) : p.name);
    sig.params = std::move(params);
    sig.variadic = rest.has_value();
    sig.rest = rest.value_or("");
    sig.text = fmt::format("{}({})", fname, fmt::join(parts, ", "));
    sig.doc = std::move(doc);
    return sig;
}

namespace {

// The words of each mistake, shared by both checks.
std::string too_many(const std::string& fname, const Signature& sig, std::size_t given) {
    const std::size_t n = sig.params.size();
    if (n == 0) return fmt::format("{} takes no arguments, got {}", fname, given);
    return fmt::format("{} takes at most {} argument{}, got {}: {}", fname, n, n == 1 ? "" : "s", given, sig.text);
}

std::string unknown_keyword(const std::string& fname, const Signature& sig, const std::string& name) {
    if (sig.params.empty()) return fmt::format("{} has no parameter '{}': it takes no keywords", fname, name);
    return fmt::format("{} has no parameter '{}': {}", fname, name, sig.text);
}

std::string given_twice(const std::string& fname, const std::string& name) {
    return fmt::format("{}: argument '{}' given twice", fname, name);
}

std::optional<std::size_t> index_of(const Signature& sig, const std::string& name) {
    for (std::size_t i = 0; i < sig.params.size(); ++i) if (sig.params[i].name == name) return i;
    return std::nullopt;
}

}  // namespace

BoundArgs bind_arguments(const std::string& fname, const Signature& sig, const CallArgs& args, Missing missing) {
    const std::size_t n = sig.params.size();
    BoundArgs b{std::vector<std::optional<Value>>(n), std::vector<Location>(n, args.loc)};
    if (args.positional.size() > n && !sig.variadic) {
        throw EvalError(args.positional_locs[n], too_many(fname, sig, args.positional.size()));
    }
    if (!sig.variadic) {
        for (std::size_t i = 0; i < args.positional.size(); ++i) {
            b.values[i] = args.positional[i];
            b.locs[i] = args.positional_locs[i];
        }
    }
    for (std::size_t k = 0; k < args.keywords.size(); ++k) {
        const auto& [name, value] = args.keywords[k];
        auto i = index_of(sig, name);
        if (!i) throw EvalError(args.keyword_locs[k], unknown_keyword(fname, sig, name), closest_names(name, sig.names()));
        if (b.given(*i)) throw EvalError(args.keyword_locs[k], given_twice(fname, name));
        b.values[*i] = value;
        b.locs[*i] = args.keyword_locs[k];
    }
    if (missing == Missing::error) {
        for (std::size_t i = 0; i < n; ++i) {
            if (!b.given(i) && !sig.params[i].has_default()) {
                throw EvalError(args.loc, fmt::format("{}: missing argument '{}': {}", fname, sig.params[i].name, sig.text));
            }
        }
    }
    return b;
}

void check_arguments(const std::string& fname, const Signature& sig, const Call& call, DiagnosticSink& sink) {
    const std::size_t n = sig.params.size();
    // reported as the run-time binder's EvalErrors, so that a run meeting the call again
    // (`wengert check`) does not report them twice
    if (call.args.size() > n && !sig.variadic) sink.report(EvalError(call.args[n]->loc, too_many(fname, sig, call.args.size())));
    // a keyword given twice is the parser's error; a keyword naming a positional argument's
    // parameter is the run-time binder's to judge: layer_norm(x, eps = 1e-5) makes the layer
    // and applies it
    for (const auto& k : call.kwargs) {
        if (!index_of(sig, k.name)) sink.report(EvalError(k.loc, unknown_keyword(fname, sig, k.name), closest_names(k.name, sig.names())));
    }
}

}  // namespace wengert::dsl
