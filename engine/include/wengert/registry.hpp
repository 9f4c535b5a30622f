// wengert: the one registry of ops.
//
// Note [The op registry]
// Every differentiable op (and every op without a gradient: comparisons, argmax, creation) is
// registered once, by the file that defines it, with its argument schema and a generic call.
// The registry is read by the language's interpreter (builtins are looked up here), by the
// gradient-check sweep (a registered op without a case fails the test suite), and through the
// language, by the docs generator (dsl/tools/op_table.cpp, docs/dsl.md's op table). An unknown name is an error that lists the
// closest known ones.
//
// Note [Registering an op]
// An op is named once, where it is registered with its schema and the C++ function computing it:
//     r.def("softmax", {arg::tensor("x"), arg::integer("axis", -1)},
//           "exp(x - logsumexp(x)) along axis, stable for any logits", &softmax);
// The function's parameters take the schema's arguments in order, each read as the parameter's
// type (ArgRead below): an `int` is an axis that must fit one, a DType, Reduction, Activation or
// Alignment is parsed from its string, a Shape from its integers, a std::optional is empty when
// its argument is absent. def checks, when the registry is built, that the function takes as
// many parameters as the schema names and that each reads its argument's kind, so a schema and
// a function that disagree fail every use of the registry, not one call. A read names the op in
// its errors, and so does an ArgumentError the function throws: no function restates its op's
// name.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "wengert/error.hpp"
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

// A default as a signature shows it: "-1", "\"mean\"", "none", "(1, 1)".
std::string arg_value_text(const ArgValue& value);

// The schema's arguments, as a signature reads: arg::tensor("x"), arg::integer("axis", -1),
// arg::tensor("mask", arg::none) for one that may be absent.
namespace arg {
inline constexpr struct None {} none;
ArgSpec tensor(std::string name);
ArgSpec tensor(std::string name, None);
ArgSpec tensors(std::string name);
ArgSpec number(std::string name);
ArgSpec number(std::string name, double default_value);
ArgSpec number(std::string name, None);
ArgSpec integer(std::string name);
ArgSpec integer(std::string name, std::int64_t default_value);
ArgSpec integer(std::string name, None);
ArgSpec boolean(std::string name, bool default_value);
ArgSpec ints(std::string name);
ArgSpec ints(std::string name, std::vector<std::int64_t> default_value);
ArgSpec ints(std::string name, None);
ArgSpec string(std::string name, std::string default_value);
ArgSpec padding(std::string name, std::string default_value);
// dtype = "f32"; the language reads it left out as the run's floating dtype.
ArgSpec dtype();
}  // namespace arg

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

// A registered function's complaint about its arguments ("unknown approximate 'erf'"): the
// registry reports it as a ShapeError of the op, "gelu: unknown approximate 'erf'".
class ArgumentError : public Error {
public:
    using Error::Error;
};

// Whether gradients flow through an op: none for comparisons, argmax, creation.
enum class Gradient { flows, none };

struct OpSchema {
    std::string name;
    std::vector<ArgSpec> args;
    std::string doc;                 // one line, for `wengert` docs and error messages
    bool differentiable = true;      // false: no gradient flows (comparisons, argmax, creation)
    std::function<Var(const Args&)> call;

    std::string signature() const;   // "softmax(x, axis=-1)"
};

// An integer or a pair (height, width), from an ints argument: conv and pool sizes.
struct Pair2d {
    std::int64_t h = 0, w = 0;
};

// ---- how a function's parameter reads its argument (Note [Registering an op]) --------------
// Argument i of one call of op `op`, as a parameter reads it; a read's errors name the op.
struct ArgRef {
    const Args& args;
    std::size_t i;
    const char* op;
    const std::string& name;
};
// ArgRead<T>::kind is the argument kind a parameter of type T reads, and read(arg) reads it.
template <class T> struct ArgRead;   // not specialised: no argument kind gives a T
template <> struct ArgRead<Var> {
    static constexpr ArgKind kind = ArgKind::tensor;
    static Var read(const ArgRef& a) { return a.args.tensor(a.i); }
};
template <> struct ArgRead<std::span<const Var>> {
    static constexpr ArgKind kind = ArgKind::tensors;
    static std::span<const Var> read(const ArgRef& a) { return a.args.tensors(a.i); }
};
template <> struct ArgRead<double> {
    static constexpr ArgKind kind = ArgKind::number;
    static double read(const ArgRef& a) { return a.args.number(a.i); }
};
template <> struct ArgRead<std::int64_t> {
    static constexpr ArgKind kind = ArgKind::integer;
    static std::int64_t read(const ArgRef& a) { return a.args.integer(a.i); }
};
template <> struct ArgRead<int> {   // an axis
    static constexpr ArgKind kind = ArgKind::integer;
    static int read(const ArgRef& a) { return a.args.axis(a.i, a.op); }
};
template <> struct ArgRead<bool> {
    static constexpr ArgKind kind = ArgKind::boolean;
    static bool read(const ArgRef& a) { return a.args.boolean(a.i); }
};
template <> struct ArgRead<std::vector<std::int64_t>> {
    static constexpr ArgKind kind = ArgKind::ints;
    static const std::vector<std::int64_t>& read(const ArgRef& a) { return a.args.ints(a.i); }
};
template <> struct ArgRead<std::vector<int>> {   // axes
    static constexpr ArgKind kind = ArgKind::ints;
    static std::vector<int> read(const ArgRef& a) { return a.args.axes(a.i, a.op); }
};
template <> struct ArgRead<Shape> {
    static constexpr ArgKind kind = ArgKind::ints;
    static Shape read(const ArgRef& a) { return Shape(std::span<const std::int64_t>(a.args.ints(a.i))); }
};
template <> struct ArgRead<Pair2d> {   // an integer or a pair, "stride is an integer or a pair (height, width)"
    static constexpr ArgKind kind = ArgKind::ints;
    static Pair2d read(const ArgRef& a);
};
template <> struct ArgRead<std::string> {
    static constexpr ArgKind kind = ArgKind::string;
    static const std::string& read(const ArgRef& a) { return a.args.string(a.i); }
};
template <> struct ArgRead<DType> {
    static constexpr ArgKind kind = ArgKind::string;
    static DType read(const ArgRef& a) { return parse_dtype(a.args.string(a.i), a.op); }
};
template <> struct ArgRead<Reduction> {
    static constexpr ArgKind kind = ArgKind::string;
    static Reduction read(const ArgRef& a) { return parse_reduction(a.args.string(a.i), a.op); }
};
template <> struct ArgRead<Activation> {
    static constexpr ArgKind kind = ArgKind::string;
    static Activation read(const ArgRef& a) { return parse_activation(a.args.string(a.i), a.op); }
};
template <> struct ArgRead<Alignment> {
    static constexpr ArgKind kind = ArgKind::string;
    static Alignment read(const ArgRef& a) { return parse_alignment(a.args.string(a.i), a.op); }
};
template <> struct ArgRead<Padding2d> {
    static constexpr ArgKind kind = ArgKind::padding;
    static Padding2d read(const ArgRef& a) { return a.args.padding(a.i, a.op); }
};
// empty when the argument is absent: its schema's default is arg::none
template <class T> struct ArgRead<std::optional<T>> {
    static constexpr ArgKind kind = ArgRead<T>::kind;
    static std::optional<T> read(const ArgRef& a) {
        if (!a.args.has(a.i)) return std::nullopt;
        return ArgRead<T>::read(a);
    }
};

namespace detail {

template <class T> inline constexpr bool is_optional = false;
template <class T> inline constexpr bool is_optional<std::optional<T>> = true;

// The decayed parameter types of a function pointer or a lambda, as a tuple.
template <class F> struct Params : Params<decltype(&F::operator())> {};
template <class R, class... P> struct Params<R (*)(P...)> {
    using type = std::tuple<std::decay_t<P>...>;
};
template <class R, class C, class... P> struct Params<R (C::*)(P...) const> {
    using type = std::tuple<std::decay_t<P>...>;
};

// Throws unless parameter `index` of op's function (optional or not) reads spec.
void check_param(const std::string& op, const ArgSpec& spec, std::size_t index, ArgKind reads, bool optional);
void check_arity(const std::string& op, std::size_t n_params, std::size_t n_args);

template <class... P, std::size_t... I>
void check_params(const std::string& op, const std::vector<ArgSpec>& specs, std::tuple<P...>*, std::index_sequence<I...>) {
    check_arity(op, sizeof...(P), specs.size());
    (check_param(op, specs[I], I, ArgRead<P>::kind, is_optional<P>), ...);
}

template <class F, class... P, std::size_t... I>
Var call_with(const F& fn, const Args& a, const std::string& op, const std::vector<std::string>& names, std::tuple<P...>*,
              std::index_sequence<I...>) {
    // braces: the arguments are read left to right, so the first bad one is the one reported;
    // a read that returns a reference into `a` is kept as one
    std::tuple<decltype(ArgRead<P>::read(std::declval<const ArgRef&>()))...> values{
        ArgRead<P>::read(ArgRef{a, I, op.c_str(), names[I]})...};
    return std::apply(fn, std::move(values));
}

}  // namespace detail

class Registry {
public:
    // Registers op `name`: fn's parameters read args in order (Note [Registering an op]).
    template <class F>
    void def(std::string name, std::vector<ArgSpec> args, std::string doc, F fn, Gradient gradient = Gradient::flows);
    const OpSchema* find(const std::string& name) const;
    // Throws Error "unknown op 'x'; did you mean 'y'?" (or the list of known ops).
    const OpSchema& get(const std::string& name) const;
    const std::vector<OpSchema>& all() const { return ops_; }

private:
    void add(OpSchema schema);
    std::vector<OpSchema> ops_;
};

template <class F>
void Registry::def(std::string name, std::vector<ArgSpec> args, std::string doc, F fn, Gradient gradient) {
    using Params = typename detail::Params<std::decay_t<F>>::type;
    using Indices = std::make_index_sequence<std::tuple_size_v<Params>>;
    detail::check_params(name, args, static_cast<Params*>(nullptr), Indices{});
    std::vector<std::string> names;
    for (const auto& spec : args) names.push_back(spec.name);
    auto call = [fn, op = name, names](const Args& a) -> Var {
        try {
            return detail::call_with(fn, a, op, names, static_cast<Params*>(nullptr), Indices{});
        } catch (const ArgumentError& e) {
            throw ShapeError(op, e.what());
        }
    };
    add({std::move(name), std::move(args), std::move(doc), gradient == Gradient::flows, std::move(call)});
}

const Registry& registry();

// Optimal string alignment distance (Levenshtein plus swaps of adjacent characters), shared by
// every "did you mean" in wengert (Note [Edit distance]).
std::size_t edit_distance(std::string_view a, std::string_view b);
// The closest of `candidates` to `name`, if it is close enough to suggest.
std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace wengert
