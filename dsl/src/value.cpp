// Values described for messages: "tensor f32 [B, 256]", "integer 3", "layer dense".
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "wengert/dsl/value.hpp"

namespace wengert::dsl {

std::string source_text(const Value& value) {
    if (value.is_none()) return "none";
    if (value.is<bool>()) return value.get<bool>() ? "true" : "false";
    if (value.is<std::int64_t>()) return fmt::format("{}", value.get<std::int64_t>());
    if (value.is<double>()) return fmt::format("{}", value.get<double>());
    if (value.is<std::string>()) return fmt::format("\"{}\"", value.get<std::string>());
    if (value.is<std::shared_ptr<TupleValue>>()) {
        std::vector<std::string> parts;
        for (const auto& e : *value.get<std::shared_ptr<TupleValue>>()) parts.push_back(source_text(e));
        return fmt::format("({}{})", fmt::join(parts, ", "), parts.size() == 1 ? "," : "");
    }
    return describe(value);
}

std::string kind_name(const Value& value) {
    struct Visitor {
        std::string operator()(std::monostate) const { return "none"; }
        std::string operator()(bool) const { return "bool"; }
        std::string operator()(std::int64_t) const { return "integer"; }
        std::string operator()(double) const { return "number"; }
        std::string operator()(const std::string&) const { return "string"; }
        std::string operator()(const Var&) const { return "tensor"; }
        std::string operator()(const LayerPtr&) const { return "layer"; }
        std::string operator()(const std::shared_ptr<Function>&) const { return "function"; }
        std::string operator()(const std::shared_ptr<TupleValue>&) const { return "tuple"; }
        std::string operator()(const std::shared_ptr<Record>& r) const { return r->kind; }
    };
    return std::visit(Visitor{}, value.v);
}

std::string describe(const Value& value) {
    if (value.is<Var>()) {
        const Var& x = value.get<Var>();
        return fmt::format("tensor {} {}", dtype_name(x.dtype()), x.shape().str());
    }
    if (value.is<bool>()) return value.get<bool>() ? "true" : "false";
    if (value.is<std::int64_t>()) return fmt::format("integer {}", value.get<std::int64_t>());
    if (value.is<double>()) return fmt::format("number {}", value.get<double>());
    if (value.is<std::string>()) return fmt::format("string \"{}\"", value.get<std::string>());
    if (value.is<LayerPtr>()) return fmt::format("layer {}", value.get<LayerPtr>()->kind());
    if (value.is<std::shared_ptr<Function>>()) return fmt::format("function {}", value.get<std::shared_ptr<Function>>()->name);
    if (value.is<std::shared_ptr<TupleValue>>()) return fmt::format("tuple of {}", value.get<std::shared_ptr<TupleValue>>()->size());
    if (value.is<std::shared_ptr<Record>>()) {
        const auto& r = value.get<std::shared_ptr<Record>>();
        return fmt::format("{} {}", r->kind, r->name);
    }
    return kind_name(value);
}

}  // namespace wengert::dsl
