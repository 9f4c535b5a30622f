#include "wengert/dsl/lexer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <system_error>

namespace wengert::dsl {

bool is_keyword(TokenKind kind) { return kind >= TokenKind::kw_import && kind <= TokenKind::kw_not; }

const char* token_kind_name(TokenKind kind) {
    switch (kind) {
        case TokenKind::identifier: return "identifier";
        case TokenKind::integer: return "integer";
        case TokenKind::floating: return "number";
        case TokenKind::string: return "string";
        case TokenKind::kw_import: return "'import'";
        case TokenKind::kw_layer: return "'layer'";
        case TokenKind::kw_def: return "'def'";
        case TokenKind::kw_param: return "'param'";
        case TokenKind::kw_train: return "'train'";
        case TokenKind::kw_loss: return "'loss'";
        case TokenKind::kw_metric: return "'metric'";
        case TokenKind::kw_return: return "'return'";
        case TokenKind::kw_true: return "'true'";
        case TokenKind::kw_false: return "'false'";
        case TokenKind::kw_none: return "'none'";
        case TokenKind::kw_and: return "'and'";
        case TokenKind::kw_or: return "'or'";
        case TokenKind::kw_not: return "'not'";
        case TokenKind::left_paren: return "'('";
        case TokenKind::right_paren: return "')'";
        case TokenKind::left_bracket: return "'['";
        case TokenKind::right_bracket: return "']'";
        case TokenKind::left_brace: return "'{'";
        case TokenKind::right_brace: return "'}'";
        case TokenKind::comma: return "','";
        case TokenKind::colon: return "':'";
        case TokenKind::equal: return "'='";
        case TokenKind::dot: return "'.'";
        case TokenKind::semicolon: return "';'";
        case TokenKind::plus: return "'+'";
        case TokenKind::minus: return "'-'";
        case TokenKind::star: return "'*'";
        case TokenKind::slash: return "'/'";
        case TokenKind::slash_slash: return "'//'";
        case TokenKind::caret: return "'^'";
        case TokenKind::percent: return "'%'";
        case TokenKind::at: return "'@'";
        case TokenKind::equal_equal: return "'=='";
        case TokenKind::bang_equal: return "'!='";
        case TokenKind::less: return "'<'";
        case TokenKind::less_equal: return "'<='";
        case TokenKind::greater: return "'>'";
        case TokenKind::greater_equal: return "'>='";
        case TokenKind::newline: return "newline";
        case TokenKind::end_of_file: return "end of file";
        case TokenKind::error: return "invalid character";
    }
    return "?";
}

namespace {

struct Keyword {
    std::string_view text;
    TokenKind kind;
};

constexpr Keyword keywords[] = {
    {"import", TokenKind::kw_import}, {"layer", TokenKind::kw_layer},   {"def", TokenKind::kw_def},
    {"param", TokenKind::kw_param},   {"train", TokenKind::kw_train},   {"loss", TokenKind::kw_loss},
    {"metric", TokenKind::kw_metric}, {"return", TokenKind::kw_return}, {"true", TokenKind::kw_true},
    {"false", TokenKind::kw_false},   {"none", TokenKind::kw_none},     {"and", TokenKind::kw_and},
    {"or", TokenKind::kw_or},         {"not", TokenKind::kw_not},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Tokens after which a line break does not end the statement: they cannot end an expression.
bool continues_line(TokenKind kind) {
    switch (kind) {
        case TokenKind::comma: case TokenKind::colon: case TokenKind::dot:
        case TokenKind::plus: case TokenKind::minus: case TokenKind::star: case TokenKind::slash: case TokenKind::slash_slash:
        case TokenKind::caret: case TokenKind::percent: case TokenKind::at:
        case TokenKind::equal_equal: case TokenKind::bang_equal: case TokenKind::less:
        case TokenKind::less_equal: case TokenKind::greater: case TokenKind::greater_equal:
        case TokenKind::kw_and: case TokenKind::kw_or: case TokenKind::kw_not:
            return true;
        default:
            return false;
    }
}

bool starts_declaration(TokenKind kind) {
    return kind == TokenKind::kw_import || kind == TokenKind::kw_layer || kind == TokenKind::kw_def ||
           kind == TokenKind::kw_param || kind == TokenKind::kw_train;
}

bool starts_statement(TokenKind kind) {
    return kind == TokenKind::kw_loss || kind == TokenKind::kw_metric || kind == TokenKind::kw_return;
}

class Lexer {
public:
    Lexer(const SourceFile& file, DiagnosticSink& sink) : file_(file), text_(file.text()), sink_(sink) {}

    std::vector<Token> run() {
        for (;;) {
            skip_blanks_and_comments();
            begin_token();
            if (at_end()) break;
            scan_token();
        }
        force_close(0);
        Token eof = make(TokenKind::end_of_file);
        eof.loc.length = 0;
        emit(eof);
        std::vector<Token> tokens;
        for (std::size_t i = 0; i < tokens_.size(); ++i) {
            if (!held_[i]) tokens.push_back(std::move(tokens_[i]));
        }
        return tokens;
    }

private:
    const SourceFile& file_;
    std::string_view text_;
    DiagnosticSink& sink_;
    // Note [Held line breaks]
    // A line break inside ( ) or [ ] is held: kept in tokens_ but marked in held_, dropped at
    // the end if its bracket closes, and made a real newline if the bracket never closes
    // (the file ends, a '}' or ')' closes an outer bracket past it, a keyword closes it). So
    // `h = relu(x` followed by more lines costs one error, not every line after it.
    std::vector<Token> tokens_;
    std::vector<bool> held_;
    struct OpenBracket {
        char bracket;                             // '(', '[' or '{'
        std::vector<std::size_t> held_newlines;  // indices into tokens_
    };
    std::vector<OpenBracket> open_brackets_;  // innermost last

    // Where the scanner is, and where the token being scanned started.
    std::size_t pos_ = 0;
    int line_ = 1;
    int column_ = 1;
    std::size_t start_ = 0;
    int start_line_ = 1;
    int start_column_ = 1;

    bool at_end() const { return pos_ >= text_.size(); }
    char peek(std::size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

    char advance() {
        char c = text_[pos_++];
        if (c == '\n') {
            ++line_;
            column_ = 1;
        } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
            ++column_;
        }
        return c;
    }

    bool at_line_break() const { return peek() == '\n' || (peek() == '\r' && peek(1) == '\n'); }

    bool match(char expected) {
        if (peek() != expected || at_end()) return false;
        advance();
        return true;
    }

    void begin_token() {
        start_ = pos_;
        start_line_ = line_;
        start_column_ = column_;
    }

    std::string_view lexeme() const { return text_.substr(start_, pos_ - start_); }

    Location token_location() const {
        return Location{&file_, start_line_, start_column_, count_chars(lexeme())};
    }

    Token make(TokenKind kind) const {
        Token token;
        token.kind = kind;
        token.lexeme = lexeme();
        token.loc = token_location();
        return token;
    }

    void emit(Token token) {
        tokens_.push_back(std::move(token));
        held_.push_back(false);
    }

    // The last token emitted and not held, if any.
    const Token* last_token() const {
        for (std::size_t i = tokens_.size(); i-- > 0;) {
            if (!held_[i]) return &tokens_[i];
        }
        return nullptr;
    }

    bool inside_brackets() const { return !open_brackets_.empty() && open_brackets_.back().bracket != '{'; }

    // Closes the brackets from open_brackets_[first] inwards that never got their closer: their
    // held line breaks become real (see Note [Held line breaks]).
    void force_close(std::size_t first) {
        for (std::size_t i = first; i < open_brackets_.size(); ++i) {
            for (std::size_t newline : open_brackets_[i].held_newlines) held_[newline] = false;
        }
        open_brackets_.resize(std::min(first, open_brackets_.size()));
    }

    void skip_blanks_and_comments() {
        for (;;) {
            char c = peek();
            if (at_end()) return;
            if (c == ' ' || c == '\t' || (c == '\r' && peek(1) != '\n')) {
                advance();
            } else if (c == '#') {
                while (!at_end() && !at_line_break()) advance();
            } else {
                return;
            }
        }
    }

    // A line break ends a statement unless it is the first thing in the file, follows another
    // line break, or follows a token that continues the line; inside ( ) or [ ] it is held.
    void scan_newline() {
        const Token* last = last_token();
        if (last == nullptr || last->kind == TokenKind::newline || continues_line(last->kind)) return;
        if (!tokens_.empty() && tokens_.back().kind == TokenKind::newline) return;  // one held per run
        Token newline = make(TokenKind::newline);
        newline.loc.length = 0;
        emit(newline);
        if (inside_brackets()) {
            held_.back() = true;
            open_brackets_.back().held_newlines.push_back(tokens_.size() - 1);
        }
    }

    void open(char bracket, TokenKind kind) {
        open_brackets_.push_back(OpenBracket{bracket, {}});
        emit(make(kind));
    }

    // Closes the innermost matching bracket, force-closing any left open inside it; a closer
    // without an opener is left for the parser to report.
    void close(char opener, TokenKind kind) {
        for (std::size_t i = open_brackets_.size(); i-- > 0;) {
            if (open_brackets_[i].bracket == opener) {
                force_close(i + 1);
                open_brackets_.pop_back();
                break;
            }
        }
        emit(make(kind));
    }

    void scan_token() {
        char c = advance();
        switch (c) {
            case '\r':  // only ever the start of "\r\n": skip_blanks_and_comments eats any other
                advance();
                scan_newline();
                return;
            case '\n': scan_newline(); return;
            case '(': open('(', TokenKind::left_paren); return;
            case '[': open('[', TokenKind::left_bracket); return;
            case '{': open('{', TokenKind::left_brace); return;
            case ')': close('(', TokenKind::right_paren); return;
            case ']': close('[', TokenKind::right_bracket); return;
            case '}': close('{', TokenKind::right_brace); return;
            case ',': emit(make(TokenKind::comma)); return;
            case ':': emit(make(TokenKind::colon)); return;
            case '.': emit(make(TokenKind::dot)); return;
            case ';': emit(make(TokenKind::semicolon)); return;
            case '+': emit(make(TokenKind::plus)); return;
            case '-': emit(make(TokenKind::minus)); return;
            case '/': emit(make(match('/') ? TokenKind::slash_slash : TokenKind::slash)); return;
            case '^': emit(make(TokenKind::caret)); return;
            case '%': emit(make(TokenKind::percent)); return;
            case '@': emit(make(TokenKind::at)); return;
            case '*':
                if (match('*')) {
                    bad_token("'**' is not an operator: powers are written 'x ^ n'", {});
                    return;
                }
                emit(make(TokenKind::star));
                return;
            case '=': emit(make(match('=') ? TokenKind::equal_equal : TokenKind::equal)); return;
            case '<': emit(make(match('=') ? TokenKind::less_equal : TokenKind::less)); return;
            case '>': emit(make(match('=') ? TokenKind::greater_equal : TokenKind::greater)); return;
            case '!':
                if (match('=')) {
                    emit(make(TokenKind::bang_equal));
                    return;
                }
                bad_token("unexpected character '!'", {"not"});
                return;
            case '&':
                match('&');
                bad_token(fmt::format("unexpected character{} '{}'", lexeme().size() > 1 ? "s" : "", lexeme()), {"and"});
                return;
            case '|':
                match('|');
                bad_token(fmt::format("unexpected character{} '{}'", lexeme().size() > 1 ? "s" : "", lexeme()), {"or"});
                return;
            case '"': scan_string(); return;
            default: break;
        }
        if (is_digit(c)) {
            scan_number();
        } else if (is_name_start(c)) {
            scan_name();
        } else {
            scan_unexpected(c);
        }
    }

    void bad_token(std::string message, std::vector<std::string> suggestions) {
        Diagnostic& d = sink_.error(token_location(), std::move(message));
        d.suggestions = std::move(suggestions);
        emit(make(TokenKind::error));
    }

    // Names the character: printable ASCII quoted, anything else as its code point (or as
    // the byte, when it is not valid UTF-8).
    void scan_unexpected(char first) {
        auto lead = static_cast<unsigned char>(first);
        if (lead >= 0x20 && lead < 0x7F) {
            bad_token(lead == '\'' ? "unexpected character \"'\": strings are written \"...\""
                                   : fmt::format("unexpected character '{}'", first),
                      {});
            return;
        }
        int continuation = 0;
        std::uint32_t code_point = lead;
        bool valid = true;
        if ((lead & 0xE0) == 0xC0) {
            continuation = 1;
            code_point = lead & 0x1Fu;
        } else if ((lead & 0xF0) == 0xE0) {
            continuation = 2;
            code_point = lead & 0x0Fu;
        } else if ((lead & 0xF8) == 0xF0) {
            continuation = 3;
            code_point = lead & 0x07u;
        } else if (lead >= 0x80) {
            valid = false;
        }
        for (int i = 0; i < continuation && valid; ++i) {
            auto next = static_cast<unsigned char>(peek());
            valid = (next & 0xC0) == 0x80;
            if (!valid) break;
            advance();
            code_point = (code_point << 6) | (next & 0x3Fu);
        }
        if (!valid) {
            bad_token(fmt::format("invalid UTF-8 byte 0x{:02X}", lead), {});
        } else {
            bad_token(fmt::format("unexpected character U+{:04X}", code_point), {});
        }
    }

    void scan_name() {
        while (is_name_char(peek())) advance();
        TokenKind kind = TokenKind::identifier;
        for (const Keyword& keyword : keywords) {
            if (keyword.text == lexeme()) kind = keyword.kind;
        }
        if (starts_declaration(kind) || starts_statement(kind)) recover_line_structure(kind);
        emit(make(kind));
    }

    // See lex(): a declaration keyword first on its line force-closes every open bracket, a
    // statement keyword the ones opened inside the current { } block; either starts a new
    // line. (Anywhere else the keyword is a plain syntax error for the parser.)
    void recover_line_structure(TokenKind kind) {
        const Token* last = last_token();
        if (last == nullptr || last->loc.line == start_line_) return;
        if (starts_declaration(kind)) {
            force_close(0);
        } else {
            std::size_t first = open_brackets_.size();
            while (first > 0 && open_brackets_[first - 1].bracket != '{') --first;
            force_close(first);
        }
        last = last_token();
        if (last->kind != TokenKind::newline) {
            Token newline = make(TokenKind::newline);
            newline.lexeme = {};
            newline.loc.length = 0;
            emit(newline);
        }
    }

    // integer: digits; floating: digits '.' [digits] [exponent] | digits exponent,
    // exponent: ('e' | 'E') ['+' | '-'] digits. A letter, digit or '.' run glued to it makes
    // the whole run one malformed number.
    void scan_number() {
        while (is_digit(peek())) advance();
        bool is_float = false;
        bool well_formed = true;
        if (peek() == '.' && !is_name_start(peek(1))) {
            is_float = true;
            advance();
            while (is_digit(peek())) advance();
        } else if (peek() == '.' && (peek(1) == 'e' || peek(1) == 'E')) {
            is_float = true;
            advance();
        }
        if (peek() == 'e' || peek() == 'E') {
            is_float = true;
            advance();
            if (peek() == '+' || peek() == '-') advance();
            if (!is_digit(peek())) well_formed = false;
            while (is_digit(peek())) advance();
        }
        if (is_name_char(peek()) || (peek() == '.' && is_digit(peek(1)))) well_formed = false;
        if (!well_formed) {
            while (is_name_char(peek()) || (peek() == '.' && (is_name_char(peek(1))))) advance();
            sink_.error(token_location(), fmt::format("malformed number '{}'", lexeme()));
            emit(make(is_float ? TokenKind::floating : TokenKind::integer));
            return;
        }
        Token token = make(is_float ? TokenKind::floating : TokenKind::integer);
        std::string_view text = lexeme();
        std::from_chars_result result{};
        if (is_float) {
            result = std::from_chars(text.data(), text.data() + text.size(), token.floating);
        } else {
            result = std::from_chars(text.data(), text.data() + text.size(), token.integer);
        }
        if (result.ec == std::errc::result_out_of_range) {
            sink_.error(token_location(), is_float ? fmt::format("number '{}' is out of range", text)
                                                   : fmt::format("integer '{}' does not fit in 64 bits", text));
            token.floating = 0.0;
            token.integer = 0;
        }
        emit(std::move(token));
    }

    // A string is "..." on one line, with escapes \n \t \r \0 \\ \".
    void scan_string() {
        std::string value;
        for (;;) {
            if (at_end() || at_line_break()) {
                Location quote{&file_, start_line_, start_column_, 1};
                sink_.error(quote, "unterminated string");
                emit(make(TokenKind::error));
                return;
            }
            char c = advance();
            if (c == '"') break;
            if (c != '\\') {
                value += c;
                continue;
            }
            if (at_end() || at_line_break()) continue;
            Location escape{&file_, line_, column_ - 1, 2};
            char escaped = advance();
            switch (escaped) {
                case 'n': value += '\n'; break;
                case 't': value += '\t'; break;
                case 'r': value += '\r'; break;
                case '0': value += '\0'; break;
                case '\\': value += '\\'; break;
                case '"': value += '"'; break;
                default:
                    sink_.error(escape, fmt::format("unknown escape sequence '\\{}' in string", escaped));
                    value += escaped;
            }
        }
        Token token = make(TokenKind::string);
        token.string = std::move(value);
        emit(std::move(token));
    }
};

}  // namespace

std::vector<Token> lex(const SourceFile& file, DiagnosticSink& sink) { return Lexer(file, sink).run(); }

}  // namespace wengert::dsl
