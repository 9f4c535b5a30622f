#include <catch2/catch.hpp>

#include <limits>
#include <string>

#include "wengert/error.hpp"
#include "wengert/json.hpp"

using namespace wengert;

TEST_CASE("json round-trips values exactly", "[json]") {
    Json j;
    j["step"] = std::int64_t{1234};
    j["loss"] = 0.1 + 0.2;
    j["name"] = "a \"quoted\"\nline";
    j["flags"] = Json::Array{true, false, nullptr};
    Json back = Json::parse(j.dump());
    CHECK(back.at("step").as_int() == 1234);
    CHECK(back.at("loss").as_number() == 0.1 + 0.2);
    CHECK(back.at("name").as_string() == "a \"quoted\"\nline");
    CHECK(back.at("flags").as_array().size() == 3);
    CHECK(back.at("flags").as_array()[2].is_null());
}

TEST_CASE("malformed json says where", "[json]") {
    CHECK_THROWS_WITH(Json::parse("{\"a\": 1,\n \"b\" 2}"), "json: line 2, column 6: expected ':' after an object key");
    CHECK_THROWS_WITH(Json::parse("[1, 2"), "json: line 1, column 6: expected ',' or ']' in an array");
    CHECK_THROWS_WITH(Json::parse("{}").at("x"), "json: missing key 'x'");
}

TEST_CASE("json nested deeper than 256 levels is an error, not a stack overflow", "[json]") {
    CHECK(Json::parse(std::string(256, '[') + std::string(256, ']')).is_array());
    CHECK_THROWS_WITH(Json::parse(std::string(100000, '[')), "json: line 1, column 257: values nested more than 256 deep");
    CHECK_THROWS_WITH(Json::parse(std::string(300, '[') + std::string(300, ']')),
                      "json: line 1, column 257: values nested more than 256 deep");
}

TEST_CASE("as_int takes only whole numbers that fit in 64 bits", "[json]") {
    CHECK(Json::parse("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
    CHECK(Json::parse("9007199254740992").as_int() == 9007199254740992);
    for (const char* text : {"9223372036854775808", "1e300", "-1e300", "-inf", "2.5"}) {
        INFO(text);
        CHECK_THROWS_WITH(Json::parse(text).as_int(), "json: expected an integer");
    }
}
