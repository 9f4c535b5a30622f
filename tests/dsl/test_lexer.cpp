// The lexer: tokens, where line breaks count, literals, and lexical errors.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "wengert/dsl/lexer.hpp"

using namespace wengert::dsl;

namespace {

// The tokens of `text` as their lexemes, a significant line break as "\n" and the end as "$".
std::string lexemes(const std::string& text) {
    SourceFile file("t.wg", text);
    DiagnosticSink sink;
    std::string out;
    for (const Token& token : lex(file, sink)) {
        if (!out.empty()) out += ' ';
        if (token.kind == TokenKind::newline) {
            out += "\\n";
        } else if (token.kind == TokenKind::end_of_file) {
            out += '$';
        } else {
            out += token.lexeme;
        }
    }
    return out;
}

std::vector<TokenKind> kinds(const std::string& text) {
    SourceFile file("t.wg", text);
    DiagnosticSink sink;
    std::vector<TokenKind> out;
    for (const Token& token : lex(file, sink)) out.push_back(token.kind);
    return out;
}

std::vector<std::string> errors(const std::string& text) {
    SourceFile file("t.wg", text);
    DiagnosticSink sink;
    lex(file, sink);
    std::vector<std::string> out;
    for (const Diagnostic& d : sink.diagnostics()) out.push_back(format_headline(d));
    return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("every keyword, punctuation mark and operator has its kind", "[dsl][lexer]") {
    using K = TokenKind;
    CHECK(kinds("import layer def param train loss metric return true false none and or not") ==
          std::vector<K>{K::kw_import, K::kw_layer, K::kw_def, K::kw_param, K::kw_train, K::kw_loss, K::kw_metric,
                         K::kw_return, K::kw_true, K::kw_false, K::kw_none, K::kw_and, K::kw_or, K::kw_not,
                         K::end_of_file});
    CHECK(kinds("( ) [ ] { } , : = . ;") ==
          std::vector<K>{K::left_paren, K::right_paren, K::left_bracket, K::right_bracket, K::left_brace,
                         K::right_brace, K::comma, K::colon, K::equal, K::dot, K::semicolon, K::end_of_file});
    CHECK(kinds("a + - * / ^ % @ == != < <= > >= b") ==
          std::vector<K>{K::identifier, K::plus, K::minus, K::star, K::slash, K::caret, K::percent, K::at,
                         K::equal_equal, K::bang_equal, K::less, K::less_equal, K::greater, K::greater_equal,
                         K::identifier, K::end_of_file});
    CHECK(kinds("x_1 _y Layer layers") ==
          std::vector<K>{K::identifier, K::identifier, K::identifier, K::identifier, K::end_of_file});
    CHECK(is_keyword(K::kw_import));
    CHECK(is_keyword(K::kw_not));
    CHECK_FALSE(is_keyword(K::identifier));
    CHECK_FALSE(is_keyword(K::left_paren));
}

TEST_CASE("tokens know their line, column and length in characters", "[dsl][lexer]") {
    SourceFile file("t.wg", "def f() {\n  y = \"é\" # comment\n}");
    DiagnosticSink sink;
    std::vector<Token> tokens = lex(file, sink);
    REQUIRE(tokens.size() == 12);
    const Token& y = tokens[6];
    CHECK(y.lexeme == "y");
    CHECK(y.loc.line == 2);
    CHECK(y.loc.column == 3);
    CHECK(y.loc.length == 1);
    const Token& text = tokens[8];
    CHECK(text.kind == TokenKind::string);
    CHECK(text.loc.column == 7);
    CHECK(text.loc.length == 3);
    CHECK(text.string == "é");
    const Token& newline = tokens[9];
    CHECK(newline.kind == TokenKind::newline);
    CHECK(newline.loc.line == 2);
    CHECK(newline.loc.column == 20);  // where the line ends, after the comment
    const Token& eof = tokens[11];
    CHECK(eof.kind == TokenKind::end_of_file);
    CHECK(eof.loc.line == 3);
    CHECK(eof.loc.column == 2);
}

TEST_CASE("a \\r\\n line break is one newline token where the line's text ends", "[dsl][lexer]") {
    SourceFile file("t.wg", "a = 1 # c\r\nb\r\n");
    DiagnosticSink sink;
    std::vector<Token> tokens = lex(file, sink);
    REQUIRE(tokens.size() == 7);
    CHECK(tokens[3].kind == TokenKind::newline);
    CHECK(tokens[3].loc.line == 1);
    CHECK(tokens[3].loc.column == 10);
    CHECK(tokens[3].lexeme == "\r\n");
    CHECK(tokens[5].kind == TokenKind::newline);
    CHECK(tokens[5].loc.column == 2);
    CHECK(lexemes("a\r = \"b\r\n") == "a = \"b \\n $");
}

TEST_CASE("line breaks end statements except inside ( ) and [ ] and after an operator", "[dsl][lexer]") {
    CHECK(lexemes("a = 1\nb = 2\n") == "a = 1 \\n b = 2 \\n $");
    CHECK(lexemes("\n\n# header\n\na = 1\n\n  \n# c\nb = 2") == "a = 1 \\n b = 2 $");
    CHECK(lexemes("f(a,\n  b)\n[1,\n 2]\n") == "f ( a , b ) \\n [ 1 , 2 ] \\n $");
    CHECK(lexemes("x = a +\n b\ny = a -\n b\n") == "x = a + b \\n y = a - b \\n $");
    CHECK(lexemes("x = a\n + b") == "x = a \\n + b $");
    CHECK(lexemes("layer l =\n  dense(3)\n") == "layer l = \\n dense ( 3 ) \\n $");  // the parser allows it
    CHECK(lexemes("a, \nb = f(x) and\n not y") == "a , b = f ( x ) and not y $");
    CHECK(lexemes("def f(\n x\n) {\n a = 1\n}\n") == "def f ( x ) { \\n a = 1 \\n } \\n $");
    CHECK(lexemes("x = a;b = 2") == "x = a ; b = 2 $");
}

TEST_CASE("braces inside brackets make line breaks count again until they close", "[dsl][lexer]") {
    CHECK(lexemes("(\n{\na\n}\nb\n)") == "( { \\n a \\n } b ) $");
}

TEST_CASE("line breaks inside a bracket that never closes count after all", "[dsl][lexer]") {
    CHECK(lexemes("h = relu(x\nz = 1\n") == "h = relu ( x \\n z = 1 \\n $");
    CHECK(lexemes("{ a = (1\n b = [2\n\n}\nc") == "{ a = ( 1 \\n b = [ 2 \\n } \\n c $");
    CHECK(lexemes("f((a\n b)\n c") == "f ( ( a b ) \\n c $");
    // Closed, however late, the bracket joins its lines.
    CHECK(lexemes("x = f(\n a\n b\n)\n") == "x = f ( a b ) \\n $");
}

TEST_CASE("a declaration or statement keyword opening a line closes brackets left open", "[dsl][lexer]") {
    CHECK(lexemes("h = f(x\ndef g() {}") == "h = f ( x \\n def g ( ) { } $");
    CHECK(lexemes("def g() {\n a = f(x\n return a\n}") == "def g ( ) { \\n a = f ( x \\n return a \\n } $");
    CHECK(lexemes("a = [f(x\n  loss l = 1\n") == "a = [ f ( x \\n loss l = 1 \\n $");
    CHECK(lexemes("y = 1 +\nreturn y") == "y = 1 + \\n return y $");
    // Not first on its line, a keyword is left for the parser to reject.
    CHECK(lexemes("d = load(split = train)\n") == "d = load ( split = train ) \\n $");
}

TEST_CASE("integers and floats", "[dsl][lexer]") {
    SourceFile file("t.wg", "0 42 0.5 3. 1e-4 2.5E+3 3.e2 007");
    DiagnosticSink sink;
    std::vector<Token> tokens = lex(file, sink);
    CHECK_FALSE(sink.has_errors());
    REQUIRE(tokens.size() == 9);
    CHECK(tokens[0].kind == TokenKind::integer);
    CHECK(tokens[0].integer == 0);
    CHECK(tokens[1].integer == 42);
    CHECK(tokens[2].kind == TokenKind::floating);
    CHECK(tokens[2].floating == 0.5);
    CHECK(tokens[3].kind == TokenKind::floating);
    CHECK(tokens[3].floating == 3.0);
    CHECK(tokens[4].floating == 1e-4);
    CHECK(tokens[5].floating == 2500.0);
    CHECK(tokens[6].floating == 300.0);
    CHECK(tokens[7].kind == TokenKind::integer);
    CHECK(tokens[7].integer == 7);
    CHECK(lexemes("x.y 1.0.z a[0].b") == "x . y 1.0 . z a [ 0 ] . b $");
    CHECK(lexemes("9223372036854775807") == "9223372036854775807 $");
}

TEST_CASE("strings decode their escapes", "[dsl][lexer]") {
    SourceFile file("t.wg", R"("a\"b\\c\nd\te" "" "# not a comment")");
    DiagnosticSink sink;
    std::vector<Token> tokens = lex(file, sink);
    CHECK_FALSE(sink.has_errors());
    REQUIRE(tokens.size() == 4);
    CHECK(tokens[0].string == "a\"b\\c\nd\te");
    CHECK(tokens[1].string.empty());
    CHECK(tokens[2].string == "# not a comment");
}

TEST_CASE("lexical errors are reported where they are, and lexing goes on", "[dsl][lexer]") {
    CHECK(errors("x = \"abc\ny = 2") == V{"t.wg:1:5: error: unterminated string"});
    CHECK(errors("x = \"abc\\") == V{"t.wg:1:5: error: unterminated string"});
    CHECK(errors("x = \"a\\qb\"") == V{"t.wg:1:7: error: unknown escape sequence '\\q' in string"});
    CHECK(errors("x = 3 $ 4 ? 5") ==
          V{"t.wg:1:7: error: unexpected character '$'", "t.wg:1:11: error: unexpected character '?'"});
    CHECK(errors("x = 'a'") == V{"t.wg:1:5: error: unexpected character \"'\": strings are written \"...\"",
                                 "t.wg:1:7: error: unexpected character \"'\": strings are written \"...\""});
    CHECK(errors("é = 1") == V{"t.wg:1:1: error: unexpected character U+00E9"});
    CHECK(errors("a = \x01") == V{"t.wg:1:5: error: unexpected character U+0001"});
    CHECK(errors("a = \xff + \xc3") ==
          V{"t.wg:1:5: error: invalid UTF-8 byte 0xFF", "t.wg:1:9: error: invalid UTF-8 byte 0xC3"});
    CHECK(errors("a = x ** 2") == V{"t.wg:1:7: error: '**' is not an operator: powers are written 'x ^ n'"});
    CHECK(errors("a = 1e 1e+ 12ab 0x1F 1.2.3 3.ex") ==
          V{"t.wg:1:5: error: malformed number '1e'", "t.wg:1:8: error: malformed number '1e+'",
            "t.wg:1:12: error: malformed number '12ab'", "t.wg:1:17: error: malformed number '0x1F'",
            "t.wg:1:22: error: malformed number '1.2.3'", "t.wg:1:28: error: malformed number '3.ex'"});
    CHECK(errors("a = 9223372036854775808 + 1e400") ==
          V{"t.wg:1:5: error: integer '9223372036854775808' does not fit in 64 bits",
            "t.wg:1:27: error: number '1e400' is out of range"});
}

TEST_CASE("C-style logic operators suggest the keywords", "[dsl][lexer]") {
    SourceFile file("t.wg", "a = !b && c || d & e");
    DiagnosticSink sink;
    lex(file, sink);
    REQUIRE(sink.diagnostics().size() == 4);
    CHECK(format_headline(sink.diagnostics()[0]) == "t.wg:1:5: error: unexpected character '!'");
    CHECK(sink.diagnostics()[0].suggestions == std::vector<std::string>{"not"});
    CHECK(format_headline(sink.diagnostics()[1]) == "t.wg:1:8: error: unexpected characters '&&'");
    CHECK(sink.diagnostics()[1].suggestions == std::vector<std::string>{"and"});
    CHECK(sink.diagnostics()[2].suggestions == std::vector<std::string>{"or"});
    CHECK(format_headline(sink.diagnostics()[3]) == "t.wg:1:18: error: unexpected character '&'");
}

TEST_CASE("bad characters and unterminated strings become error tokens, malformed numbers do not", "[dsl][lexer]") {
    using K = TokenKind;
    CHECK(kinds("$ 1e+ 12ab \"ab)") == std::vector<K>{K::error, K::floating, K::integer, K::error, K::end_of_file});
    CHECK(lexemes("f(\"ab)\n") == "f ( \"ab) \\n $");
}
