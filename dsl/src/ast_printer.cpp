#include "wengert/dsl/ast_printer.hpp"

#include <fmt/format.h>

namespace wengert::dsl {

namespace {

std::string quoted(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            case '\0': out += "\\0"; break;
            default: out += c;
        }
    }
    return out + '"';
}

std::string float_text(double value) {
    std::string text = fmt::format("{}", value);
    if (text.find_first_of(".e") == std::string::npos) text += ".0";
    return text;
}

std::string optional_sexpr(const ExprPtr& expr) { return expr ? to_sexpr(*expr) : "_"; }

std::string kwargs_sexpr(const std::vector<KeywordArg>& kwargs) {
    std::string out;
    for (const KeywordArg& kwarg : kwargs) out += fmt::format(" :{} {}", kwarg.name, to_sexpr(*kwarg.value));
    return out;
}

std::string list_sexpr(const std::vector<ExprPtr>& exprs) {
    std::string out;
    for (const ExprPtr& expr : exprs) {
        out += ' ';
        out += to_sexpr(*expr);
    }
    return out;
}

struct ExprPrinter {
    std::string operator()(const IntegerLiteral& e) const { return fmt::format("{}", e.value); }
    std::string operator()(const FloatLiteral& e) const { return float_text(e.value); }
    std::string operator()(const StringLiteral& e) const { return quoted(e.value); }
    std::string operator()(const BoolLiteral& e) const { return e.value ? "true" : "false"; }
    std::string operator()(const NoneLiteral&) const { return "none"; }
    std::string operator()(const Name& e) const { return e.id; }
    std::string operator()(const Unary& e) const { return fmt::format("({} {})", op_text(e.op), to_sexpr(*e.operand)); }
    std::string operator()(const Binary& e) const {
        return fmt::format("({} {} {})", op_text(e.op), to_sexpr(*e.lhs), to_sexpr(*e.rhs));
    }
    std::string operator()(const Call& e) const {
        return fmt::format("(call {}{}{})", to_sexpr(*e.callee), list_sexpr(e.args), kwargs_sexpr(e.kwargs));
    }
    std::string operator()(const Slice& e) const {
        if (e.step) {
            return fmt::format("(slice {} {} {})", optional_sexpr(e.lower), optional_sexpr(e.upper), to_sexpr(*e.step));
        }
        return fmt::format("(slice {} {})", optional_sexpr(e.lower), optional_sexpr(e.upper));
    }
    std::string operator()(const Index& e) const {
        return fmt::format("(index {}{})", to_sexpr(*e.target), list_sexpr(e.indices));
    }
    std::string operator()(const Attribute& e) const { return fmt::format("(. {} {})", to_sexpr(*e.target), e.name); }
    std::string operator()(const Tuple& e) const { return fmt::format("(tuple{})", list_sexpr(e.elements)); }
    std::string operator()(const List& e) const { return fmt::format("(list{})", list_sexpr(e.elements)); }
};

std::string param_sexpr(const Param& param) {
    if (!param.type && !param.default_value) return param.name;
    std::string out = "(" + param.name;
    if (param.type) out += " : " + to_string(*param.type);
    if (param.default_value) out += " = " + to_sexpr(*param.default_value);
    return out + ")";
}

std::string params_sexpr(const std::vector<Param>& params) {
    std::string out = "(params";
    for (const Param& param : params) {
        out += ' ';
        out += param_sexpr(param);
    }
    return out + ")";
}

struct StmtPrinter {
    std::string operator()(const Assign& s) const {
        if (s.targets.size() == 1) return fmt::format("(= {} {})", s.targets[0].name, to_sexpr(*s.value));
        std::string targets;
        for (const AssignTarget& target : s.targets) {
            if (!targets.empty()) targets += ' ';
            targets += target.name;
        }
        return fmt::format("(= ({}) {})", targets, to_sexpr(*s.value));
    }
    std::string operator()(const LossTerm& s) const { return fmt::format("(loss {} {})", s.name, to_sexpr(*s.value)); }
    std::string operator()(const MetricTerm& s) const {
        return fmt::format("(metric {} {})", s.name, to_sexpr(*s.value));
    }
    std::string operator()(const Return& s) const { return fmt::format("(return{})", list_sexpr(s.values)); }
};

struct DeclPrinter {
    std::string operator()(const Import& d) const {
        return fmt::format("(import {})", d.is_path ? quoted(d.target) : d.target);
    }
    std::string operator()(const LayerDef& d) const {
        return fmt::format("(layer {} {} {})", d.name, params_sexpr(d.params), to_sexpr(*d.body));
    }
    std::string operator()(const FunctionDef& d) const {
        std::string body;
        for (const Stmt& stmt : d.body) {
            body += ' ';
            body += to_sexpr(stmt);
        }
        return fmt::format("(def {} {}{})", d.name, params_sexpr(d.params), body);
    }
    std::string operator()(const ParamDecl& d) const {
        return fmt::format("(param {} {} {}{})", d.name, to_string(d.type), to_sexpr(*d.init),
                           kwargs_sexpr(d.attributes));
    }
    std::string operator()(const TrainBlock& d) const {
        return fmt::format("(train {}{})", d.target, kwargs_sexpr(d.settings));
    }
    std::string operator()(const Constant& d) const { return fmt::format("(const {} {})", d.name, to_sexpr(*d.value)); }
};

}  // namespace

std::string to_sexpr(const Expr& expr) { return std::visit(ExprPrinter{}, expr.node); }
std::string to_sexpr(const Stmt& stmt) { return std::visit(StmtPrinter{}, stmt.node); }
std::string to_sexpr(const Decl& decl) { return std::visit(DeclPrinter{}, decl.node); }

std::string to_sexpr(const Module& module) {
    std::string out;
    for (const Decl& decl : module.decls) out += to_sexpr(decl) + '\n';
    return out;
}

std::string to_string(const TypeAnnotation& type) {
    std::string out = type.dtype + "[";
    for (std::size_t i = 0; i < type.dims.size(); ++i) {
        if (i > 0) out += ", ";
        const Dim& dim = type.dims[i];
        if (const auto* size = std::get_if<std::int64_t>(&dim.size)) {
            out += fmt::format("{}", *size);
        } else {
            out += std::get<std::string>(dim.size);
        }
    }
    return out + "]";
}

}  // namespace wengert::dsl
