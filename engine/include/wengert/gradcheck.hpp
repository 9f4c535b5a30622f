// wengert: finite-difference gradient checks in f64.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "wengert/tape.hpp"

namespace wengert {

struct GradCheckResult {
    bool ok = true;
    double max_abs_error = 0;
    double max_rel_error = 0;
    int worst_input = -1;               // which input holds the worst element
    std::int64_t worst_index = -1;      // flat index within it
    double analytic = 0, numeric = 0;   // at the worst element
    std::string message;                // empty when ok
};

struct GradCheckOptions {
    double eps = 1e-6;
    double atol = 1e-6;
    double rtol = 1e-5;
    std::uint64_t seed = 7;             // for the random output cotangent
};

// Builds f on a fresh tape from `inputs` (each becomes a leaf; those with needs_grad[k] false
// become inputs without gradient), contracts the output with a fixed random cotangent, and
// compares the tape's gradient with central differences for every element of every
// differentiable floating input. Inputs should be f64. f must be deterministic (reseed any
// randomness inside it).
GradCheckResult gradcheck(const std::function<Var(std::span<const Var>)>& f, const std::vector<Tensor>& inputs,
                          const std::vector<bool>& needs_grad = {}, const GradCheckOptions& options = {});

}  // namespace wengert
