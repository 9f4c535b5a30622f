// Internal: the language's builtin names.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "wengert/dsl/interpreter.hpp"
#include "wengert/dsl/value.hpp"
#include "wengert/params.hpp"
#include "binder.hpp"

namespace wengert::dsl {

void install_builtins(std::map<std::string, Value>& table);
// docs/dsl.md's op table in Markdown: its header, then a row per op of the engine's registry
// the language calls, in registration order, under the language's name for it (Note [Layers
// over ops]): "| `signature` | doc |", from the signature its builtin holds (dsl/tools/op_table.cpp).
std::string op_table();
// The slot of a new builtin `name`; a name already defined is a logic_error, so that no builtin
// replaces another unseen (Note [Layers over ops] in builtins.cpp).
Value& define_builtin(std::map<std::string, Value>& table, const std::string& name);
// attention_builtins.cpp: pure_attention as a layer, distance(), alibi(), positional embeddings.
void install_attention(std::map<std::string, Value>& table);
// sample_builtins.cpp: sampler(), what `wengert sample` reads (Note [Samplers]).
void install_sampling(std::map<std::string, Value>& table);

// An initializer named by a string ("glorot_uniform") or made by a builtin (normal_init(...)).
Init init_from_value(const Value& value, Location loc);
// A constraint record (simplex(axis = 0), non_neg(), ...) as the engine's projection.
Constraint constraint_from_value(const Value& value, Location loc);

// A builtin's parameter: required when it has no default; its kind, where given, is what
// `wengert help` shows (Note [Signatures]).
struct BuiltinParam {
    std::string name;
    std::optional<Value> default_value;
    std::string kind = {};
};

// A builtin's signature (Note [Signatures] in value.hpp); `rest` as make_signature's.
Signature builtin_signature(const std::string& fname, const std::vector<BuiltinParam>& params,
                            std::optional<std::string> rest = std::nullopt, std::string doc = {});

// What a builtin does when called: given the call's arguments and the builtin's own signature,
// made once when the builtin is, to bind them with (bind_builtin).
using BuiltinCall = std::function<Value(Interpreter&, CallArgs&, const Signature&)>;

// A builtin function value: its signature made from `params`, so that calls of it are checked
// before anything runs, and `call`, which binds its arguments with bind_builtin.
std::shared_ptr<Function> builtin(std::string name, std::string doc, const std::vector<BuiltinParam>& params,
                                  BuiltinCall call, std::optional<std::string> rest = std::nullopt);

// Binds a call's arguments to a builtin's parameters with the one binder (binder.hpp), each
// left out its default.
std::map<std::string, Value> bind_builtin(const Signature& sig, const std::vector<BuiltinParam>& params, const CallArgs& args);

// Typed reads of a bound argument; the wrong kind is an EvalError naming the function,
// the parameter and what it got.
double number_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                  const CallArgs& args);
std::int64_t integer_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                         const CallArgs& args);
bool bool_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
              const CallArgs& args);
std::string string_arg(const std::map<std::string, Value>& bound, const std::string& fname, const std::string& name,
                       const CallArgs& args);
// Where an argument was written (the call itself when it was left to its default).
Location arg_loc(const CallArgs& args, const std::vector<BuiltinParam>& params, const std::string& name);

}  // namespace wengert::dsl
