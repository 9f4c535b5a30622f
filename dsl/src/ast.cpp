#include "wengert/dsl/ast.hpp"

#include <algorithm>

namespace wengert::dsl {

const char* op_text(UnaryOp op) {
    switch (op) {
        case UnaryOp::negate: return "-";
        case UnaryOp::logical_not: return "not";
    }
    return "?";
}

const char* op_text(BinaryOp op) {
    switch (op) {
        case BinaryOp::logical_or: return "or";
        case BinaryOp::logical_and: return "and";
        case BinaryOp::equal: return "==";
        case BinaryOp::not_equal: return "!=";
        case BinaryOp::less: return "<";
        case BinaryOp::less_equal: return "<=";
        case BinaryOp::greater: return ">";
        case BinaryOp::greater_equal: return ">=";
        case BinaryOp::add: return "+";
        case BinaryOp::subtract: return "-";
        case BinaryOp::multiply: return "*";
        case BinaryOp::divide: return "/";
        case BinaryOp::floor_divide: return "//";
        case BinaryOp::modulo: return "%";
        case BinaryOp::matmul: return "@";
        case BinaryOp::power: return "^";
    }
    return "?";
}

namespace {

struct ChildHeight {
    int tallest = 0;

    void add(const ExprPtr& child) {
        if (child) tallest = std::max(tallest, child->height);
    }
    void add(const std::vector<ExprPtr>& children) {
        for (const ExprPtr& child : children) add(child);
    }

    void operator()(const IntegerLiteral&) {}
    void operator()(const FloatLiteral&) {}
    void operator()(const StringLiteral&) {}
    void operator()(const BoolLiteral&) {}
    void operator()(const NoneLiteral&) {}
    void operator()(const Name&) {}
    void operator()(const Unary& e) { add(e.operand); }
    void operator()(const Binary& e) {
        add(e.lhs);
        add(e.rhs);
    }
    void operator()(const Call& e) {
        add(e.callee);
        add(e.args);
        for (const KeywordArg& kwarg : e.kwargs) add(kwarg.value);
    }
    void operator()(const Slice& e) {
        add(e.lower);
        add(e.upper);
        add(e.step);
    }
    void operator()(const Index& e) {
        add(e.target);
        add(e.indices);
    }
    void operator()(const Attribute& e) { add(e.target); }
    void operator()(const Tuple& e) { add(e.elements); }
    void operator()(const List& e) { add(e.elements); }
};

}  // namespace

Expr::Expr(Location loc_, Node node_) : loc(loc_), node(std::move(node_)) {
    ChildHeight children;
    std::visit(children, node);
    height = 1 + children.tallest;
}

void for_each_child(const Expr& e, const std::function<void(const Expr&)>& f) {
    if (const auto* u = e.as<Unary>()) {
        f(*u->operand);
    } else if (const auto* b = e.as<Binary>()) {
        f(*b->lhs);
        f(*b->rhs);
    } else if (const auto* c = e.as<Call>()) {
        f(*c->callee);
        for (const auto& a : c->args) f(*a);
        for (const auto& k : c->kwargs) f(*k.value);
    } else if (const auto* s = e.as<Slice>()) {
        for (const ExprPtr* p : {&s->lower, &s->upper, &s->step}) if (*p) f(**p);
    } else if (const auto* ix = e.as<Index>()) {
        f(*ix->target);
        for (const auto& i : ix->indices) f(*i);
    } else if (const auto* a = e.as<Attribute>()) {
        f(*a->target);
    } else if (const auto* t = e.as<Tuple>()) {
        for (const auto& el : t->elements) f(*el);
    } else if (const auto* l = e.as<List>()) {
        for (const auto& el : l->elements) f(*el);
    }
}

}  // namespace wengert::dsl
