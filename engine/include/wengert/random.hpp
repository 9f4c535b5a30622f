// wengert: counter-based random numbers (Philox-4x32-10).
//
// Note [Counter-based randomness]
// Element i of a draw uses the Philox block at counter (offset + i / 4), keyed by the seed, so
// the numbers do not depend on how a fill is split across threads, and the generator's whole
// state is (seed, offset): two integers a checkpoint saves and restores.
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

// The process-wide generator that ops such as dropout and normal() draw from.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

}  // namespace wengert
