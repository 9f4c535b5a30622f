// wengert: a small JSON value, writer and parser, for checkpoint manifests and metric logs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace wengert {

class Json {
public:
    using Object = std::map<std::string, Json>;
    using Array = std::vector<Json>;

    Json() = default;                                   // null
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    Json(int n) : v_(static_cast<double>(n)) {}
    Json(std::int64_t n) : v_(static_cast<double>(n)) {}
    Json(std::uint64_t n) : v_(static_cast<double>(n)) {}
    Json(double d) : v_(d) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(Array a) : v_(std::move(a)) {}
    Json(Object o) : v_(std::move(o)) {}

    bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
    bool is_bool() const { return std::holds_alternative<bool>(v_); }
    bool is_number() const { return std::holds_alternative<double>(v_); }
    bool is_string() const { return std::holds_alternative<std::string>(v_); }
    bool is_array() const { return std::holds_alternative<Array>(v_); }
    bool is_object() const { return std::holds_alternative<Object>(v_); }

    // Typed access; a wrong type throws Error naming what was expected.
    bool as_bool() const;
    double as_number() const;
    std::int64_t as_int() const;
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& as_object() const;
    Array& as_array();
    Object& as_object();

    // Object member access; `at` throws Error naming a missing key.
    const Json& at(const std::string& key) const;
    bool contains(const std::string& key) const;
    Json& operator[](const std::string& key);          // makes this an object if null

    // Compact one-line text; numbers round-trip exactly (shortest representation).
    std::string dump() const;
    // Throws Error("json: line L, column C: ...") on malformed text.
    static Json parse(const std::string& text);

private:
    std::variant<std::monostate, bool, double, std::string, Array, Object> v_;
};

}  // namespace wengert
