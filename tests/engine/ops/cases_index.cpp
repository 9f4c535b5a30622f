#include "cases.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

Tensor ids(const std::vector<std::int64_t>& values, const Shape& shape) { return Tensor::from(values, shape); }

}  // namespace

WG_CASES(index_cases) {
    auto x = random_tensor(Shape{3, 4}, 61);
    auto cube = random_tensor(Shape{2, 3, 4}, 62);
    auto table = random_tensor(Shape{5, 3}, 63);

    // repeated indices along the row: their gradients add up
    auto along_rows = ids({0, 0, 3, 2, 1, 1, 3, 0, 2}, Shape{3, 3});
    cases.add_grad("gather", "axis 1, repeated indices", [](auto v) { return gather(v[0], 1, v[1]); }, {x, along_rows});
    cases.add_grad("gather", "axis 0, index smaller than x", [](auto v) { return gather(v[0], 0, v[1]); },
                   {x, ids({2, 0, 1, 2, 2, 2}, Shape{2, 3})});
    cases.add_grad("gather", "middle axis, non-contiguous x", [](auto v) { return gather(v[0], -2, v[1]); },
                   {noncontiguous(cube), ids({2, 1, 0, 0, 1, 1, 1, 0}, Shape{2, 1, 4})});
    cases.add_grad("index_select", "rows, repeated", [](auto v) { return index_select(v[0], 0, v[1]); },
                   {x, ids({2, 0, 2, 2}, Shape{4})});
    cases.add_grad("index_select", "last axis, non-contiguous", [](auto v) { return index_select(v[0], -1, v[1]); },
                   {noncontiguous(cube), ids({3, 1, 3}, Shape{3})});
    // row 4 of the table is never read: its gradient must stay 0
    cases.add_grad("embedding", "(2, 3) ids, repeated, one row unread", [](auto v) { return embedding(v[0], v[1]); },
                   {table, ids({1, 0, 3, 3, 2, 1}, Shape{2, 3})});
    cases.add_grad("embedding", "scalar id, non-contiguous table", [](auto v) { return embedding(v[0], v[1]); },
                   {noncontiguous(table), ids({2}, Shape{})});

    cases.add_forward("one_hot", "values, shape and no gradient", [] {
        Tape tape;
        Var labels = tape.input(ids({2, 0, 1, 2}, Shape{2, 2}));
        Var h = one_hot(labels, 3);
        CHECK(h.shape() == Shape{2, 2, 3});
        CHECK(h.dtype() == DType::f32);
        CHECK_FALSE(h.requires_grad());
        require_close(h.value(), {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1});
        CHECK(one_hot(labels, 4, DType::f64).dtype() == DType::f64);
        Var bad = tape.input(ids({1, 3, -1}, Shape{3}));
        CHECK_THROWS_WITH(one_hot(bad, 3), "one_hot: label 3 (element 1 of labels [3]) is out of range for 3 classes");
        CHECK_THROWS_WITH(one_hot(tape.input(Tensor::zeros(Shape{2})), 3), "one_hot: labels must be i64, got f32 [2]");
        CHECK_THROWS_WITH(one_hot(labels, 0), "one_hot: n_classes must be positive, got 0");
    });
    cases.add_forward("argmax", "first index on ties, any axis, keepdims, no gradient", [] {
        Tape tape;
        Var x = tape.leaf(Tensor::from(std::vector<double>{1, 5, 5, 2, 7, 0, 7, 7}, Shape{2, 4}));
        Var m = argmax(x);
        CHECK(m.dtype() == DType::i64);
        CHECK_FALSE(m.requires_grad());
        CHECK(m.shape() == Shape{2});
        require_close(m.value(), {1, 0});
        require_close(argmax(x, 0).value(), {1, 0, 1, 1});
        CHECK(argmax(x, 1, true).shape() == Shape{2, 1});
        require_close(argmax(x, 1, true).value(), {1, 0});
        // a non-contiguous view: the transpose's rows are x's columns
        require_close(argmax(tape.input(x.value().transpose(0, 1)), 1).value(), {1, 0, 1, 1});
        Var nan = tape.input(Tensor::from(std::vector<double>{1, NAN, 3, NAN}, Shape{4}));
        require_close(argmax(nan).value(), {1});
        CHECK_THROWS_WITH(argmax(tape.input(Tensor::zeros(Shape{2, 0})), 1), "argmax: axis 1 of [2, 0] is empty");
    });
}

TEST_CASE("gather and index_select values", "[index]") {
    Tape tape;
    Var x = tape.input(Tensor::from(std::vector<double>{10, 11, 12, 20, 21, 22}, Shape{2, 3}));
    require_close(gather(x, 1, tape.input(ids({2, 2, 0, 1}, Shape{2, 2}))).value(), {12, 12, 20, 21});
    require_close(gather(x, 0, tape.input(ids({1, 0, 1}, Shape{1, 3}))).value(), {20, 11, 22});
    require_close(index_select(x, 1, tape.input(ids({2, 0, 2}, Shape{3}))).value(), {12, 10, 12, 22, 20, 22});
    require_close(index_select(x, 0, tape.input(ids({1}, Shape{1}))).value(), {20, 21, 22});
}

TEST_CASE("scatter-add backward accumulates repeated indices", "[index]") {
    Tape tape;
    Var x = tape.leaf(Tensor::zeros(Shape{2, 3}, DType::f64));
    Var g = gather(x, 1, tape.input(ids({2, 2, 2, 0}, Shape{2, 2})));
    Var s = index_select(x, 0, tape.input(ids({1, 1, 1}, Shape{3})));
    tape.backward(sum(g) + sum(s));
    require_close(x.grad(), {0, 0, 2,
                             1 + 3, 3, 1 + 3});
}

TEST_CASE("embedding looks up rows and sends gradient only to the rows read", "[index]") {
    Tape tape;
    Var table = tape.leaf(Tensor::from(std::vector<double>{0, 1, 10, 11, 20, 21, 30, 31}, Shape{4, 2}));
    Var tokens = tape.input(ids({2, 0, 2}, Shape{1, 3}));
    Var e = embedding(table, tokens);
    CHECK(e.shape() == Shape{1, 3, 2});
    require_close(e.value(), {20, 21, 0, 1, 20, 21});
    tape.backward(sum(e));
    require_close(table.grad(), {1, 1, 0, 0, 2, 2, 0, 0});
    CHECK_FALSE(tokens.requires_grad());
    CHECK_FALSE(tokens.grad().defined());
}

TEST_CASE("index errors name the bad index and the shapes", "[index]") {
    Tape tape;
    Var x = tape.input(Tensor::zeros(Shape{2, 3}, DType::f64));
    Var table = tape.input(Tensor::zeros(Shape{4, 2}, DType::f64));
    CHECK_THROWS_WITH(embedding(table, tape.input(ids({1, 4, 0}, Shape{3}))),
                      "embedding: id 4 (element 1 of ids [3]) is out of range for a table of V = 4 rows [4, 2]");
    CHECK_THROWS_WITH(embedding(table, tape.input(ids({-1}, Shape{1}))),
                      "embedding: id -1 (element 0 of ids [1]) is out of range for a table of V = 4 rows [4, 2]");
    CHECK_THROWS_WITH(embedding(tape.input(Tensor::zeros(Shape{4})), tape.input(ids({0}, Shape{1}))),
                      "embedding: table must be (V, D), got [4] (ids [1])");
    CHECK_THROWS_WITH(embedding(table, tape.input(Tensor::zeros(Shape{3}))), "embedding: ids must be i64, got f32 [3]");
    CHECK_THROWS_WITH(gather(x, 1, tape.input(ids({0, 3}, Shape{2, 1}))),
                      "gather: index 3 (element 1 of index [2, 1]) is out of range for axis 1 of x [2, 3]");
    CHECK_THROWS_WITH(gather(x, 1, tape.input(ids({0, 0, 0}, Shape{3, 1}))),
                      "gather: index [3, 1] does not fit x [2, 3] outside axis 1 (same rank, extents no larger)");
    CHECK_THROWS_WITH(index_select(x, 0, tape.input(ids({0, 2}, Shape{2}))),
                      "index_select: index 2 (element 1 of index [2]) is out of range for axis 0 of x [2, 3]");
    CHECK_THROWS_WITH(index_select(x, 0, tape.input(ids({0, 1}, Shape{1, 2}))),
                      "index_select: index must have rank 1, got [1, 2] (x [2, 3])");
}

TEST_CASE("large gather and argmax run rows in parallel, identical to one thread", "[index]") {
    // 80,000 elements: above the parallel grain
    Shape shape{200, 400};
    Tensor x = random_tensor(shape, 64, -1.0, 1.0, DType::f32);
    Tensor index = random_tensor(shape, 65, 0.0, 400.0).to(DType::i64);
    Tensor cotangent = random_tensor(shape, 66, -1.0, 1.0, DType::f32);
    auto run = [&](int threads) {
        set_num_threads(threads);
        Tape tape;
        Var xv = tape.leaf(x);
        Var picked = gather(xv, 1, tape.input(index));
        tape.backward(picked, cotangent);
        for (std::int64_t r : {0, 77, 199}) {
            for (std::int64_t c : {0, 123, 399}) {
                CHECK(picked.value().at({r, c}) == x.at({r, static_cast<std::int64_t>(index.at({r, c}))}));
            }
        }
        Var best = argmax(tape.input(x), 0);
        return std::tuple(picked.value().to_doubles(), xv.grad().to_doubles(), best.value().to_doubles());
    };
    int before = max_threads();
    auto one = run(1);
    auto several = run(4);
    set_num_threads(before);
    CHECK(one == several);
}

}  // namespace wengert::test
