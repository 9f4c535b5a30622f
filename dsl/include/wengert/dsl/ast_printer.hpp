// wengert language: the syntax tree as S-expressions, for tests and debugging.
#pragma once

#include <string>

#include "wengert/dsl/ast.hpp"

namespace wengert::dsl {

// Expressions: `x`, `3`, `0.5`, `"s"`, `true`, `none`, `(- x)`, `(+ a b)`, `(^ x 2)`,
// `(call f a b :key v)`, `(index x 0 (slice _ 3))`, `(. a b)`, `(tuple a b)`, `(list 1 2)`.
// A float always shows a '.' or an exponent; `_` is an absent slice bound.
std::string to_sexpr(const Expr& expr);

// Statements: `(= h e)`, `(= (a b) e)`, `(loss ce e)`, `(metric acc e)`, `(return a b)`.
std::string to_sexpr(const Stmt& stmt);

// Declarations: `(import "p.wg")`, `(import name)`, `(layer name (params ...) e)`,
// `(def name (params ...) stmt...)`, `(param Q f32[10, 10] e :constraint c)`,
// `(train name :key e ...)`, `(const name e)`. A parameter prints as its name, or as
// `(name : f32[B, 784] = default)` with the parts it has.
std::string to_sexpr(const Decl& decl);

// One declaration per line.
std::string to_sexpr(const Module& module);

// f32[B, 784]
std::string to_string(const TypeAnnotation& type);

}  // namespace wengert::dsl
