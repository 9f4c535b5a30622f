#include "wengert/json.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "wengert/error.hpp"

namespace wengert {

namespace {

[[noreturn]] void type_error(const char* want) { throw Error(fmt::format("json: expected {}", want)); }

void dump_string(const std::string& s, std::string& out) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) out += fmt::format("\\u{:04x}", c);
                else out += static_cast<char>(c);
        }
    }
    out += '"';
}

class Parser {
public:
    explicit Parser(const std::string& text) : s_(text) {}

    Json document() {
        Json v = value(1);
        skip_ws();
        if (i_ != s_.size()) fail("unexpected text after the value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        std::size_t line = 1, col = 1;
        for (std::size_t k = 0; k < i_ && k < s_.size(); ++k) {
            if (s_[k] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        throw Error(fmt::format("json: line {}, column {}: {}", line, col, what));
    }
    void skip_ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
    }
    bool literal(const char* word) {
        std::string w(word);
        if (s_.compare(i_, w.size(), w) == 0) {
            i_ += w.size();
            return true;
        }
        return false;
    }
    // Arrays and objects recurse, so their depth is limited: no text can exhaust the stack.
    static constexpr int kMaxDepth = 256;

    Json value(int depth) {
        skip_ws();
        if (i_ >= s_.size()) fail("unexpected end of text");
        char c = s_[i_];
        if ((c == '{' || c == '[') && depth > kMaxDepth) fail(fmt::format("values nested more than {} deep", kMaxDepth));
        if (c == '{') return object(depth);
        if (c == '[') return array(depth);
        if (c == '"') return Json(string());
        if (literal("true")) return Json(true);
        if (literal("false")) return Json(false);
        if (literal("null")) return Json();
        if (c == '-' || (c >= '0' && c <= '9')) return number();
        fail(fmt::format("unexpected character '{}'", c));
    }
    Json number() {
        const char* begin = s_.c_str() + i_;
        char* end = nullptr;
        double d = std::strtod(begin, &end);
        if (end == begin) fail("malformed number");
        i_ += static_cast<std::size_t>(end - begin);
        return Json(d);
    }
    std::string string() {
        ++i_;  // opening quote
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            char c = s_[i_++];
            if (c == '"') return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) fail("unterminated escape");
            char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    if (i_ + 4 > s_.size()) fail("short \\u escape");
                    unsigned code = static_cast<unsigned>(std::stoul(s_.substr(i_, 4), nullptr, 16));
                    i_ += 4;
                    if (code < 0x80) {
                        out += static_cast<char>(code);
                    } else if (code < 0x800) {
                        out += static_cast<char>(0xC0 | (code >> 6));
                        out += static_cast<char>(0x80 | (code & 0x3F));
                    } else {
                        out += static_cast<char>(0xE0 | (code >> 12));
                        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
                        out += static_cast<char>(0x80 | (code & 0x3F));
                    }
                    break;
                }
                default: fail(fmt::format("unknown escape '\\{}'", e));
            }
        }
    }
    Json array(int depth) {
        ++i_;
        Json::Array a;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ']') {
            ++i_;
            return Json(std::move(a));
        }
        while (true) {
            a.push_back(value(depth + 1));
            skip_ws();
            if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
            if (i_ < s_.size() && s_[i_] == ']') { ++i_; return Json(std::move(a)); }
            fail("expected ',' or ']' in an array");
        }
    }
    Json object(int depth) {
        ++i_;
        Json::Object o;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == '}') {
            ++i_;
            return Json(std::move(o));
        }
        while (true) {
            skip_ws();
            if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key in an object");
            std::string key = string();
            skip_ws();
            if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':' after an object key");
            ++i_;
            o[key] = value(depth + 1);
            skip_ws();
            if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
            if (i_ < s_.size() && s_[i_] == '}') { ++i_; return Json(std::move(o)); }
            fail("expected ',' or '}' in an object");
        }
    }

    const std::string& s_;
    std::size_t i_ = 0;
};

void dump_to(const Json& j, std::string& out);

}  // namespace

bool Json::as_bool() const { if (!is_bool()) type_error("a boolean"); return std::get<bool>(v_); }
double Json::as_number() const { if (!is_number()) type_error("a number"); return std::get<double>(v_); }
std::int64_t Json::as_int() const {
    double d = as_number();
    // -2^63 and 2^63 are exact doubles; outside [-2^63, 2^63), or with a fraction, d is no int64
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != std::floor(d)) type_error("an integer");
    return static_cast<std::int64_t>(d);
}
const std::string& Json::as_string() const { if (!is_string()) type_error("a string"); return std::get<std::string>(v_); }
const Json::Array& Json::as_array() const { if (!is_array()) type_error("an array"); return std::get<Array>(v_); }
const Json::Object& Json::as_object() const { if (!is_object()) type_error("an object"); return std::get<Object>(v_); }
Json::Array& Json::as_array() { if (!is_array()) type_error("an array"); return std::get<Array>(v_); }
Json::Object& Json::as_object() { if (!is_object()) type_error("an object"); return std::get<Object>(v_); }

const Json& Json::at(const std::string& key) const {
    const auto& o = as_object();
    auto it = o.find(key);
    if (it == o.end()) throw Error(fmt::format("json: missing key '{}'", key));
    return it->second;
}

bool Json::contains(const std::string& key) const { return is_object() && as_object().count(key) > 0; }

Json& Json::operator[](const std::string& key) {
    if (is_null()) v_ = Object{};
    return as_object()[key];
}

namespace {

void dump_to(const Json& j, std::string& out) {
    if (j.is_null()) {
        out += "null";
    } else if (j.is_bool()) {
        out += j.as_bool() ? "true" : "false";
    } else if (j.is_number()) {
        double d = j.as_number();
        if (!std::isfinite(d)) out += "null";
        else if (d == std::floor(d) && std::abs(d) < 1e15) out += fmt::format("{}", static_cast<std::int64_t>(d));
        else out += fmt::format("{}", d);
    } else if (j.is_string()) {
        dump_string(j.as_string(), out);
    } else if (j.is_array()) {
        out += '[';
        bool first = true;
        for (const auto& e : j.as_array()) {
            if (!first) out += ',';
            first = false;
            dump_to(e, out);
        }
        out += ']';
    } else {
        out += '{';
        bool first = true;
        for (const auto& [k, v] : j.as_object()) {
            if (!first) out += ',';
            first = false;
            dump_string(k, out);
            out += ':';
            dump_to(v, out);
        }
        out += '}';
    }
}

}  // namespace

std::string Json::dump() const {
    std::string out;
    dump_to(*this, out);
    return out;
}

Json Json::parse(const std::string& text) { return Parser(text).document(); }

}  // namespace wengert
