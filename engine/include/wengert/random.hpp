// wengert: counter-based random numbers (Philox-4x32-10).
//
// Note [Counter-based randomness]
// Element i of a draw uses the Philox block at counter (offset + i / 4), keyed by the seed, so
// the numbers do not depend on how a fill is split across threads, and the generator's whole
// state is (seed, offset): two integers a checkpoint saves and restores.
//
// Note [Per-example streams]
// Under data-parallel training each process holds rows [first_row, first_row + rows) of a
// global batch of global_rows (a BatchShard says so). A draw into a tensor whose first axis has
// `rows` entries then gives exactly the numbers the same draw into the whole global batch gives
// those rows: the generator reserves the whole tensor's blocks, and element i of the shard is
// element first_row * (numel / rows) + i of the whole. So dropout masks, Gumbel noise and
// normal() samples of an example do not depend on how many processes share its batch, and every
// process's generator stays in step. A draw without the batch axis is the same on every
// process. Without a BatchShard (one process) nothing changes.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert {

std::array<std::uint32_t, 4> philox4x32(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key);

class Generator {
public:
    explicit Generator(std::uint64_t seed = 0) : seed_(seed) {}
    std::uint64_t seed() const { return seed_; }
    std::uint64_t offset() const { return offset_; }
    void set_state(std::uint64_t seed, std::uint64_t offset) { seed_ = seed; offset_ = offset; }

    // Fill in place (bumps the version). f32 or f64.
    void fill_uniform(Tensor& t, double low = 0.0, double high = 1.0);
    void fill_normal(Tensor& t, double mean = 0.0, double stddev = 1.0);
    // u8 mask: 1 with probability keep.
    void fill_bernoulli(Tensor& t, double keep);
    // One draw in [0, 2^64); advances the offset.
    std::uint64_t next_u64();
    // A permutation of 0..n-1 (Fisher-Yates on the stream).
    std::vector<std::int64_t> permutation(std::int64_t n);

private:
    // Reserves `n_blocks` Philox blocks and returns the first counter.
    std::uint64_t reserve(std::uint64_t n_blocks);
    std::uint64_t seed_;
    std::uint64_t offset_ = 0;
};

// While alive, draws whose first axis has `rows` entries are rows [first_row, first_row + rows)
// of a draw over global_rows (Note [Per-example streams]). Not nested.
class BatchShard {
public:
    BatchShard(std::int64_t global_rows, std::int64_t first_row, std::int64_t rows);
    ~BatchShard();
    BatchShard(const BatchShard&) = delete;
    BatchShard& operator=(const BatchShard&) = delete;
};

// The process-wide generator that ops such as dropout and normal() draw from.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

}  // namespace wengert
