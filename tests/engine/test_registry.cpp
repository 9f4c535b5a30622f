// The registry: the one edit distance behind every "did you mean".
#include <catch2/catch.hpp>

#include "wengert/registry.hpp"

using namespace wengert;

TEST_CASE("the edit distance counts a swap of neighbours as one edit (Note [Edit distance])", "[registry]") {
    CHECK(edit_distance("softmax", "softmax") == 0);
    CHECK(edit_distance("sfotmax", "softmax") == 1);    // a swap
    CHECK(edit_distance("softmx", "softmax") == 1);     // an insertion
    CHECK(edit_distance("softmac", "softmax") == 1);    // a substitution
    CHECK(edit_distance("", "relu") == 4);
    CHECK(edit_distance("ca", "abc") == 3);             // optimal string alignment, not Damerau-Levenshtein's 2
    CHECK(closest_name("sfotmax", {"relu", "softmax", "log_softmax"}) == std::optional<std::string>("softmax"));
    CHECK(closest_name("zzz", {"relu", "softmax"}) == std::nullopt);
    CHECK_THROWS_WITH(registry().get("sfotmax"), "unknown op 'sfotmax'; did you mean 'softmax'?");
}
