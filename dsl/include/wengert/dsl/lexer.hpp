// wengert language: tokens and the lexer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wengert/dsl/diagnostics.hpp"
#include "wengert/dsl/source.hpp"

namespace wengert::dsl {

enum class TokenKind {
    // names and literals
    identifier, integer, floating, string,
    // keywords (contiguous, kw_import to kw_not: see is_keyword)
    kw_import, kw_layer, kw_def, kw_param, kw_train, kw_loss, kw_metric, kw_return,
    kw_true, kw_false, kw_none, kw_and, kw_or, kw_not,
    // punctuation
    left_paren, right_paren, left_bracket, right_bracket, left_brace, right_brace,
    comma, colon, equal, dot, semicolon,
    // operators
    plus, minus, star, slash, slash_slash, caret, percent, at,
    equal_equal, bang_equal, less, less_equal, greater, greater_equal,
    // structure
    newline, end_of_file,
    // a bad character or an unterminated string; the lexer has already reported it
    error,
};

inline constexpr std::size_t token_kind_count = static_cast<std::size_t>(TokenKind::error) + 1;

bool is_keyword(TokenKind kind);

// How messages name a kind: "identifier", "'('", "'import'", "newline", "end of file".
const char* token_kind_name(TokenKind kind);

struct Token {
    TokenKind kind = TokenKind::end_of_file;
    std::string_view lexeme;  // the token's text in the source file
    Location loc;             // where it starts; loc.length is its length in characters
    std::int64_t integer = 0;  // value of an integer token
    double floating = 0.0;     // value of a floating token
    std::string string;        // value of a string token, escapes decoded
};

// Splits `file` into tokens, ending with one end_of_file token. Lexical errors go to `sink`;
// lexing always runs to the end of the file. A malformed number still yields a number token
// (value 0), so parsing goes on around it; a character that starts no token and an
// unterminated string (which runs to the end of its line, closers included) yield an `error`
// token, and the parser skips the statement holding one without a knock-on error.
//
// Newlines separate statements, so they are tokens, with three exceptions where a line
// continues: inside ( ) and [ ] (but not inside { }, which hold statements), after a token
// that cannot end an expression (an operator, ',', ':', '.'), and on blank or comment-only
// lines (runs of newlines collapse into one). Two rules keep one missing closer from
// swallowing the rest of the file: the line breaks inside a ( or [ that never closes count
// after all, and a keyword that can only start a declaration or statement (import, layer,
// def, param, train, loss, metric, return), first on its line, closes any ( and [ left open
// before it and starts a new line.
std::vector<Token> lex(const SourceFile& file, DiagnosticSink& sink);

}  // namespace wengert::dsl
