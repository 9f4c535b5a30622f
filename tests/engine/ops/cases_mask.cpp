#include <cmath>

#include "cases.hpp"

namespace wengert::test {

WG_CASES(mask_cases) {
    auto square = random_tensor(Shape{2, 4, 4}, 51);
    auto wide = random_tensor(Shape{3, 5}, 52);
    auto tall = random_tensor(Shape{2, 5, 3}, 53);
    cases.add_grad("band_part", "(1, 0) batched square", [](auto x) { return band_part(x[0], 1, 0); }, {square});
    cases.add_grad("band_part", "(0, 2) wide, non-contiguous", [](auto x) { return band_part(x[0], 0, 2); }, {noncontiguous(wide)});
    cases.add_grad("band_part", "(-1, 1) tall", [](auto x) { return band_part(x[0], -1, 1); }, {tall});
    cases.add_grad("tril", "k = 0", [](auto x) { return tril(x[0]); }, {square});
    cases.add_grad("tril", "k = -1 tall, non-contiguous", [](auto x) { return tril(x[0], -1); }, {noncontiguous(tall)});
    cases.add_grad("triu", "k = 1 wide", [](auto x) { return triu(x[0], 1); }, {wide});
    cases.add_grad("triu", "k = -2 batched", [](auto x) { return triu(x[0], -2); }, {square});
}

namespace {

// 1, 2, ... in a (rows, cols) f64 matrix
Var counting(Tape& tape, std::int64_t rows, std::int64_t cols) {
    return tape.input(Tensor::arange(1, static_cast<double>(rows * cols + 1), 1, DType::f64).reshape(Shape{rows, cols}));
}

}  // namespace

// Expected matrices worked out from SPEC.md section 3's rule and checked against NumPy's
// tril/triu.
TEST_CASE("band_part keeps exactly SPEC.md's band", "[mask]") {
    Tape tape;
    Var sq = counting(tape, 3, 3);
    require_close(band_part(sq, 1, 0).value(), {1, 0, 0,
                                                4, 5, 0,
                                                0, 8, 9});
    require_close(band_part(sq, 0, 0).value(), {1, 0, 0,
                                                0, 5, 0,
                                                0, 0, 9});
    require_close(band_part(sq, -1, -1).value(), {1, 2, 3, 4, 5, 6, 7, 8, 9});
    Var wide = counting(tape, 3, 5);
    require_close(band_part(wide, 0, 2).value(), {1, 2, 3, 0, 0,
                                                  0, 7, 8, 9, 0,
                                                  0, 0, 13, 14, 15});
    require_close(band_part(wide, -1, 1).value(), {1, 2, 0, 0, 0,
                                                   6, 7, 8, 0, 0,
                                                   11, 12, 13, 14, 0});
    Var tall = counting(tape, 5, 3);
    require_close(band_part(tall, 1, -1).value(), {1, 2, 3,
                                                   4, 5, 6,
                                                   0, 8, 9,
                                                   0, 0, 12,
                                                   0, 0, 0});
}

TEST_CASE("tril and triu follow NumPy's k", "[mask]") {
    Tape tape;
    Var wide = counting(tape, 3, 4);
    require_close(tril(wide).value(), {1, 0, 0, 0,
                                       5, 6, 0, 0,
                                       9, 10, 11, 0});
    require_close(tril(wide, -1).value(), {0, 0, 0, 0,
                                           5, 0, 0, 0,
                                           9, 10, 0, 0});
    require_close(tril(wide, 2).value(), {1, 2, 3, 0,
                                          5, 6, 7, 8,
                                          9, 10, 11, 12});
    require_close(triu(wide, 1).value(), {0, 2, 3, 4,
                                          0, 0, 7, 8,
                                          0, 0, 0, 12});
    Var tall = counting(tape, 4, 3);
    require_close(tril(tall, 1).value(), {1, 2, 0,
                                          4, 5, 6,
                                          7, 8, 9,
                                          10, 11, 12});
    require_close(triu(tall).value(), {1, 2, 3,
                                       0, 5, 6,
                                       0, 0, 9,
                                       0, 0, 0});
    require_close(triu(tall, -1).value(), {1, 2, 3,
                                           4, 5, 6,
                                           0, 8, 9,
                                           0, 0, 12});
}

TEST_CASE("tril of ones is SPEC.md's causal mask, batched and in u8", "[mask]") {
    Tape tape;
    Var ones = tape.input(Tensor::ones(Shape{2, 3, 3}, DType::u8));
    Var causal = tril(ones);
    CHECK(causal.dtype() == DType::u8);
    require_close(causal.value(), {1, 0, 0, 1, 1, 0, 1, 1, 1,
                                   1, 0, 0, 1, 1, 0, 1, 1, 1});
}

TEST_CASE("masked elements become 0 even when infinite", "[mask]") {
    Tape tape;
    Var x = tape.input(Tensor::full(Shape{2, 2}, INFINITY, DType::f32));
    require_close(triu(x, 1).value().slice(1, 0, 1), {0, 0});
}

TEST_CASE("mask errors", "[mask]") {
    Tape tape;
    Var v = tape.input(Tensor::zeros(Shape{5}, DType::f32));
    CHECK_THROWS_WITH(band_part(v, 1, 1), "band_part: expected at least 2 axes, got [5]");
    CHECK_THROWS_WITH(tril(v), "tril: expected at least 2 axes, got [5]");
}

}  // namespace wengert::test
