#include <catch2/catch.hpp>

#include <limits>

#include "wengert/kernels.hpp"
#include "wengert/tensor.hpp"

using namespace wengert;

static Tensor iota(const Shape& s) { return Tensor::arange(0, static_cast<double>(s.numel()), 1, DType::f64).reshape(s); }

TEST_CASE("views share storage and never copy", "[tensor]") {
    Tensor t = iota({2, 3, 4});
    Tensor p = t.permute({2, 0, 1});
    CHECK(p.shape() == Shape{4, 2, 3});
    CHECK(p.storage() == t.storage());
    CHECK_FALSE(p.is_contiguous());
    CHECK(p.at({3, 1, 2}) == t.at({1, 2, 3}));
    Tensor s = t.slice(2, 1, 4, 2);
    CHECK(s.shape() == Shape{2, 3, 2});
    CHECK(s.at({1, 2, 1}) == t.at({1, 2, 3}));
    CHECK(s.storage() == t.storage());
    Tensor e = iota({3}).reshape({1, 3}).expand({4, 3});
    CHECK(e.strides()[0] == 0);
    CHECK(e.at({3, 2}) == 2);
    CHECK(t.unsqueeze(1).shape() == Shape{2, 1, 3, 4});
    CHECK(t.unsqueeze(1).squeeze(1).shape() == Shape{2, 3, 4});
    CHECK(t.select(1, 2).at({1, 3}) == t.at({1, 2, 3}));
}

TEST_CASE("reshape views where strides allow and copies otherwise", "[tensor]") {
    Tensor t = iota({2, 3, 4});
    Tensor r = t.reshape({6, 4});
    CHECK(r.storage() == t.storage());
    CHECK(t.reshape({-1}).shape() == Shape{24});
    CHECK(t.reshape({2, -1}).shape() == Shape{2, 12});
    Tensor tt = t.transpose(0, 1);                 // (3, 2, 4), not mergeable on the first two axes
    Tensor m = tt.reshape({6, 4});
    CHECK(m.storage() != t.storage());
    CHECK(m.at({1, 0}) == t.at({1, 0, 0}));
    Tensor ok = tt.reshape({3, 8});                // last two axes still contiguous together? no: (2,4) strides (12,1)
    CHECK(ok.at({0, 5}) == t.at({1, 0, 1}));
    CHECK_THROWS_AS(t.view({5, 5}), ShapeError);
    CHECK_THROWS_WITH(tt.view({6, 4}), Catch::Contains("cannot be viewed as [6, 4] without a copy"));
    CHECK_THROWS_WITH(t.reshape({5, -1}), Catch::Contains("cannot reshape [2, 3, 4] (24 elements)"));
}

TEST_CASE("contiguous copies only when needed", "[tensor]") {
    Tensor t = iota({3, 4});
    CHECK(t.contiguous().storage() == t.storage());
    Tensor c = t.transpose(0, 1).contiguous();
    CHECK(c.storage() != t.storage());
    CHECK(c.is_contiguous());
    CHECK(c.at({2, 1}) == t.at({1, 2}));
}

TEST_CASE("broadcasting follows NumPy and errors name both shapes", "[tensor]") {
    CHECK(broadcast_shapes({3, 1}, {4}, "add") == Shape{3, 4});
    CHECK(broadcast_shapes({2, 1, 5}, {3, 1}, "add") == Shape{2, 3, 5});
    CHECK_THROWS_WITH(broadcast_shapes({3, 2}, {3}, "add"),
                      "add: shapes [3, 2] and [3] do not broadcast (axis -1: 2 vs 3)");
}

TEST_CASE("reductions over any axes with keepdims", "[tensor]") {
    Tensor t = iota({2, 3, 4});
    std::vector<int> ax{1};
    Tensor s = kern::sum(t, ax, false);
    CHECK(s.shape() == Shape{2, 4});
    CHECK(s.at({1, 2}) == 14 + 18 + 22);
    std::vector<int> ax02{0, 2};
    Tensor k = kern::sum(t, ax02, true);
    CHECK(k.shape() == Shape{1, 3, 1});
    CHECK(k.at({0, 1, 0}) == (4 + 5 + 6 + 7) + (16 + 17 + 18 + 19));
    CHECK(kern::max(t.transpose(0, 2), ax, false).at({3, 1}) == 23);
    CHECK(kern::sum_all(t) == 276);
    Tensor g = Tensor::ones({2, 3, 4}, DType::f64);
    CHECK(kern::sum_to_shape(g, {3, 1}).at({2, 0}) == 8);
}

TEST_CASE("dtypes and conversions", "[tensor]") {
    Tensor t = Tensor::from(std::vector<std::int64_t>{1, -2, 3}, {3});
    CHECK(t.dtype() == DType::i64);
    CHECK(t.to(DType::f32).at({1}) == -2.0);
    CHECK(Tensor::from(std::vector<std::uint8_t>{1, 0}, {2}).dtype() == DType::u8);
    CHECK_THROWS_WITH(t.data<float>(), "tensor: expected dtype f32, got i64");
    CHECK(parse_dtype("f64", "x") == DType::f64);
    CHECK_THROWS_WITH(parse_dtype("f16", "cast"), "cast: unknown dtype 'f16'; expected f32, f64, i64 or u8");
}

TEST_CASE("slices with huge bounds and steps do not overflow, as NumPy's do not", "[tensor]") {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    Tensor t = Tensor::from(std::vector<double>{0, 1, 2, 3, 4, 5}, Shape{3, 2});
    Tensor one = t.slice(0, 0, kMax, kMax);   // x[0:2^63-1:2^63-1]: the first row
    CHECK(one.shape() == Shape{1, 2});
    CHECK(one.to_doubles() == std::vector<double>{0, 1});
    Tensor last = t.slice(0, -1, kMax, kMax - 1);
    CHECK(last.to_doubles() == std::vector<double>{4, 5});
    CHECK(t.slice(0, std::numeric_limits<std::int64_t>::min(), kMax, 2).to_doubles() == std::vector<double>{0, 1, 4, 5});
    CHECK(t.slice(0, kMax, kMax, 1).shape() == Shape{0, 2});
}

TEST_CASE("an empty tensor whose other extents multiply past 2^63 bytes is refused, as NumPy refuses it", "[tensor]") {
    // found by fuzzing the IDX reader: its strides overflowed (undefined) in contiguous_strides
    CHECK_THROWS_WITH(Tensor::empty(Shape{0, std::int64_t{1} << 32, std::int64_t{1} << 32}),
                      "tensor: shape [0, 4294967296, 4294967296] of f32 needs more than 2^63 bytes");
    CHECK(Tensor::empty(Shape{0, std::int64_t{1} << 20, 8}).numel() == 0);
}

TEST_CASE("an ElementLimit refuses larger tensors on its thread before allocating, innermost first (Note [Element limit])",
          "[tensor]") {
    {
        ElementLimit outer(100, "outer", "the test allows");
        CHECK(Tensor::empty(Shape{10, 10}).numel() == 100);
        CHECK_THROWS_WITH(Tensor::zeros(Shape{101}), "outer: a tensor of shape [101] has more than 100 elements, the most the test allows");
        {
            ElementLimit inner(10, "inner", "here");
            CHECK_THROWS_WITH(Tensor::empty(Shape{11}), "inner: a tensor of shape [11] has more than 10 elements, the most here");
            CHECK_THROWS_WITH(ElementLimit::check(Shape{std::int64_t{1} << 40, std::int64_t{1} << 40}),
                              "inner: a tensor of shape [1099511627776, 1099511627776] has more than 10 elements, the most here");
            CHECK(Tensor::empty(Shape{0, std::int64_t{1} << 40}).numel() == 0);
        }
        CHECK(Tensor::empty(Shape{50}).numel() == 50);
    }
    CHECK(Tensor::empty(Shape{1000}).numel() == 1000);   // no limit outside a scope
}
