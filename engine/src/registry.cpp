#include "wengert/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>

#include "ops/families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

const char* arg_kind_name(ArgKind kind) {
    switch (kind) {
        case ArgKind::tensor: return "tensor";
        case ArgKind::tensors: return "list of tensors";
        case ArgKind::number: return "number";
        case ArgKind::integer: return "integer";
        case ArgKind::boolean: return "bool";
        case ArgKind::ints: return "list of integers";
        case ArgKind::string: return "string";
        case ArgKind::padding: return "padding";
    }
    return "?";
}

namespace arg {

ArgSpec tensor(std::string name) { return {std::move(name), ArgKind::tensor, std::nullopt}; }
ArgSpec tensor(std::string name, None) { return {std::move(name), ArgKind::tensor, ArgValue{}}; }
ArgSpec tensors(std::string name) { return {std::move(name), ArgKind::tensors, std::nullopt}; }
ArgSpec number(std::string name) { return {std::move(name), ArgKind::number, std::nullopt}; }
ArgSpec number(std::string name, double default_value) { return {std::move(name), ArgKind::number, ArgValue{default_value}}; }
ArgSpec number(std::string name, None) { return {std::move(name), ArgKind::number, ArgValue{}}; }
ArgSpec integer(std::string name) { return {std::move(name), ArgKind::integer, std::nullopt}; }
ArgSpec integer(std::string name, std::int64_t default_value) {
    return {std::move(name), ArgKind::integer, ArgValue{default_value}};
}
ArgSpec integer(std::string name, None) { return {std::move(name), ArgKind::integer, ArgValue{}}; }
ArgSpec boolean(std::string name, bool default_value) { return {std::move(name), ArgKind::boolean, ArgValue{default_value}}; }
ArgSpec ints(std::string name) { return {std::move(name), ArgKind::ints, std::nullopt}; }
ArgSpec ints(std::string name, std::vector<std::int64_t> default_value) {
    return {std::move(name), ArgKind::ints, ArgValue{std::move(default_value)}};
}
ArgSpec ints(std::string name, None) { return {std::move(name), ArgKind::ints, ArgValue{}}; }
ArgSpec string(std::string name, std::string default_value) {
    return {std::move(name), ArgKind::string, ArgValue{std::move(default_value)}};
}
ArgSpec padding(std::string name, std::string default_value) {
    return {std::move(name), ArgKind::padding, ArgValue{std::move(default_value)}};
}
ArgSpec dtype() { return string("dtype", "f32"); }

}  // namespace arg

double Args::number(std::size_t i) const {
    const ArgValue& v = values_.at(i);
    if (const auto* n = std::get_if<std::int64_t>(&v)) return static_cast<double>(*n);
    return std::get<double>(v);
}

namespace {

int checked_int_axis(std::int64_t axis, const char* op) {
    if (axis < std::numeric_limits<int>::min() || axis > std::numeric_limits<int>::max()) {
        throw ShapeError(op, fmt::format("axis {} is out of range", axis));
    }
    return static_cast<int>(axis);
}

}  // namespace

Padding2d Args::padding(std::size_t i, const char* op) const {
    const ArgValue& v = values_.at(i);
    if (const auto* name = std::get_if<std::string>(&v)) return parse_padding(*name, op);
    return explicit_padding(std::get<std::vector<std::int64_t>>(v), op);
}

int Args::axis(std::size_t i, const char* op) const { return checked_int_axis(integer(i), op); }

std::vector<int> Args::axes(std::size_t i, const char* op) const {
    std::vector<int> out;
    for (std::int64_t a : ints(i)) out.push_back(checked_int_axis(a, op));
    return out;
}

Pair2d ArgRead<Pair2d>::read(const ArgRef& a) {
    const std::vector<std::int64_t>& v = a.args.ints(a.i);
    if (v.size() == 1) return {v[0], v[0]};
    if (v.size() == 2) return {v[0], v[1]};
    throw ShapeError(a.op, fmt::format("{} is an integer or a pair (height, width); got {} values", a.name, v.size()));
}

namespace detail {

void check_arity(const std::string& op, std::size_t n_params, std::size_t n_args) {
    if (n_params != n_args) {
        throw Error(fmt::format("op '{}' is registered with {} arguments for a function of {} parameters", op, n_args, n_params));
    }
}

void check_param(const std::string& op, const ArgSpec& spec, std::size_t index, ArgKind reads, bool optional) {
    // an optional parameter reads an argument that is none by default, and only such a one
    const bool none_by_default = spec.default_value && std::holds_alternative<std::monostate>(*spec.default_value);
    auto kind = [](ArgKind k, bool maybe_none) { return fmt::format("{}{}", arg_kind_name(k), maybe_none ? " or none" : ""); };
    if (spec.kind != reads || optional != none_by_default) {
        throw Error(fmt::format("op '{}': argument '{}' ({}) does not match parameter {} of its function ({})", op, spec.name,
                                kind(spec.kind, none_by_default), index, kind(reads, optional)));
    }
}

}  // namespace detail

std::string arg_value_text(const ArgValue& v) {
    struct Visitor {
        std::string operator()(std::monostate) const { return "none"; }
        std::string operator()(const Var&) const { return "tensor"; }
        std::string operator()(const std::vector<Var>&) const { return "tensors"; }
        std::string operator()(double d) const { return fmt::format("{}", d); }
        std::string operator()(std::int64_t n) const { return fmt::format("{}", n); }
        std::string operator()(bool b) const { return b ? "true" : "false"; }
        // one integer stands for a list of one: stride=1, as the language writes it
        std::string operator()(const std::vector<std::int64_t>& xs) const {
            return xs.size() == 1 ? fmt::format("{}", xs[0]) : fmt::format("({})", fmt::join(xs, ", "));
        }
        std::string operator()(const std::string& s) const { return fmt::format("\"{}\"", s); }
    };
    return std::visit(Visitor{}, v);
}

std::string OpSchema::signature() const {
    std::vector<std::string> parts;
    for (const auto& arg : args) {
        parts.push_back(arg.default_value ? fmt::format("{}={}", arg.name, arg_value_text(*arg.default_value)) : arg.name);
    }
    return fmt::format("{}({})", name, fmt::join(parts, ", "));
}

void Registry::add(OpSchema schema) {
    if (find(schema.name)) throw Error(fmt::format("op '{}' is registered twice", schema.name));
    ops_.push_back(std::move(schema));
}

const OpSchema* Registry::find(const std::string& name) const {
    for (const auto& op : ops_) if (op.name == name) return &op;
    return nullptr;
}

const OpSchema& Registry::get(const std::string& name) const {
    if (const OpSchema* op = find(name)) return *op;
    std::vector<std::string> names;
    for (const auto& op : ops_) names.push_back(op.name);
    if (auto near = closest_name(name, names)) throw Error(fmt::format("unknown op '{}'; did you mean '{}'?", name, *near));
    throw Error(fmt::format("unknown op '{}'; known ops: {}", name, fmt::join(names, ", ")));
}

const Registry& registry() {
    static const Registry r = [] {
        Registry reg;
        register_elementwise(reg);
        register_unary(reg);
        register_reduce(reg);
        register_shape(reg);
        register_conv(reg);
        register_matmul(reg);
        register_linear(reg);
        register_softmax(reg);
        register_onehot(reg);
        register_loss(reg);
        register_index(reg);
        register_mask(reg);
        register_nn(reg);
        register_creation(reg);
        register_attention(reg);
        return reg;
    }();
    return r;
}

// Note [Edit distance]
// Optimal string alignment: Levenshtein's insertions, deletions and substitutions, plus the swap
// of two adjacent characters as one edit, so that "sfotmax" is one edit from "softmax", the
// typo people make most. Three rows of the table: row i, i - 1 and i - 2 (for the swap).
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], before[j - 2] + 1);
        }
        std::swap(before, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& candidates) {
    std::optional<std::string> best;
    std::size_t best_d = 0;
    for (const auto& c : candidates) {
        std::size_t d = edit_distance(name, c);
        if (!best || d < best_d) {
            best = c;
            best_d = d;
        }
    }
    std::size_t limit = std::max<std::size_t>(1, name.size() / 3);
    if (best && best_d <= limit) return best;
    return std::nullopt;
}

Reduction parse_reduction(const std::string& name, const char* op) {
    if (name == "mean") return Reduction::mean;
    if (name == "sum") return Reduction::sum;
    if (name == "none") return Reduction::none;
    throw ShapeError(op, fmt::format("unknown reduction '{}'; expected mean, sum or none", name));
}

}  // namespace wengert
