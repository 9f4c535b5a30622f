#include "cases.hpp"

namespace wengert::test {

WG_CASES(shape_cases) {
    auto a = random_tensor(Shape{2, 3, 4}, 41);
    auto b = random_tensor(Shape{2, 2, 4}, 42);
    auto c = random_tensor(Shape{2, 3, 4}, 43);
    auto col = random_tensor(Shape{3, 1}, 44);

    cases.add_grad("reshape", "(2, 3, 4) -> (6, -1)", [](auto x) { return reshape(x[0], Shape{6, -1}); }, {a});
    cases.add_grad("reshape", "non-contiguous (copies)", [](auto x) { return reshape(x[0], Shape{4, 6}); }, {noncontiguous(a)});
    cases.add_grad("permute", "(2, 0, 1)", [](auto x) { return permute(x[0], {2, 0, 1}); }, {a});
    cases.add_grad("permute", "negative axes, non-contiguous", [](auto x) { return permute(x[0], {-1, 0, 1}); }, {noncontiguous(a)});
    cases.add_grad("transpose", "last two", [](auto x) { return transpose(x[0]); }, {a});
    cases.add_grad("transpose", "0 and 2, then reshaped", [](auto x) { return reshape(transpose(x[0], 0, 2), Shape{-1}); }, {a});
    cases.add_grad("slice", "axis 1, 1:3", [](auto x) { return slice(x[0], 1, 1, 3); }, {a});
    cases.add_grad("slice", "step 2, negative start", [](auto x) { return slice(x[0], -1, -4, 4, 2); }, {a});
    cases.add_grad("slice", "step 3 of a non-contiguous input", [](auto x) { return slice(x[0], 2, 0, 4, 3); }, {noncontiguous(a)});
    cases.add_grad("slice", "overlapping slices accumulate", [](auto x) {
        return slice(x[0], 1, 0, 2) * slice(x[0], 1, 1, 3);
    }, {a});
    cases.add_grad("concat", "axis 1", [](auto x) { return concat(x, 1); }, {a, b});
    cases.add_grad("concat", "axis -1, non-contiguous, three inputs", [](auto x) { return concat(x, -1); },
                   {noncontiguous(a), c, noncontiguous(c)});
    cases.add_grad("concat", "one input needs no gradient", [](auto x) { return concat(x, 0); }, {a, c}, {false, true});
    cases.add_grad("stack", "axis 0", [](auto x) { return stack(x, 0); }, {a, c});
    cases.add_grad("stack", "last axis, non-contiguous", [](auto x) { return stack(x, -1); }, {noncontiguous(a), c});
    cases.add_grad("expand", "(3, 1) -> (2, 3, 5)", [](auto x) { return expand(x[0], Shape{2, 3, 5}); }, {col});
    cases.add_grad("expand", "non-contiguous", [](auto x) { return expand(x[0], Shape{2, 2, 3, 4}); }, {noncontiguous(a)});
    cases.add_grad("squeeze", "axis 1", [](auto x) { return squeeze(x[0], 1); }, {col.reshape(Shape{3, 1, 1})});
    cases.add_grad("squeeze", "negative axis", [](auto x) { return squeeze(x[0], -1); }, {col});
    cases.add_grad("unsqueeze", "axis 0", [](auto x) { return unsqueeze(x[0], 0); }, {a});
    cases.add_grad("unsqueeze", "last, non-contiguous", [](auto x) { return unsqueeze(x[0], -1); }, {noncontiguous(a)});
    cases.add_grad("flatten", "from axis 1", [](auto x) { return flatten(x[0]); }, {a});
    cases.add_grad("flatten", "from axis 0, non-contiguous", [](auto x) { return flatten(x[0], 0); }, {noncontiguous(a)});
}

namespace {

Tensor iota(const Shape& s) { return Tensor::arange(0, static_cast<double>(s.numel()), 1, DType::f64).reshape(s); }

}  // namespace

TEST_CASE("shape ops on contiguous inputs are views of the input's storage", "[shape]") {
    Tape tape;
    Var x = tape.input(iota({2, 3, 4}));
    const auto& storage = x.value().storage();
    CHECK(reshape(x, Shape{4, 6}).value().storage() == storage);
    CHECK(permute(x, {1, 2, 0}).value().storage() == storage);
    CHECK(transpose(x, 0, 1).value().storage() == storage);
    CHECK(slice(x, 2, 0, 4, 2).value().storage() == storage);
    CHECK(expand(x, Shape{5, 2, 3, 4}).value().storage() == storage);
    CHECK(unsqueeze(x, 1).value().storage() == storage);
    CHECK(squeeze(unsqueeze(x, 1), 1).value().storage() == storage);
    CHECK(flatten(x).value().storage() == storage);
    // a strided view still flattens without a copy where its strides allow: (2, 3, 2) strides (12, 4, 2)
    CHECK(flatten(slice(x, 2, 0, 4, 2)).value().storage() == storage);
}

TEST_CASE("shape op values", "[shape]") {
    Tape tape;
    Var x = tape.input(iota({2, 3}));
    require_close(transpose(x).value(), {0, 3, 1, 4, 2, 5});
    require_close(slice(x, 1, 2, 100).value(), {2, 5});
    require_close(slice(x, 1, 0, 3, 2).value(), {0, 2, 3, 5});
    CHECK(slice(x, 1, 3, 1).shape() == Shape{2, 0});
    Var y = tape.input(iota({2, 1}));
    Var cat = concat(std::vector<Var>{x, y}, 1);
    CHECK(cat.shape() == Shape{2, 4});
    require_close(cat.value(), {0, 1, 2, 0, 3, 4, 5, 1});
    Var st = stack(std::vector<Var>{x, x}, 1);
    CHECK(st.shape() == Shape{2, 2, 3});
    require_close(st.value(), {0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5});
    require_close(expand(y, Shape{2, 3}).value(), {0, 0, 0, 1, 1, 1});
    CHECK(flatten(tape.input(iota({2, 3, 4, 5})), 2).shape() == Shape{2, 3, 20});
    CHECK(unsqueeze(x, -1).shape() == Shape{2, 3, 1});
}

TEST_CASE("slice backward scatters into zeros", "[shape]") {
    Tape tape;
    Var x = tape.leaf(iota({5}));
    tape.backward(sum(slice(x, 0, 1, 5, 2) * 3.0));
    require_close(x.grad(), {0, 3, 0, 3, 0});
}

TEST_CASE("shape op errors name the op and the shapes", "[shape]") {
    Tape tape;
    Var x = tape.input(iota({2, 3}));
    Var y = tape.input(iota({3, 3}));
    Var i = tape.input(Tensor::zeros(Shape{2, 3}, DType::i64));
    CHECK_THROWS_WITH(reshape(x, Shape{4, -1}), "reshape: cannot reshape [2, 3] (6 elements) to [4, -1]");
    CHECK_THROWS_WITH(permute(x, {0}), "permute: (0) has 1 axes for [2, 3] of rank 2");
    CHECK_THROWS_WITH(permute(x, {1, -1}), "permute: axis 1 appears twice in (1, -1) for [2, 3]");
    CHECK_THROWS_WITH(transpose(x, 0, 2), "transpose: axis 2 is out of range for [2, 3] (axes -2..1)");
    CHECK_THROWS_WITH(slice(x, 0, 0, 1, 0), "slice: step must be positive, got 0 (x [2, 3])");
    CHECK_THROWS_WITH(concat(std::vector<Var>{x, y}, 1), "concat: shapes differ outside axis 1: [2, 3], [3, 3]");
    CHECK_THROWS_WITH(concat(std::vector<Var>{x, i}, 0), "concat: dtypes differ: f64 [2, 3] and i64 [2, 3]");
    CHECK_THROWS_WITH(concat(std::vector<Var>{}, 0), "concat: no tensors to concatenate");
    CHECK_THROWS_WITH(stack(std::vector<Var>{x, y}, 0), "stack: shapes differ: [2, 3], [3, 3]");
    CHECK_THROWS_WITH(stack(std::vector<Var>{x, x}, 3), "stack: axis 3 is out of range for [2, 3] (axes -3..2)");
    CHECK_THROWS_WITH(expand(x, Shape{4, 3}), "expand: cannot expand [2, 3] to [4, 3] (axis 0: 2 vs 4)");
    CHECK_THROWS_WITH(squeeze(x, 0), "squeeze: axis 0 of [2, 3] has extent 2, not 1");
    CHECK_THROWS_WITH(flatten(tape.input(iota({4})), 1), "flatten: axis 1 is out of range for [4] (axes -1..0)");
}

TEST_CASE("shape ops are callable by name with language-style arguments", "[shape]") {
    Tape tape;
    Var x = tape.input(iota({2, 3}));
    const Registry& r = registry();
    CHECK(r.get("reshape").signature() == "reshape(x, shape)");
    CHECK(r.get("slice").signature() == "slice(x, axis, start=0, stop=none, step=1)");
    CHECK(r.get("concat").signature() == "concat(xs, axis=0)");
    Var rs = r.get("reshape").call(Args({x, std::vector<std::int64_t>{3, -1}}));
    CHECK(rs.shape() == Shape{3, 2});
    Var tail = r.get("slice").call(Args({x, std::int64_t{1}, std::int64_t{1}, std::monostate{}, std::int64_t{1}}));
    require_close(tail.value(), {1, 2, 4, 5});
    Var cat = r.get("concat").call(Args({std::vector<Var>{x, x}, std::int64_t{0}}));
    CHECK(cat.shape() == Shape{4, 3});
    Var p = r.get("permute").call(Args({x, std::vector<std::int64_t>{1, 0}}));
    require_close(p.value(), {0, 3, 1, 4, 2, 5});
}

}  // namespace wengert::test
