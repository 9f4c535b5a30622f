// The registry: registering by name with typed parameters (Note [Registering an op]), and the one
// edit distance behind every "did you mean". docs/dsl.md's op table, made from it through the
// language's signatures, is checked in tests/dsl/test_binder.cpp.
#include <catch2/catch.hpp>

#include "wengert/registry.hpp"

using namespace wengert;

TEST_CASE("an op is registered by name: its function's parameters read the schema's arguments by type", "[registry]") {
    Registry r;
    r.def("scaled_sum", {arg::tensor("x"), arg::ints("axis", std::vector<std::int64_t>{}), arg::number("scale", 2.0)},
          "scale * sum(x, axis)", [](Var x, std::vector<std::int64_t> axis, double scale) { return sum(x, axis) * scale; });
    const OpSchema& op = r.get("scaled_sum");
    CHECK(op.signature() == "scaled_sum(x, axis=(), scale=2)");
    CHECK(op.differentiable);
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{1, 2, 3, 4}, Shape{2, 2}));
    CHECK(op.call(Args({x, std::vector<std::int64_t>{0}, std::int64_t{3}})).value().to_doubles() == std::vector<double>{12, 18});

    // an int parameter is an axis, a DType is parsed from its string: errors name the op
    r.def("first_max", {arg::tensor("x"), arg::integer("axis", -1), arg::dtype()}, "argmax along axis, cast",
          [](Var x, int axis, DType dtype) { return cast(argmax(x, axis), dtype); }, Gradient::none);
    CHECK_FALSE(r.get("first_max").differentiable);
    CHECK_THROWS_WITH(r.get("first_max").call(Args({x, std::int64_t{1} << 33, std::string("f32")})),
                      "first_max: axis 8589934592 is out of range");
    CHECK_THROWS_WITH(r.get("first_max").call(Args({x, std::int64_t{0}, std::string("f16")})),
                      "first_max: unknown dtype 'f16'; expected f32, f64, i64 or u8");
    // an ArgumentError the function throws is a ShapeError of the op
    r.def("positive", {arg::number("n")}, "n, which must be positive", [](double n) -> Var {
        if (n <= 0) throw ArgumentError("n must be positive");
        return full(Shape{}, n);
    });
    CHECK_THROWS_WITH(r.get("positive").call(Args({-1.0})), "positive: n must be positive");
    CHECK_THROWS_AS(r.get("positive").call(Args({-1.0})), ShapeError);
}

TEST_CASE("a schema and a function that disagree fail when the op is registered", "[registry]") {
    Registry r;
    auto softmax_of = [](Var x, int axis) { return softmax(x, axis); };
    CHECK_THROWS_WITH(r.def("softmax", {arg::tensor("x")}, "", softmax_of),
                      "op 'softmax' is registered with 1 arguments for a function of 2 parameters");
    CHECK_THROWS_WITH(r.def("softmax", {arg::tensor("x"), arg::number("axis", -1.0)}, "", softmax_of),
                      "op 'softmax': argument 'axis' (number) does not match parameter 1 of its function (integer)");
    CHECK_THROWS_WITH(r.def("layer_norm", {arg::tensor("x"), arg::tensor("gamma")}, "",
                            [](Var x, std::optional<Var> gamma) { return layer_norm(x, gamma, std::nullopt); }),
                      "op 'layer_norm': argument 'gamma' (tensor) does not match parameter 1 of its function (tensor or none)");
    r.def("neg", {arg::tensor("x")}, "-x", &neg);
    CHECK_THROWS_WITH(r.def("neg", {arg::tensor("x")}, "-x", &neg), "op 'neg' is registered twice");
}

TEST_CASE("a pair argument is an integer or (height, width), and says which argument is neither", "[registry]") {
    Tape tape;
    Var x = tape.input(Tensor::zeros(Shape{1, 4, 4, 1}, DType::f64));
    Var w = tape.input(Tensor::ones(Shape{1, 1, 1, 1}, DType::f64));
    const OpSchema& conv = registry().get("conv2d");
    auto call = [&](std::vector<std::int64_t> stride) {
        return conv.call(Args({x, w, std::monostate{}, stride, std::string("valid"), std::vector<std::int64_t>{1}, std::int64_t{1},
                               std::string("none")}));
    };
    CHECK(call({2}).shape() == Shape{1, 2, 2, 1});
    CHECK(call({1, 2}).shape() == Shape{1, 4, 2, 1});
    CHECK_THROWS_WITH(call({1, 2, 3}), "conv2d: stride is an integer or a pair (height, width); got 3 values");
    const OpSchema& pool = registry().get("max_pool2d");
    CHECK_THROWS_WITH(pool.call(Args({x, std::vector<std::int64_t>{2}, std::vector<std::int64_t>{0}, std::string("valid"), false})),
                      "max_pool2d: stride must be positive");
}

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
