#include "wengert/random.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

#include "dispatch.hpp"

namespace wengert {

namespace {

// The ten rounds of Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011) on counter words c0..c3 under key k0, k1, in place: written over scalars, so a
// loop over counters that calls it vectorises (philox_blocks).
[[gnu::always_inline]] inline void philox_rounds(std::uint32_t& c0, std::uint32_t& c1, std::uint32_t& c2, std::uint32_t& c3,
                                                 std::uint32_t k0, std::uint32_t k1) {
    constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
        const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0, p1 = static_cast<std::uint64_t>(kMul1) * c2;
        const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0, n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
        c1 = static_cast<std::uint32_t>(p1);
        c3 = static_cast<std::uint32_t>(p0);
        c0 = n0;
        c2 = n2;
        k0 += kWeyl0;
        k1 += kWeyl1;
    }
}

}  // namespace

std::array<std::uint32_t, 4> philox4x32(std::array<std::uint32_t, 4> c, std::array<std::uint32_t, 2> k) {
    philox_rounds(c[0], c[1], c[2], c[3], k[0], k[1]);
    return c;
}

namespace {

// philox4x32 of counters {first + b, 0, 0} (64-bit, low word first) for b < count, under key
// `seed`, into out[4 b .. 4 b + 3], a loop that vectorises in each clone (a call per block was
// 2% of the sort model's step, in its dropout masks). Integer arithmetic: every clone gives the
// same words.
[[gnu::target_clones("avx512f", "avx2", "default")]] void philox_blocks(std::uint64_t seed, std::uint64_t first,
                                                                      std::int64_t count, std::uint32_t* out) {
    for (std::int64_t b = 0; b < count; ++b) {
        const std::uint64_t counter = first + static_cast<std::uint64_t>(b);
        std::uint32_t c0 = static_cast<std::uint32_t>(counter), c1 = static_cast<std::uint32_t>(counter >> 32), c2 = 0, c3 = 0;
        philox_rounds(c0, c1, c2, c3, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
        out[4 * b] = c0;
        out[4 * b + 1] = c1;
        out[4 * b + 2] = c2;
        out[4 * b + 3] = c3;
    }
}

std::array<std::uint32_t, 4> block(std::uint64_t seed, std::uint64_t counter) {
    return philox4x32({static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32), 0u, 0u},
                      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}

// 53-bit [0, 1) from two words.
inline double to_unit53(std::uint32_t hi, std::uint32_t lo) {
    return static_cast<double>((static_cast<std::uint64_t>(hi) << 21) ^ (lo >> 11)) / 9007199254740992.0;
}

// The active BatchShard (Note [Per-example streams]); global_rows 0 when none.
struct Shard {
    std::int64_t global_rows = 0, first_row = 0, rows = 0;
};
thread_local Shard t_shard;

// Where a fill of t sits in the draw it belongs to: its first element and the draw's size.
struct Window {
    std::int64_t first = 0, total = 0;
};

Window window_of(const Tensor& t) {
    const std::int64_t n = t.numel();
    if (t_shard.global_rows == 0 || t.ndim() == 0 || t.shape()[0] != t_shard.rows || t_shard.rows == 0) return {0, n};
    const std::int64_t row = n / t_shard.rows;
    return {t_shard.first_row * row, t_shard.global_rows * row};
}

// Calls f(b0, count, words) for runs of the blocks b (counted from the draw's start, `per_block`
// elements each) that cover elements [w.first, w.first + n) of the draw whose first block is
// counter `first`: blocks b0 .. b0 + count - 1, block b0 + i's four words at words[4 i]. Parallel
// for large n, identical results for any thread count.
template <class F>
void for_block_runs(Window w, std::int64_t n, std::int64_t per_block, std::uint64_t seed, std::uint64_t first, F f) {
    if (n == 0) return;
    const std::int64_t lo_block = w.first / per_block, hi_block = (w.first + n - 1) / per_block + 1;
    auto body = [&](std::int64_t lo, std::int64_t hi) {
        constexpr std::int64_t kChunk = 256;   // blocks made at a time, 4 KiB of words
        std::array<std::uint32_t, 4 * kChunk> words;
        for (std::int64_t b0 = lo; b0 < hi; b0 += kChunk) {
            const std::int64_t count = std::min(kChunk, hi - b0);
            philox_blocks(seed, first + static_cast<std::uint64_t>(b0), count, words.data());
            f(b0, count, static_cast<const std::uint32_t*>(words.data()));
        }
    };
    if (n < detail::kParallelGrain || max_threads() == 1) {
        body(lo_block, hi_block);
    } else {
        tbb::parallel_for(tbb::blocked_range<std::int64_t>(lo_block, hi_block, 4096),
                          [&](const tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
    }
}

// for_block_runs one block at a time: f(b, block)
template <class F> void for_blocks(Window w, std::int64_t n, std::int64_t per_block, std::uint64_t seed, std::uint64_t first, F f) {
    for_block_runs(w, n, per_block, seed, first, [&](std::int64_t b0, std::int64_t count, const std::uint32_t* words) {
        for (std::int64_t b = 0; b < count; ++b) {
            const std::uint32_t* r = words + 4 * b;
            f(b0 + b, std::array<std::uint32_t, 4>{r[0], r[1], r[2], r[3]});
        }
    });
}

Tensor& require_contiguous(Tensor& t, const char* op) {
    if (!t.is_contiguous()) throw ShapeError(op, "random fills need a contiguous tensor");
    return t;
}

}  // namespace

std::uint64_t Generator::reserve(std::uint64_t n_blocks) {
    std::uint64_t first = offset_;
    offset_ += n_blocks;
    return first;
}

void Generator::fill_uniform(Tensor& t, double low, double high) {
    require_contiguous(t, "uniform");
    const std::int64_t n = t.numel();
    const Window w = window_of(t);
    std::uint64_t first = reserve(static_cast<std::uint64_t>((w.total + 1) / 2));
    detail::dispatch_float(t.dtype(), "uniform", [&](auto tag) {
        using T = decltype(tag);
        T* p = t.data<T>();   // element g of the whole draw is p[g - w.first]
        for_blocks(w, n, 2, seed_, first, [&](std::int64_t b, const std::array<std::uint32_t, 4>& r) {
            for (int j = 0; j < 2; ++j) {
                std::int64_t g = b * 2 + j;
                if (g >= w.first && g < w.first + n) p[g - w.first] = static_cast<T>(low + (high - low) * to_unit53(r[2 * j], r[2 * j + 1]));
            }
        });
    });
    t.bump_version();
}

void Generator::fill_normal(Tensor& t, double mean, double stddev) {
    require_contiguous(t, "normal");
    const std::int64_t n = t.numel();
    const Window w = window_of(t);
    std::uint64_t first = reserve(static_cast<std::uint64_t>((w.total + 1) / 2));
    detail::dispatch_float(t.dtype(), "normal", [&](auto tag) {
        using T = decltype(tag);
        T* p = t.data<T>();
        // Box-Muller: one block gives two normals, elements 2b and 2b + 1 of the draw.
        for_blocks(w, n, 2, seed_, first, [&](std::int64_t b, const std::array<std::uint32_t, 4>& r) {
            double u1 = 1.0 - to_unit53(r[0], r[1]);   // (0, 1]
            double u2 = to_unit53(r[2], r[3]);
            double radius = std::sqrt(-2.0 * std::log(u1));
            double angle = 2.0 * std::numbers::pi * u2;
            std::int64_t g = b * 2;
            if (g >= w.first && g < w.first + n) p[g - w.first] = static_cast<T>(mean + stddev * radius * std::cos(angle));
            if (g + 1 >= w.first && g + 1 < w.first + n) p[g + 1 - w.first] = static_cast<T>(mean + stddev * radius * std::sin(angle));
        });
    });
    t.bump_version();
}

void Generator::fill_bernoulli(Tensor& t, double keep) {
    require_contiguous(t, "bernoulli");
    if (t.dtype() != DType::u8) throw ShapeError("bernoulli", "the mask must be u8");
    const std::int64_t n = t.numel();
    const Window w = window_of(t);
    std::uint64_t first = reserve(static_cast<std::uint64_t>((w.total + 3) / 4));
    std::uint8_t* p = t.data<std::uint8_t>();
    // element kept when its word x, as a uniform (x + 1) / 2^32 in (0, 1], is <= keep; exactly,
    // x + 1 <= keep 2^32 (both sides exact in double), that is x < floor(keep 2^32) for an
    // integer x: a compare of words that vectorises (keep NaN or <= 0: none kept; >= 1: all)
    const std::uint64_t below = !(keep > 0.0) ? 0
                                : keep >= 1.0 ? std::uint64_t{1} << 32
                                              : static_cast<std::uint64_t>(std::floor(keep * 4294967296.0));
    for_block_runs(w, n, 4, seed_, first, [&](std::int64_t b0, std::int64_t count, const std::uint32_t* words) {
        // the run's elements g in [w.first, w.first + n), word g - 4 b0 of the run
        const std::int64_t g0 = b0 * 4, lo = std::max(g0, w.first), hi = std::min(g0 + 4 * count, w.first + n);
        for (std::int64_t g = lo; g < hi; ++g) p[g - w.first] = static_cast<std::uint64_t>(words[g - g0]) < below ? 1 : 0;
    });
    t.bump_version();
}

std::uint64_t Generator::next_u64() {
    auto r = block(seed_, reserve(1));
    return (static_cast<std::uint64_t>(r[0]) << 32) | r[1];
}

std::vector<std::int64_t> Generator::permutation(std::int64_t n) {
    std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
    for (std::int64_t i = n - 1; i > 0; --i) {
        auto j = static_cast<std::int64_t>(next_u64() % static_cast<std::uint64_t>(i + 1));
        std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
    }
    return perm;
}

Generator& default_generator() {
    static Generator gen(0);
    return gen;
}

void manual_seed(std::uint64_t seed) { default_generator().set_state(seed, 0); }

BatchShard::BatchShard(std::int64_t global_rows, std::int64_t first_row, std::int64_t rows) {
    if (t_shard.global_rows != 0) throw ShapeError("BatchShard", "batch shards do not nest");
    if (!(rows >= 0 && first_row >= 0 && first_row + rows <= global_rows && global_rows > 0)) {
        throw ShapeError("BatchShard", fmt::format("rows [{}, {}) are not inside a batch of {}", first_row, first_row + rows, global_rows));
    }
    t_shard = {global_rows, first_row, rows};
}

BatchShard::~BatchShard() { t_shard = {}; }

}  // namespace wengert
