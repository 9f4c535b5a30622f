#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#include "wengert/ops.hpp"
#include "wengert/params.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

struct Stats {
    double max_abs = 0, mean = 0, stddev = 0;
};

Stats stats(const Tensor& t) {
    auto v = t.to_doubles();
    Stats s;
    for (double x : v) {
        s.max_abs = std::max(s.max_abs, std::abs(x));
        s.mean += x;
    }
    s.mean /= static_cast<double>(v.size());
    for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(s.stddev / static_cast<double>(v.size()));
    return s;
}

Tensor init(const Shape& shape, const Init& how, std::uint64_t seed = 1) {
    Generator gen(seed);
    Tensor t = Tensor::empty(shape, DType::f64);
    initialize(t, how, gen);
    return t;
}

}  // namespace

TEST_CASE("fans follow Keras for dense and convolution kernels", "[params]") {
    CHECK(fans(Shape{}) == std::pair{1.0, 1.0});
    CHECK(fans(Shape{7}) == std::pair{7.0, 7.0});
    CHECK(fans(Shape{784, 256}) == std::pair{784.0, 256.0});
    CHECK(fans(Shape{3, 3, 16, 32}) == std::pair{144.0, 288.0});   // (kh, kw, in, out)
}

TEST_CASE("Glorot uniform: SPEC's limits 0.866025 (4x4) and 0.0765466 (512x512)", "[params]") {
    // 512 x 512: 262,144 draws reach within 1e-4 of the limit and never past it.
    Stats big = stats(init(Shape{512, 512}, Init::glorot_uniform()));
    CHECK(big.max_abs <= 0.0765466 + 1e-7);
    CHECK(big.max_abs >= 0.0765466 - 1e-4);
    CHECK(std::abs(big.stddev - 0.0765466 / std::sqrt(3.0)) < 0.01 * big.stddev);
    CHECK(std::abs(big.mean) < 1e-3);
    // 4 x 4, drawn 200 times from one generator.
    Generator gen(2);
    double max_abs = 0;
    for (int i = 0; i < 200; ++i) {
        Tensor t = Tensor::empty(Shape{4, 4}, DType::f64);
        initialize(t, Init::glorot_uniform(), gen);
        max_abs = std::max(max_abs, stats(t).max_abs);
    }
    CHECK(max_abs <= 0.866025 + 1e-6);
    CHECK(max_abs >= 0.86);
}

TEST_CASE("Glorot normal, He uniform and He normal: empirical spread", "[params]") {
    Stats glorot_normal = stats(init(Shape{512, 512}, Init::glorot_normal()));
    CHECK(std::abs(glorot_normal.stddev - std::sqrt(2.0 / 1024)) < 0.01 * glorot_normal.stddev);
    Stats he_uniform = stats(init(Shape{512, 256}, Init::he_uniform()));
    CHECK(he_uniform.max_abs <= std::sqrt(6.0 / 512) + 1e-7);
    CHECK(he_uniform.max_abs >= std::sqrt(6.0 / 512) - 1e-4);
    Stats he_normal = stats(init(Shape{3, 3, 64, 128}, Init::he_normal()));   // fan_in 576
    CHECK(std::abs(he_normal.stddev - std::sqrt(2.0 / 576)) < 0.01 * he_normal.stddev);
    Stats normal = stats(init(Shape{200, 200}, Init::normal(1.0, 0.5)));
    CHECK(std::abs(normal.mean - 1.0) < 0.01);
    CHECK(std::abs(normal.stddev - 0.5) < 0.01);
    Stats uniform = stats(init(Shape{200, 200}, Init::uniform()));            // Keras's U(-0.05, 0.05)
    CHECK(uniform.max_abs <= 0.05);
    CHECK(uniform.max_abs >= 0.0499);
}

TEST_CASE("constant initializers and eye", "[params]") {
    CHECK(init(Shape{3}, Init::zeros()).to_doubles() == std::vector<double>{0, 0, 0});
    CHECK(init(Shape{2}, Init::ones()).to_doubles() == std::vector<double>{1, 1});
    CHECK(init(Shape{2}, Init::constant(-1.5)).to_doubles() == std::vector<double>{-1.5, -1.5});
    CHECK(init(Shape{2, 3}, Init::eye()).to_doubles() == std::vector<double>{1, 0, 0, 0, 1, 0});
    CHECK_THROWS_WITH(init(Shape{2, 2, 2}, Init::eye()), "eye initializer: needs a matrix, got shape [2, 2, 2]");
    CHECK_THROWS_WITH(init(Shape{2}, Init::uniform(1, 0)), "uniform initializer: low 1 is above high 0");
    CHECK_THROWS_WITH(init(Shape{2}, Init::normal(0, -1)), "normal initializer: stddev must not be negative, got -1");
}

TEST_CASE("the store keeps parameters by name in creation order", "[params]") {
    ParamStore store;
    Generator gen(3);
    Parameter& w = store.create("dense.w", Shape{3, 2}, DType::f32, Init::glorot_uniform(), gen);
    store.create("dense.b", Shape{2}, DType::f32, Init::zeros(), gen);
    store.add("q", Tensor::eye(3));
    CHECK(store.size() == 3);
    CHECK(store.count_elements() == 6 + 2 + 9);
    std::vector<std::string> names;
    for (const Parameter* p : store.all()) names.push_back(p->name);
    CHECK(names == std::vector<std::string>{"dense.w", "dense.b", "q"});
    // Asking again for the same name shares the parameter.
    CHECK(&store.create("dense.w", Shape{3, 2}, DType::f32, Init::zeros(), gen) == &w);
    CHECK(&store.get("dense.w") == &w);
    CHECK(store.find("dense.x") == nullptr);
    CHECK(store.contains("q"));
    CHECK_THROWS_WITH(store.create("dense.w", Shape{2, 2}, DType::f32, Init::zeros(), gen),
                      "param: parameter 'dense.w' exists as f32 [3, 2], requested as f32 [2, 2]");
    CHECK_THROWS_WITH(store.add("q", Tensor::eye(2)), "param: parameter 'q' already exists");
    CHECK_THROWS_WITH(store.get("dense.v"), "unknown parameter 'dense.v'; did you mean 'dense.w'?");
    CHECK_THROWS_WITH(store.get("encoder.attention"), "unknown parameter 'encoder.attention' (the store holds 3 parameters)");
}

TEST_CASE("backward accumulates into parameters; zero_grad clears them", "[params]") {
    ParamStore store;
    Parameter& w = store.add("w", Tensor::from(std::vector<double>{1, 2}, Shape{2}));
    for (int i = 0; i < 2; ++i) {
        Tape tape;
        Var wv = tape.param(w);
        tape.backward(sum(wv * wv));
    }
    CHECK(w.grad.to_doubles() == std::vector<double>{4, 8});
    store.zero_grad();
    CHECK(w.grad.to_doubles() == std::vector<double>{0, 0});
}

// Note [Per-example streams]: rows of a draw do not depend on how the batch is split.
TEST_CASE("draws under a BatchShard equal the same rows of the whole batch's draw", "[random]") {
    for (std::int64_t row : {1, 3, 5}) {
        INFO("row size " << row);
        auto whole = [&](auto fill) {
            Generator gen(11);
            gen.set_state(11, 7);
            return fill(gen, 10 * row);
        };
        auto shards = [&](auto fill) {
            std::vector<double> out;
            std::uint64_t offset = 0;
            for (auto [first, rows] : {std::pair<std::int64_t, std::int64_t>{0, 4}, {4, 1}, {5, 5}}) {
                Generator gen(11);
                gen.set_state(11, 7);
                BatchShard shard(10, first, rows);
                std::vector<double> part = fill(gen, rows * row);
                out.insert(out.end(), part.begin(), part.end());
                if (offset == 0) offset = gen.offset();
                CHECK(gen.offset() == offset);   // every shard advances the generator alike
            }
            Generator gen(11);
            gen.set_state(11, 7);
            fill(gen, 10 * row);
            CHECK(gen.offset() == offset);
            return out;
        };
        auto normal = [&](Generator& g, std::int64_t n) {
            Tensor t = Tensor::zeros(Shape{n / row, row}, DType::f64);
            g.fill_normal(t);
            return t.to_doubles();
        };
        auto uniform = [&](Generator& g, std::int64_t n) {
            Tensor t = Tensor::zeros(Shape{n / row, row}, DType::f32);
            g.fill_uniform(t, -1.0, 2.0);
            return t.to_doubles();
        };
        auto bernoulli = [&](Generator& g, std::int64_t n) {
            Tensor t = Tensor::zeros(Shape{n / row, row}, DType::u8);
            g.fill_bernoulli(t, 0.5);
            return t.to_doubles();
        };
        CHECK(shards(normal) == whole(normal));
        CHECK(shards(uniform) == whole(uniform));
        CHECK(shards(bernoulli) == whole(bernoulli));
    }
    // a draw without the batch axis is the whole draw on every process
    Generator a(5), b(5);
    Tensor x = Tensor::zeros(Shape{7}, DType::f64), y = Tensor::zeros(Shape{7}, DType::f64);
    a.fill_normal(x);
    {
        BatchShard shard(10, 5, 5);
        b.fill_normal(y);
    }
    CHECK(x.to_doubles() == y.to_doubles());
    CHECK_THROWS_WITH(BatchShard(4, 3, 2), Catch::Contains("rows [3, 5) are not inside a batch of 4"));
}

namespace wengert {
namespace {

// Random123's known-answer vectors for Philox-4x32-10 (kat_vectors: philox4x32 10)
TEST_CASE("philox4x32 gives Random123's known answers", "[random]") {
    using W = std::array<std::uint32_t, 4>;
    CHECK(philox4x32({0, 0, 0, 0}, {0, 0}) == W{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
          W{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
          W{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

// The fills make their blocks in vectorised batches; each element is still the word of
// philox4x32 for its own counter, across a carry into the counter's high word, at any thread count
TEST_CASE("fills are philox4x32 of consecutive counters, block by block", "[random]") {
    const std::uint64_t seed = 0x0123456789abcdefull, offset = (std::uint64_t{1} << 32) - 1000;
    const std::int64_t n = 200003;   // several chunks and tasks, a partial last block
    auto words = [&](std::uint64_t counter) {
        return philox4x32({static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32), 0u, 0u},
                          {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
    };
    const int before = max_threads();
    for (int threads : {1, 2}) {
        INFO(threads << " threads");
        set_num_threads(threads);
        Generator gen;
        gen.set_state(seed, offset);
        std::int64_t wrong = 0;
        // keep p: the word's uniform (x + 1) / 2^32 at most p; 0 and 1 at the ends
        for (double p : {0.3, 0.5, 0.0, 1.0, 1e-9}) {
            INFO("keep " << p);
            gen.set_state(seed, offset);
            Tensor mask = Tensor::zeros(Shape{n}, DType::u8);
            gen.fill_bernoulli(mask, p);
            CHECK(gen.offset() == offset + static_cast<std::uint64_t>((n + 3) / 4));
            wrong = 0;
            const std::uint8_t* m = mask.data<std::uint8_t>();
            for (std::int64_t i = 0; i < n; ++i) {
                const std::uint32_t w = words(offset + static_cast<std::uint64_t>(i / 4))[static_cast<std::size_t>(i % 4)];
                const bool keep = (static_cast<double>(w) + 1.0) / 4294967296.0 <= p;
                if (m[i] != (keep ? 1 : 0)) ++wrong;
            }
            CHECK(wrong == 0);
        }
        gen.set_state(seed, offset);
        Tensor u = Tensor::zeros(Shape{n}, DType::f64);
        gen.fill_uniform(u, 0.0, 1.0);
        wrong = 0;
        const std::vector<double> got = u.to_doubles();
        for (std::int64_t i = 0; i < n; ++i) {
            const auto r = words(offset + static_cast<std::uint64_t>(i / 2));
            const std::size_t j = static_cast<std::size_t>(i % 2);
            const double want = static_cast<double>((static_cast<std::uint64_t>(r[2 * j]) << 21) ^ (r[2 * j + 1] >> 11)) /
                                9007199254740992.0;
            if (got[static_cast<std::size_t>(i)] != want) ++wrong;
        }
        CHECK(wrong == 0);
    }
    set_num_threads(before);
}

}  // namespace
}  // namespace wengert
