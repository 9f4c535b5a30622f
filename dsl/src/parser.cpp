#include "wengert/dsl/parser.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "wengert/dsl/lexer.hpp"

namespace wengert::dsl {

const std::vector<std::string>& annotation_dtypes() {
    static const std::vector<std::string> names = {"f32", "f64", "i64", "u8", "bool"};
    return names;
}

namespace {

// Note [Error recovery]
// A syntax error is reported once, then thrown as SyntaxError to the loop that parses the
// statements of a body or the declarations of the file. That loop skips tokens to a point
// where parsing can resume (synchronize_statement / synchronize_declaration): the end of the
// line at the brace depth where the error happened, the '}' closing the body, or a keyword
// that starts a declaration. This is clox's panic mode with the panic flag replaced by
// unwinding: nothing between the error and the recovery point can report a knock-on error.
// Errors that leave the parser in step with the text (a repeated parameter, chained
// comparisons, an unknown dtype) are reported without unwinding. An `error` token means the
// lexer has already reported a bad character: tripping over it unwinds silently.
struct SyntaxError {};

const std::vector<std::string> declaration_keywords = {"def", "import", "layer", "param", "train"};
const std::vector<std::string> statement_keywords = {"loss", "metric", "return"};

// Binding power, weakest first. `^` is right-associative and binds tighter than unary minus
// (-x^2 is -(x^2)); comparisons do not chain.
enum class Precedence { none, logical_or, logical_and, logical_not, comparison, term, factor, unary, power, postfix };

Precedence tighter(Precedence precedence) { return static_cast<Precedence>(static_cast<int>(precedence) + 1); }

bool starts_declaration(TokenKind kind) {
    return kind == TokenKind::kw_import || kind == TokenKind::kw_layer || kind == TokenKind::kw_def ||
           kind == TokenKind::kw_param || kind == TokenKind::kw_train;
}

BinaryOp binary_op(TokenKind kind) {
    switch (kind) {
        case TokenKind::kw_or: return BinaryOp::logical_or;
        case TokenKind::kw_and: return BinaryOp::logical_and;
        case TokenKind::equal_equal: return BinaryOp::equal;
        case TokenKind::bang_equal: return BinaryOp::not_equal;
        case TokenKind::less: return BinaryOp::less;
        case TokenKind::less_equal: return BinaryOp::less_equal;
        case TokenKind::greater: return BinaryOp::greater;
        case TokenKind::greater_equal: return BinaryOp::greater_equal;
        case TokenKind::plus: return BinaryOp::add;
        case TokenKind::minus: return BinaryOp::subtract;
        case TokenKind::star: return BinaryOp::multiply;
        case TokenKind::slash: return BinaryOp::divide;
        case TokenKind::slash_slash: return BinaryOp::floor_divide;
        case TokenKind::percent: return BinaryOp::modulo;
        case TokenKind::at: return BinaryOp::matmul;
        case TokenKind::caret:
        default: return BinaryOp::power;
    }
}

std::string text(const Token& token) { return std::string(token.lexeme); }

class Parser {
public:
    Parser(const SourceFile& file, std::vector<Token> tokens, DiagnosticSink& sink)
        : file_(file), tokens_(std::move(tokens)), sink_(sink) {}

    Module parse_module() {
        Module module{&file_, {}};
        for (;;) {
            skip_separators();
            if (check(TokenKind::end_of_file)) break;
            try {
                module.decls.push_back(declaration());
            } catch (const SyntaxError&) {
                synchronize_declaration();
            }
        }
        return module;
    }

private:
    using PrefixRule = ExprPtr (Parser::*)(const Token&);
    using InfixRule = ExprPtr (Parser::*)(ExprPtr, const Token&);
    struct ParseRule {
        PrefixRule prefix = nullptr;
        InfixRule infix = nullptr;
        Precedence precedence = Precedence::none;
    };

    const SourceFile& file_;
    std::vector<Token> tokens_;
    DiagnosticSink& sink_;
    std::size_t current_ = 0;
    int nesting_ = 0;  // parse_precedence calls in progress

    // ---- tokens

    const Token& peek(std::size_t ahead = 0) const { return tokens_[std::min(current_ + ahead, tokens_.size() - 1)]; }
    bool check(TokenKind kind) const { return peek().kind == kind; }

    const Token& advance() {
        const Token& token = tokens_[current_];
        if (token.kind != TokenKind::end_of_file) ++current_;
        return token;
    }

    bool match(TokenKind kind) {
        if (!check(kind)) return false;
        advance();
        return true;
    }

    const Token& consume(TokenKind kind, const std::string& message) {
        if (!check(kind)) fail_expected(message);
        return advance();
    }

    // Consumes the bracket closing `opener`; when it is missing, the error has a note
    // pointing at the opener.
    const Token& consume_closing(TokenKind kind, const std::string& message, const Token& opener) {
        if (!check(kind)) {
            fail_expected(message, {Note{opener.loc, fmt::format("to match this {}", token_kind_name(opener.kind))}});
        }
        return advance();
    }

    // A '{' may open the line after the header it belongs to.
    void skip_newline_before_brace() {
        if (check(TokenKind::newline) && peek(1).kind == TokenKind::left_brace) advance();
    }

    void skip_separators() {
        while (match(TokenKind::newline) || match(TokenKind::semicolon)) {}
    }

    // ---- errors (see Note [Error recovery])

    // Where "expected ..." points: at the current token, unless what is missing is missing at
    // the end of a line: when the current token is a line break or the end of the file, or
    // sits on a later line with no line break token before it (the line was continued). Then
    // the error points just after the last token of that line.
    Location expected_location() const {
        const Token& token = peek();
        bool line_ended = token.kind == TokenKind::newline || token.kind == TokenKind::end_of_file;
        if (!line_ended && current_ > 0) {
            const Token& before = tokens_[current_ - 1];
            line_ended = before.kind != TokenKind::newline && token.loc.line > before.loc.line;
        }
        if (!line_ended) return token.loc;
        for (std::size_t i = current_; i-- > 0;) {
            const Token& last = tokens_[i];
            if (last.kind != TokenKind::newline) {
                return Location{last.loc.file, last.loc.line, last.loc.column + last.loc.length, 0};
            }
        }
        return token.loc;
    }

    [[noreturn]] void fail(Location loc, std::string message, std::vector<Note> notes = {},
                           std::vector<std::string> suggestions = {}) {
        report(loc, std::move(message), std::move(suggestions)).notes = std::move(notes);
        throw SyntaxError{};
    }

    [[noreturn]] void fail_expected(std::string message, std::vector<Note> notes = {},
                                    std::vector<std::string> suggestions = {}) {
        if (check(TokenKind::error)) throw SyntaxError{};
        fail(expected_location(), std::move(message), std::move(notes), std::move(suggestions));
    }

    // For a token that cannot start a statement or declaration, or cannot follow one (never a
    // line break or the end of the file: the loops calling this have skipped or stopped at
    // those).
    [[noreturn]] void fail_unexpected(const Token& token) {
        if (token.kind == TokenKind::error) throw SyntaxError{};
        fail(token.loc, fmt::format("unexpected token '{}'", token.lexeme));
    }

    Diagnostic& report(Location loc, std::string message, std::vector<std::string> suggestions = {}) {
        Diagnostic& diagnostic = sink_.error(loc, std::move(message));
        diagnostic.suggestions = std::move(suggestions);
        return diagnostic;
    }

    // Skips the rest of a statement after a syntax error, to the end of its line (at the brace
    // depth where it began), the '}' closing the body, or a declaration keyword opening a line.
    void synchronize_statement() {
        int depth = 0;
        for (;;) {
            const Token& token = peek();
            if (token.kind == TokenKind::end_of_file) return;
            if (depth == 0 && token.kind == TokenKind::right_brace) return;
            if (starts_declaration(token.kind) && token.loc.column == 1) return;
            advance();
            if (token.kind == TokenKind::left_brace) {
                ++depth;
            } else if (token.kind == TokenKind::right_brace) {
                --depth;
            } else if (depth == 0 && (token.kind == TokenKind::newline || token.kind == TokenKind::semicolon)) {
                return;
            }
        }
    }

    // Skips the rest of a declaration after a syntax error, including any { } body it has, to
    // a declaration keyword or to a line break at brace depth 0 followed by a line that starts
    // in column 1 (an indented line or a brace still belongs to the broken declaration).
    void synchronize_declaration() {
        int depth = 0;
        for (;;) {
            const Token& token = peek();
            if (token.kind == TokenKind::end_of_file) return;
            if (starts_declaration(token.kind) && (depth == 0 || token.loc.column == 1)) return;
            advance();
            if (token.kind == TokenKind::left_brace) {
                ++depth;
            } else if (token.kind == TokenKind::right_brace) {
                depth = std::max(0, depth - 1);
            } else if (depth == 0 && (token.kind == TokenKind::newline || token.kind == TokenKind::semicolon)) {
                const Token& next = peek();
                bool belongs_to_declaration = next.kind == TokenKind::left_brace ||
                                              next.kind == TokenKind::right_brace || next.loc.column > 1;
                if (token.kind == TokenKind::semicolon || !belongs_to_declaration) return;
            }
        }
    }

    // A statement or declaration ends at a newline, a ';', the end of the file, or (inside
    // braces) the closing '}'.
    void expect_end(const char* what, bool in_braces) {
        if (match(TokenKind::semicolon) || check(TokenKind::newline) || check(TokenKind::end_of_file)) return;
        if (in_braces && check(TokenKind::right_brace)) return;
        if (check(TokenKind::right_paren) || check(TokenKind::right_bracket) || check(TokenKind::right_brace)) {
            fail_unexpected(peek());
        }
        fail_expected(fmt::format("expected a newline or ';' after the {}", what));
    }

    // ---- expressions: a Pratt parser driven by rule()

    static const ParseRule& rule(TokenKind kind) {
        static const std::array<ParseRule, token_kind_count> rules = [] {
            std::array<ParseRule, token_kind_count> table{};
            auto set = [&table](TokenKind kind, PrefixRule prefix, InfixRule infix, Precedence precedence) {
                table[static_cast<std::size_t>(kind)] = ParseRule{prefix, infix, precedence};
            };
            using P = Precedence;
            using K = TokenKind;
            set(K::left_paren, &Parser::grouping, &Parser::call, P::postfix);
            set(K::left_bracket, &Parser::list, &Parser::index, P::postfix);
            set(K::dot, nullptr, &Parser::attribute, P::postfix);
            set(K::caret, nullptr, &Parser::binary, P::power);
            set(K::minus, &Parser::unary, &Parser::binary, P::term);
            set(K::star, nullptr, &Parser::binary, P::factor);
            set(K::slash, nullptr, &Parser::binary, P::factor);
            set(K::slash_slash, nullptr, &Parser::binary, P::factor);
            set(K::percent, nullptr, &Parser::binary, P::factor);
            set(K::at, nullptr, &Parser::binary, P::factor);
            set(K::plus, nullptr, &Parser::binary, P::term);
            set(K::equal_equal, nullptr, &Parser::binary, P::comparison);
            set(K::bang_equal, nullptr, &Parser::binary, P::comparison);
            set(K::less, nullptr, &Parser::binary, P::comparison);
            set(K::less_equal, nullptr, &Parser::binary, P::comparison);
            set(K::greater, nullptr, &Parser::binary, P::comparison);
            set(K::greater_equal, nullptr, &Parser::binary, P::comparison);
            set(K::kw_not, &Parser::unary, nullptr, P::none);
            set(K::kw_and, nullptr, &Parser::binary, P::logical_and);
            set(K::kw_or, nullptr, &Parser::binary, P::logical_or);
            set(K::identifier, &Parser::name, nullptr, P::none);
            set(K::integer, &Parser::literal, nullptr, P::none);
            set(K::floating, &Parser::literal, nullptr, P::none);
            set(K::string, &Parser::literal, nullptr, P::none);
            set(K::kw_true, &Parser::literal, nullptr, P::none);
            set(K::kw_false, &Parser::literal, nullptr, P::none);
            set(K::kw_none, &Parser::literal, nullptr, P::none);
            return table;
        }();
        return rules[static_cast<std::size_t>(kind)];
    }

    ExprPtr expression() { return parse_precedence(Precedence::logical_or); }

    // The value after the '=' of a definition, assignment, attribute or setting, which may
    // start on the next line; unless that line starts a statement of its own (`name =`,
    // `a, b =`, a keyword): then the value is missing, and the error points after the '='.
    ExprPtr assigned_value() {
        if (check(TokenKind::newline)) {
            const Token& next = peek(1);
            bool starts_statement = is_keyword(next.kind) || next.kind == TokenKind::right_brace ||
                                    (next.kind == TokenKind::identifier &&
                                     (peek(2).kind == TokenKind::equal || peek(2).kind == TokenKind::comma));
            if (starts_statement) fail_expected("expected an expression");
            advance();
        }
        return expression();
    }

    // Parses an expression whose operators bind at least as tightly as `precedence`.
    ExprPtr parse_precedence(Precedence precedence) {
        if (nesting_ >= max_expression_height) fail(peek().loc, too_deep());
        ++nesting_;
        struct Unnest {
            int& nesting;
            ~Unnest() { --nesting; }
        } unnest{nesting_};

        // `name =` opening a continued line is the next statement: the operand is missing.
        bool on_later_line = current_ > 0 && peek().loc.line > tokens_[current_ - 1].loc.line;
        if (on_later_line && check(TokenKind::identifier) && peek(1).kind == TokenKind::equal) {
            fail_expected("expected an expression");
        }
        if (check(TokenKind::kw_not) && precedence > Precedence::logical_not) {
            fail(peek().loc, "'not' inside an operand needs parentheses: '(not ...)'");
        }
        PrefixRule prefix = rule(peek().kind).prefix;
        if (prefix == nullptr) {
            const Token& token = peek();
            if (is_keyword(token.kind) && token.loc.line == expected_location().line) {
                fail(token.loc, fmt::format("expected an expression, found keyword '{}'", token.lexeme));
            }
            fail_expected("expected an expression");
        }
        ExprPtr expr = (this->*prefix)(advance());
        check_height(*expr);
        while (precedence <= rule(peek().kind).precedence) {
            const Token& op = advance();
            expr = (this->*rule(op.kind).infix)(std::move(expr), op);
            check_height(*expr);
        }
        return expr;
    }

    static std::string too_deep() {
        return fmt::format("expression nested too deeply (more than {} levels)", max_expression_height);
    }

    void check_height(const Expr& expr) {
        if (expr.height > max_expression_height) fail(expr.loc, too_deep());
    }

    static ExprPtr make(Location loc, Expr::Node node) { return std::make_unique<Expr>(loc, std::move(node)); }

    ExprPtr literal(const Token& token) {
        switch (token.kind) {
            case TokenKind::integer: return make(token.loc, IntegerLiteral{token.integer});
            case TokenKind::floating: return make(token.loc, FloatLiteral{token.floating});
            case TokenKind::string: return make(token.loc, StringLiteral{token.string});
            case TokenKind::kw_true: return make(token.loc, BoolLiteral{true});
            case TokenKind::kw_false: return make(token.loc, BoolLiteral{false});
            case TokenKind::kw_none:
            default: return make(token.loc, NoneLiteral{});
        }
    }

    ExprPtr name(const Token& token) { return make(token.loc, Name{text(token)}); }

    ExprPtr unary(const Token& op) {
        bool negate = op.kind == TokenKind::minus;
        ExprPtr operand = parse_precedence(negate ? Precedence::unary : Precedence::logical_not);
        return make(op.loc, Unary{negate ? UnaryOp::negate : UnaryOp::logical_not, std::move(operand)});
    }

    ExprPtr binary(ExprPtr lhs, const Token& op) {
        Precedence precedence = rule(op.kind).precedence;
        ExprPtr rhs = parse_precedence(op.kind == TokenKind::caret ? precedence : tighter(precedence));
        if (precedence == Precedence::comparison && rule(peek().kind).precedence == Precedence::comparison) {
            report(peek().loc, "comparison operators cannot be chained; combine comparisons with 'and'");
        }
        return make(op.loc, Binary{binary_op(op.kind), std::move(lhs), std::move(rhs)});
    }

    // ( ) is the empty tuple, (e) is e, (e,) and (e, f) are tuples.
    ExprPtr grouping(const Token& open) {
        if (match(TokenKind::right_paren)) return make(open.loc, Tuple{});
        ExprPtr first = expression();
        if (!match(TokenKind::comma)) {
            consume_closing(TokenKind::right_paren, "expected ')' after expression", open);
            return first;
        }
        std::vector<ExprPtr> elements;
        elements.push_back(std::move(first));
        while (!check(TokenKind::right_paren)) {
            elements.push_back(expression());
            if (!match(TokenKind::comma)) break;
        }
        consume_closing(TokenKind::right_paren, "expected ')' after tuple elements", open);
        return make(open.loc, Tuple{std::move(elements)});
    }

    ExprPtr list(const Token& open) {
        std::vector<ExprPtr> elements;
        while (!check(TokenKind::right_bracket)) {
            elements.push_back(expression());
            if (!match(TokenKind::comma)) break;
        }
        consume_closing(TokenKind::right_bracket, "expected ']' after list elements", open);
        return make(open.loc, List{std::move(elements)});
    }

    // Reports a name given twice among `existing` (keyword arguments, attributes, settings).
    void check_unique(const std::vector<KeywordArg>& existing, const Token& name, const char* what) {
        bool repeated = std::any_of(existing.begin(), existing.end(),
                                    [&](const KeywordArg& kwarg) { return kwarg.name == name.lexeme; });
        if (repeated) report(name.loc, fmt::format("{} '{}' repeated", what, name.lexeme));
    }

    // callee(positional..., name = value...), a trailing comma allowed.
    ExprPtr call(ExprPtr callee, const Token& open) {
        Call call{std::move(callee), {}, {}};
        while (!check(TokenKind::right_paren)) {
            if (check(TokenKind::identifier) && peek(1).kind == TokenKind::equal) {
                const Token& key = advance();
                advance();
                check_unique(call.kwargs, key, "keyword argument");
                ExprPtr value = expression();
                call.kwargs.push_back(KeywordArg{key.loc, text(key), std::move(value)});
            } else {
                if (!call.kwargs.empty() && !check(TokenKind::error)) {
                    report(peek().loc, "positional argument follows keyword argument");
                }
                call.args.push_back(expression());
            }
            if (!match(TokenKind::comma)) break;
        }
        consume_closing(TokenKind::right_paren, "expected ')' after arguments", open);
        return make(open.loc, std::move(call));
    }

    ExprPtr index(ExprPtr target, const Token& open) {
        Index index{std::move(target), {}};
        do {
            index.indices.push_back(subscript());
        } while (match(TokenKind::comma));
        consume_closing(TokenKind::right_bracket, "expected ']' after index", open);
        return make(open.loc, std::move(index));
    }

    bool ends_slice_bound() const {
        return check(TokenKind::colon) || check(TokenKind::comma) || check(TokenKind::right_bracket);
    }

    // expr | [expr] ':' [expr] [':' [expr]]
    ExprPtr subscript() {
        ExprPtr lower;
        if (!check(TokenKind::colon)) {
            lower = expression();
            if (!check(TokenKind::colon)) return lower;
        }
        const Token& colon = advance();
        Slice slice{std::move(lower), nullptr, nullptr};
        if (!ends_slice_bound()) slice.upper = expression();
        if (match(TokenKind::colon) && !ends_slice_bound()) slice.step = expression();
        return make(colon.loc, std::move(slice));
    }

    ExprPtr attribute(ExprPtr target, const Token&) {
        const Token& name = consume(TokenKind::identifier, "expected an attribute name after '.'");
        return make(name.loc, Attribute{std::move(target), text(name)});
    }

    // ---- shapes and parameters

    // DTYPE '[' [dim {',' dim} [',']] ']', dim = integer | name
    TypeAnnotation annotation() {
        const Token& dtype = consume(TokenKind::identifier, "expected a type like 'f32[B, 784]' after ':'");
        const std::vector<std::string>& dtypes = annotation_dtypes();
        if (std::find(dtypes.begin(), dtypes.end(), dtype.lexeme) == dtypes.end()) {
            report(dtype.loc, fmt::format("unknown dtype '{}'", dtype.lexeme), closest_names(dtype.lexeme, dtypes));
        }
        const Token& open =
            consume(TokenKind::left_bracket, fmt::format("expected '[' and a shape after dtype '{}'", dtype.lexeme));
        TypeAnnotation type{dtype.loc, text(dtype), {}};
        while (!check(TokenKind::right_bracket)) {
            if (!check(TokenKind::integer) && !check(TokenKind::identifier)) {
                fail_expected("expected an integer or a name as a dimension");
            }
            const Token& size = advance();
            Dim& dim = type.dims.emplace_back();
            dim.loc = size.loc;
            if (size.kind == TokenKind::integer) {
                dim.size = size.integer;
            } else {
                dim.size = text(size);
            }
            if (!match(TokenKind::comma)) break;
        }
        consume_closing(TokenKind::right_bracket, "expected ']' after the shape", open);
        return type;
    }

    // '(' already consumed: [param {',' param} [',']] ')', param = NAME [':' type] ['=' expr]
    std::vector<Param> parameters(const Token& open, const std::string& owner) {
        std::vector<Param> params;
        std::optional<std::string> first_default;  // the first parameter with a default
        while (!check(TokenKind::right_paren)) {
            const Token& name = consume(TokenKind::identifier, "expected a parameter name");
            bool repeated = std::any_of(params.begin(), params.end(),
                                        [&](const Param& param) { return param.name == name.lexeme; });
            if (repeated) report(name.loc, fmt::format("duplicate parameter '{}' in {}", name.lexeme, owner));
            Param param{name.loc, text(name), std::nullopt, nullptr};
            if (match(TokenKind::colon)) param.type = annotation();
            if (match(TokenKind::equal)) {
                param.default_value = expression();
                if (!first_default) first_default = param.name;
            } else if (first_default) {
                report(name.loc, fmt::format("parameter '{}' without a default follows parameter '{}' with one",
                                             name.lexeme, *first_default));
            }
            params.push_back(std::move(param));
            if (!match(TokenKind::comma)) break;
        }
        consume_closing(TokenKind::right_paren, fmt::format("expected ')' after the parameters of {}", owner), open);
        return params;
    }

    // ---- declarations

    Decl declaration() {
        const Token& first = peek();
        switch (first.kind) {
            case TokenKind::kw_import: return import_decl();
            case TokenKind::kw_layer: return layer_def();
            case TokenKind::kw_def: return function_def();
            case TokenKind::kw_param: return param_decl();
            case TokenKind::kw_train: return train_block();
            case TokenKind::identifier: return constant();
            case TokenKind::kw_loss:
            case TokenKind::kw_metric:
            case TokenKind::kw_return:
                fail(first.loc, fmt::format("'{}' outside the body of a def", first.lexeme));
            default: fail_unexpected(first);
        }
    }

    // import "path.wg" | import NAME
    Decl import_decl() {
        advance();
        if (!check(TokenKind::string) && !check(TokenKind::identifier)) {
            fail_expected("expected a path string or a module name after 'import'");
        }
        const Token& target = advance();
        bool is_path = target.kind == TokenKind::string;
        Import import{is_path ? target.string : text(target), is_path};
        expect_end("import", false);
        return Decl{target.loc, std::move(import)};
    }

    // layer NAME ['(' params ')'] '=' expr
    Decl layer_def() {
        advance();
        const Token& name = consume(TokenKind::identifier, "expected a name after 'layer'");
        std::string owner = fmt::format("layer '{}'", name.lexeme);
        LayerDef layer{text(name), {}, nullptr};
        bool has_params = check(TokenKind::left_paren);
        if (has_params) layer.params = parameters(advance(), owner);
        consume(TokenKind::equal, fmt::format("expected '=' after the {} of {}", has_params ? "parameters" : "name", owner));
        layer.body = assigned_value();
        expect_end("declaration", false);
        return Decl{name.loc, std::move(layer)};
    }

    // def NAME '(' params ')' '{' statements '}'
    Decl function_def() {
        advance();
        const Token& name = consume(TokenKind::identifier, "expected a name after 'def'");
        std::string owner = fmt::format("function '{}'", name.lexeme);
        const Token& open = consume(TokenKind::left_paren, fmt::format("expected '(' after the name of {}", owner));
        FunctionDef def{text(name), parameters(open, owner), {}};
        skip_newline_before_brace();
        const Token& brace = consume(TokenKind::left_brace, fmt::format("expected '{{' before the body of {}", owner));
        def.body = body(brace, owner);
        expect_end("declaration", false);
        return Decl{name.loc, std::move(def)};
    }

    // param NAME ':' type '=' expr {',' NAME '=' expr}
    Decl param_decl() {
        advance();
        const Token& name = consume(TokenKind::identifier, "expected a name after 'param'");
        consume(TokenKind::colon, fmt::format("expected ':' and a type after the name of param '{}'", name.lexeme));
        TypeAnnotation type = annotation();
        consume(TokenKind::equal,
                fmt::format("expected '=' and an initializer after the type of param '{}'", name.lexeme));
        ParamDecl param{text(name), std::move(type), assigned_value(), {}};
        while (match(TokenKind::comma)) {
            const Token& key = consume(TokenKind::identifier,
                                       fmt::format("expected an attribute name after ',' in param '{}'", name.lexeme));
            consume(TokenKind::equal, fmt::format("expected '=' after attribute '{}'", key.lexeme));
            check_unique(param.attributes, key, "attribute");
            ExprPtr value = assigned_value();
            param.attributes.push_back(KeywordArg{key.loc, text(key), std::move(value)});
        }
        expect_end("declaration", false);
        return Decl{name.loc, std::move(param)};
    }

    // train NAME '{' {NAME '=' expr} '}'
    Decl train_block() {
        advance();
        const Token& target = consume(TokenKind::identifier, "expected the name of a def after 'train'");
        std::string owner = fmt::format("'train {}'", target.lexeme);
        skip_newline_before_brace();
        const Token& brace = consume(TokenKind::left_brace, fmt::format("expected '{{' after {}", owner));
        TrainBlock train{text(target), {}};
        for (;;) {
            skip_separators();
            if (at_block_end()) break;
            try {
                const Token& key = consume(TokenKind::identifier, "expected a setting name");
                consume(TokenKind::equal, fmt::format("expected '=' after setting '{}'", key.lexeme));
                check_unique(train.settings, key, "setting");
                ExprPtr value = assigned_value();
                expect_end("setting", true);
                train.settings.push_back(KeywordArg{key.loc, text(key), std::move(value)});
            } catch (const SyntaxError&) {
                synchronize_statement();
            }
        }
        consume_closing(TokenKind::right_brace, fmt::format("expected '}}' after the settings of {}", owner), brace);
        expect_end("declaration", false);
        return Decl{target.loc, std::move(train)};
    }

    // NAME '=' expr. Two names in a row are most likely a misspelt keyword: suggest it.
    Decl constant() {
        const Token& name = advance();
        if (!check(TokenKind::equal)) {
            std::vector<std::string> suggestions;
            if (check(TokenKind::identifier)) suggestions = closest_names(name.lexeme, declaration_keywords);
            fail_expected(fmt::format("expected '=' after '{}'", name.lexeme), {}, std::move(suggestions));
        }
        advance();
        Constant constant{text(name), assigned_value()};
        expect_end("declaration", false);
        return Decl{name.loc, std::move(constant)};
    }

    // ---- statements

    // A body ends at its '}', at the end of the file, or at a declaration keyword opening a
    // line (the '}' is missing).
    bool at_block_end() const {
        return check(TokenKind::right_brace) || check(TokenKind::end_of_file) ||
               (starts_declaration(peek().kind) && peek().loc.column == 1);
    }

    // '{' already consumed: statements, then '}'.
    std::vector<Stmt> body(const Token& brace, const std::string& owner) {
        std::vector<Stmt> statements;
        for (;;) {
            skip_separators();
            if (at_block_end()) break;
            try {
                statements.push_back(statement());
            } catch (const SyntaxError&) {
                synchronize_statement();
            }
        }
        consume_closing(TokenKind::right_brace, fmt::format("expected '}}' after the body of {}", owner), brace);
        return statements;
    }

    Stmt statement() {
        const Token& first = peek();
        switch (first.kind) {
            case TokenKind::identifier: return assignment();
            case TokenKind::kw_loss:
            case TokenKind::kw_metric: return term();
            case TokenKind::kw_return: return return_statement();
            case TokenKind::kw_import:
            case TokenKind::kw_layer:
            case TokenKind::kw_def:
            case TokenKind::kw_param:
            case TokenKind::kw_train:
                fail(first.loc, fmt::format("'{}' is only allowed at the top level", first.lexeme));
            default: fail_unexpected(first);
        }
    }

    // NAME {',' NAME} '=' expr. Two names in a row are most likely a misspelt keyword.
    Stmt assignment() {
        const Token& first = advance();
        std::vector<AssignTarget> targets{AssignTarget{first.loc, text(first)}};
        while (match(TokenKind::comma)) {
            const Token& target = consume(TokenKind::identifier, "expected a name after ',' in assignment targets");
            targets.push_back(AssignTarget{target.loc, text(target)});
        }
        if (!check(TokenKind::equal)) {
            std::vector<std::string> suggestions;
            if (targets.size() == 1 && check(TokenKind::identifier)) {
                suggestions = closest_names(first.lexeme, statement_keywords);
            }
            fail_expected(targets.size() == 1 ? fmt::format("expected '=' after '{}'", first.lexeme)
                                              : std::string("expected '=' after assignment targets"),
                          {}, std::move(suggestions));
        }
        advance();
        Assign assign{std::move(targets), assigned_value()};
        expect_end("statement", true);
        return Stmt{first.loc, std::move(assign)};
    }

    // (loss | metric) NAME '=' expr
    Stmt term() {
        const Token& keyword = advance();
        bool is_loss = keyword.kind == TokenKind::kw_loss;
        const Token& name = consume(TokenKind::identifier, fmt::format("expected a name after '{}'", keyword.lexeme));
        consume(TokenKind::equal, fmt::format("expected '=' after the name of {} '{}'", keyword.lexeme, name.lexeme));
        ExprPtr value = assigned_value();
        expect_end("statement", true);
        if (is_loss) return Stmt{name.loc, LossTerm{text(name), std::move(value)}};
        return Stmt{name.loc, MetricTerm{text(name), std::move(value)}};
    }

    // return expr {',' expr}
    Stmt return_statement() {
        const Token& keyword = advance();
        Return ret;
        do {
            ret.values.push_back(expression());
        } while (match(TokenKind::comma));
        expect_end("statement", true);
        return Stmt{keyword.loc, std::move(ret)};
    }
};

}  // namespace

Module parse(const SourceFile& file, DiagnosticSink& sink) {
    DiagnosticSink found;
    std::vector<Token> tokens = lex(file, found);
    Module module = Parser(file, std::move(tokens), found).parse_module();
    // The lexer ran over the whole file first: put its errors and the parser's in source order.
    std::vector<Diagnostic> diagnostics = found.diagnostics();
    std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::pair(a.loc.line, a.loc.column) < std::pair(b.loc.line, b.loc.column);
    });
    for (Diagnostic& diagnostic : diagnostics) sink.report(std::move(diagnostic));
    return module;
}

}  // namespace wengert::dsl
