// wengert language: the parser.
#pragma once

#include "wengert/dsl/ast.hpp"
#include "wengert/dsl/diagnostics.hpp"
#include "wengert/dsl/source.hpp"

namespace wengert::dsl {

// Lexes and parses `file`, reporting every lexical and syntax error to `sink` in source
// order. After an error the parser skips to the next statement (inside a body) or
// declaration (at the top level) and goes on, so independent errors are all reported in one
// run. Declarations and statements that had a syntax error are left out of the module; the
// rest are complete. Never throws for any input text.
Module parse(const SourceFile& file, DiagnosticSink& sink);

// The dtype names a shape annotation accepts: f32, f64, i64, u8 and bool (the engine's
// wengert::parse_dtype names).
const std::vector<std::string>& annotation_dtypes();

}  // namespace wengert::dsl
