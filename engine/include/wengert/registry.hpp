// wengert: the one registry of ops.
//
// Note [The op registry]
// Every differentiable op (and every op without a gradient: comparisons, argmax, creation) is
// registered once, by the file that defines it, with its argument schema and a generic call.
// The registry is read by the language's interpreter (builtins are looked up here), by the
// gradient-check sweep (a registered op without a case fails the test suite), and by the docs
// generator. An unknown name is an error that lists the closest known ones.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "wengert/ops.hpp"
#include "wengert/tape.hpp"

namespace wengert {

// padding: "valid" or "same" (a string), or explicit pads (a list of integers).
enum class ArgKind { tensor, tensors, number, integer, boolean, ints, string, padding };
const char* arg_kind_name(ArgKind kind);

using ArgValue = std::variant<std::monostate, Var, std::vector<Var>, double, std::int64_t, bool,
                              std::vector<std::int64_t>, std::string>;

struct ArgSpec {
    std::string name;
    ArgKind kind;
    // No default: the argument is required. A default of monostate: optional, absent.
    std::optional<ArgValue> default_value;
};

// Arguments bound to a schema, in schema order.
class Args {
public:
    explicit Args(std::vector<ArgValue> values) : values_(std::move(values)) {}
    bool has(std::size_t i) const { return !std::holds_alternative<std::monostate>(values_.at(i)); }
    Var tensor(std::size_t i) const { return std::get<Var>(values_.at(i)); }
    const std::vector<Var>& tensors(std::size_t i) const { return std::get<std::vector<Var>>(values_.at(i)); }
    double number(std::size_t i) const;     // accepts an integer too
    std::int64_t integer(std::size_t i) const { return std::get<std::int64_t>(values_.at(i)); }
    // An axis, or a list of them, for the ops' int axes: an integer beyond int is an error
    // naming `op`, where a cast would wrap it onto a valid axis (2^32 + 1 onto 1).
    int axis(std::size_t i, const char* op) const;
    std::vector<int> axes(std::size_t i, const char* op) const;
    bool boolean(std::size_t i) const { return std::get<bool>(values_.at(i)); }
    const std::vector<std::int64_t>& ints(std::size_t i) const { return std::get<std::vector<std::int64_t>>(values_.at(i)); }
    const std::string& string(std::size_t i) const { return std::get<std::string>(values_.at(i)); }
    // A padding argument (parse_padding or explicit_padding in ops.hpp); errors name `op`.
    Padding2d padding(std::size_t i, const char* op) const;

private:
    std::vector<ArgValue> values_;
};

struct OpSchema {
    std::string name;
    std::vector<ArgSpec> args;
    std::string doc;                 // one line, for `wengert` docs and error messages
    bool differentiable = true;      // false: no gradient flows (comparisons, argmax, creation)
    std::function<Var(const Args&)> call;

    std::string signature() const;   // "softmax(x, axis=-1)"
};

class Registry {
public:
    void add(OpSchema schema);
    const OpSchema* find(const std::string& name) const;
    // Throws Error "unknown op 'x'; did you mean 'y'?" (or the list of known ops).
    const OpSchema& get(const std::string& name) const;
    const std::vector<OpSchema>& all() const { return ops_; }

private:
    std::vector<OpSchema> ops_;
};

const Registry& registry();

// Optimal string alignment distance (Levenshtein plus swaps of adjacent characters), shared by
// every "did you mean" in wengert (Note [Edit distance]).
std::size_t edit_distance(std::string_view a, std::string_view b);
// The closest of `candidates` to `name`, if it is close enough to suggest.
std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace wengert
