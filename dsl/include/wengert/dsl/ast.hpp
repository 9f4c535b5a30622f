// wengert language: the syntax tree the parser produces.
//
// Every node carries the Location of the token that identifies it: a name or literal
// itself, the operator of a unary or binary expression, the '(' of a call, the '[' of an
// index, the name after '.' of an attribute, the ':' of a slice, the opening bracket of a
// tuple or list, the dtype of a shape annotation; for statements and declarations, the
// name they define (the first target of an assignment, the keyword of a return, the
// imported path or name of an import). The tree owns its children; a parsed tree never
// holds a null child except where a comment says it may be absent.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "wengert/dsl/source.hpp"

namespace wengert::dsl {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class UnaryOp { negate, logical_not };

enum class BinaryOp {
    logical_or, logical_and,
    equal, not_equal, less, less_equal, greater, greater_equal,
    add, subtract,
    multiply, divide, floor_divide, modulo, matmul,
    power,
};

// The operator as written: "-", "not", "+", "@", "and", "<=", ...
const char* op_text(UnaryOp op);
const char* op_text(BinaryOp op);

struct IntegerLiteral { std::int64_t value = 0; };
struct FloatLiteral { double value = 0.0; };
struct StringLiteral { std::string value; };
struct BoolLiteral { bool value = false; };
struct NoneLiteral {};
struct Name { std::string id; };

struct Unary {
    UnaryOp op;
    ExprPtr operand;
};

struct Binary {
    BinaryOp op;
    ExprPtr lhs;
    ExprPtr rhs;
};

// `name = value`: a keyword argument of a call, an attribute of a param declaration, a
// setting of a train block. loc is the name's.
struct KeywordArg {
    Location loc;
    std::string name;
    ExprPtr value;
};

// callee(args..., kwargs...): positional arguments always come first.
struct Call {
    ExprPtr callee;
    std::vector<ExprPtr> args;
    std::vector<KeywordArg> kwargs;
};

// lower:upper or lower:upper:step, only ever an element of Index::indices. Each bound may be
// absent (null): x[:], x[1:], x[::2].
struct Slice {
    ExprPtr lower;
    ExprPtr upper;
    ExprPtr step;
};

// target[i, j, ...]: each index is an expression or a Slice.
struct Index {
    ExprPtr target;
    std::vector<ExprPtr> indices;
};

// target.name
struct Attribute {
    ExprPtr target;
    std::string name;
};

// (a, b), (a,) and (); a parenthesised single expression is that expression.
struct Tuple { std::vector<ExprPtr> elements; };
struct List { std::vector<ExprPtr> elements; };

struct Expr {
    using Node = std::variant<IntegerLiteral, FloatLiteral, StringLiteral, BoolLiteral, NoneLiteral, Name, Unary,
                              Binary, Call, Slice, Index, Attribute, Tuple, List>;

    Expr(Location loc, Node node);

    Location loc;
    Node node;
    // 1 for a leaf, else 1 + the tallest child's height. The parser rejects expressions taller
    // than max_expression_height, so recursive walks over a parsed tree are safe.
    int height = 1;

    template <class T> const T* as() const { return std::get_if<T>(&node); }
    template <class T> T* as() { return std::get_if<T>(&node); }
};

inline constexpr int max_expression_height = 256;

// Calls f on each direct child of e, in source order (a call's callee, then its arguments and
// keyword values). The one walk over an expression's children: static name resolution and
// `wengert check`'s literal sizes recurse through it.
void for_each_child(const Expr& e, const std::function<void(const Expr&)>& f);

// One entry of a shape annotation: a fixed size or a symbolic one (B, T, d_model).
struct Dim {
    Location loc;
    std::variant<std::int64_t, std::string> size;
};

// f32[B, 784]: loc is the dtype's. dims is empty for f32[].
struct TypeAnnotation {
    Location loc;
    std::string dtype;
    std::vector<Dim> dims;
};

// A parameter of a layer or def: name, optional `: type`, optional `= default`.
struct Param {
    Location loc;
    std::string name;
    std::optional<TypeAnnotation> type;
    ExprPtr default_value;  // null when there is none
};

// Statements, the body of a def.

struct AssignTarget {
    Location loc;
    std::string name;
};

// `h = expr` or `a, b = expr` (destructuring several outputs).
struct Assign {
    std::vector<AssignTarget> targets;
    ExprPtr value;
};

// `loss name = expr`: a term of the training loss.
struct LossTerm {
    std::string name;
    ExprPtr value;
};

// `metric name = expr`: reported, not differentiated.
struct MetricTerm {
    std::string name;
    ExprPtr value;
};

// `return a, b`: at least one value.
struct Return { std::vector<ExprPtr> values; };

struct Stmt {
    using Node = std::variant<Assign, LossTerm, MetricTerm, Return>;
    Location loc;
    Node node;

    template <class T> const T* as() const { return std::get_if<T>(&node); }
};

// Declarations, the top level of a file.

// `import "path.wg"` (is_path) or `import name`.
struct Import {
    std::string target;
    bool is_path = false;
};

// `layer name(params) = expr` or `layer name = expr`: a named, parameterised layer value.
struct LayerDef {
    std::string name;
    std::vector<Param> params;
    ExprPtr body;
};

// `def name(params) { statements }`
struct FunctionDef {
    std::string name;
    std::vector<Param> params;
    std::vector<Stmt> body;
};

// `param name: type = init, attribute = expr, ...`
struct ParamDecl {
    std::string name;
    TypeAnnotation type;
    ExprPtr init;
    std::vector<KeywordArg> attributes;
};

// `train target { setting = expr ... }`
struct TrainBlock {
    std::string target;
    std::vector<KeywordArg> settings;
};

// `name = expr` at the top level.
struct Constant {
    std::string name;
    ExprPtr value;
};

struct Decl {
    using Node = std::variant<Import, LayerDef, FunctionDef, ParamDecl, TrainBlock, Constant>;
    Location loc;
    Node node;

    template <class T> const T* as() const { return std::get_if<T>(&node); }
};

struct Module {
    const SourceFile* file = nullptr;
    std::vector<Decl> decls;
};

}  // namespace wengert::dsl
