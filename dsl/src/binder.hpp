// Internal: the one binder of a call's arguments to a callable's signature (Note [Signatures]
// in value.hpp), at run time and before anything runs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "wengert/dsl/ast.hpp"
#include "wengert/dsl/diagnostics.hpp"
#include "wengert/dsl/value.hpp"

namespace wengert::dsl {

// A call's arguments matched to a signature, in the signature's order: the value given
// (positionally or by keyword) and where it was written, or nothing and the call's place.
struct BoundArgs {
    std::vector<std::optional<Value>> values;
    std::vector<Location> locs;

    bool given(std::size_t i) const { return values[i].has_value(); }
};

enum class Missing { error, allowed };

// Matches `args` to `sig`. Too many positional arguments, an unknown keyword (with "did you
// mean"), an argument given twice and, with Missing::error, a required one left out are an
// EvalError at the argument (at the call for a missing one). A variadic signature's
// positional arguments beyond its parameters are left to the callee (args.positional).
BoundArgs bind_arguments(const std::string& fname, const Signature& sig, const CallArgs& args,
                         Missing missing = Missing::error);

// The same rules on a call as written, before anything runs: each mistake is reported to
// `sink` in bind_arguments's words. Missing arguments are not checked (a call without its
// tensors is a layer, Note [Ops as layers]).
void check_arguments(const std::string& fname, const Signature& sig, const Call& call, DiagnosticSink& sink);

// A signature from its parameters (each with its default as text, none: required, and its kind
// where known) and what it does. `rest`, when given, makes it variadic and names the positional
// arguments it takes besides ("layers...": serial(layers...)); empty, it takes them without
// showing them (a `layer` definition without parameters, applied at once: swap2(a, b)).
Signature make_signature(const std::string& fname, std::vector<Signature::Param> params,
                         std::optional<std::string> rest = std::nullopt, std::string doc = {});

}  // namespace wengert::dsl
