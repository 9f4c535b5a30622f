// wengert language: runtime values.
//
// Note [Values]
// A value is none, a bool, an integer, a number, a string, a tensor (a Var on the current
// tape), a layer (engine Layer), a function (builtin, `def` or `layer` definition), a tuple,
// or a record: a small tagged bag of settings that a builtin such as l2(1e-4), adam(lr = 1e-3)
// or fashion_mnist(split = "train") returns for another builtin to read.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "wengert/dsl/source.hpp"
#include "wengert/layers.hpp"
#include "wengert/tape.hpp"

namespace wengert::dsl {

struct Value;
struct Function;
struct Record;
using TupleValue = std::vector<Value>;  // not ast.hpp's Tuple, the syntax

struct Value {
    std::variant<std::monostate, bool, std::int64_t, double, std::string, Var, LayerPtr, std::shared_ptr<Function>,
                 std::shared_ptr<TupleValue>, std::shared_ptr<Record>>
        v;

    Value() = default;
    Value(bool b) : v(b) {}
    Value(std::int64_t n) : v(n) {}
    Value(int n) : v(static_cast<std::int64_t>(n)) {}
    Value(double d) : v(d) {}
    Value(std::string s) : v(std::move(s)) {}
    Value(Var x) : v(x) {}
    Value(LayerPtr l) : v(std::move(l)) {}
    Value(std::shared_ptr<Function> f) : v(std::move(f)) {}
    Value(TupleValue t) : v(std::make_shared<TupleValue>(std::move(t))) {}
    Value(std::shared_ptr<Record> r) : v(std::move(r)) {}

    bool is_none() const { return std::holds_alternative<std::monostate>(v); }
    bool is_number() const { return std::holds_alternative<double>(v) || std::holds_alternative<std::int64_t>(v); }
    template <class T> bool is() const { return std::holds_alternative<T>(v); }
    template <class T> const T& get() const { return std::get<T>(v); }
    double number() const { return is<double>() ? get<double>() : static_cast<double>(get<std::int64_t>()); }
};

// How a value is written in the language, for signatures: none, true, 3, 0.001, "x", (0, 1).
std::string source_text(const Value& value);

// "tensor f32 [B, 256]", "integer 3", "string \"x\"", "layer dense", ... for messages.
std::string describe(const Value& value);
// The kind alone: "tensor", "number", "layer", "function", ...
std::string kind_name(const Value& value);

struct Record {
    std::string kind;    // "regularizer", "optimizer", "schedule", "dataset", "init", "constraint"
    std::string name;    // "l2", "adam", "fashion_mnist", ...
    std::map<std::string, Value> fields;
    Location loc;
};

// Arguments of a call as written, values already evaluated.
struct CallArgs {
    std::vector<Value> positional;
    std::vector<Location> positional_locs;
    std::vector<std::pair<std::string, Value>> keywords;
    std::vector<Location> keyword_locs;
    Location loc;        // the call
};

class Interpreter;

// Note [Signatures]
// Every callable value (an engine op, a builtin, a layer constructor, a model's `def` or
// `layer`) carries its signature: its parameters in order, which are required, each default
// as text and each kind where one is known (an op's schema kinds, a def's `x: f32[B, 784]`),
// and what it does (an op's doc, the comment above a def). One binder
// (dsl/src/binder.hpp) matches a call's arguments to it when the call runs, and checks a call
// as written before anything runs, with the same words for the same mistake: too many
// arguments, an unknown keyword (with "did you mean"), an argument given twice, a missing one.
// A variadic signature (serial(layers...)) takes any number of positional arguments; its
// keywords are still checked. `wengert help NAME` prints the signature with its kinds and doc,
// and docs/dsl.md's op table is made from the same signatures.
struct Signature {
    struct Param {
        std::string name;
        std::optional<std::string> default_text;   // none: required
        std::string kind;                          // "tensor", "integer", "f32[B, 784]"; empty: any value

        bool has_default() const { return default_text.has_value(); }
    };
    std::string name;
    std::vector<Param> params;
    bool variadic = false;
    std::string rest;   // the variadic positionals as shown ("layers..."); may be empty
    std::string text;   // "softmax(x, axis=-1)", "serial(layers...)": what messages show
    std::string doc;    // what it does, as its doc string or comment says; may be empty

    std::vector<std::string> names() const;
    // The signature with kinds: "softmax(x: tensor, axis: integer = -1)".
    std::string reference() const;
};

struct Function {
    std::string name;
    Signature signature;
    std::function<Value(Interpreter&, CallArgs&)> call;
    // When a function is used where a layer is expected (serial(dense(10), relu)), the number
    // of tensors it takes; -1 means it cannot be a layer.
    int layer_inputs = -1;
    int layer_outputs = 1;
    // A `layer` definition: used where a layer is expected, it is called with no arguments
    // and its result is the layer.
    bool layer_factory = false;
    // A `def` of a loaded file (not a builtin): it may be passed an absent argument
    // (Note [Absent inputs] in dsl/src/interpreter_impl.hpp).
    bool is_def = false;
};

}  // namespace wengert::dsl
