#include <catch2/catch.hpp>

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
